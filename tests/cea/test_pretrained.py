"""Shipped models: export a run, load it verified, and restore with it exactly as with the run itself."""

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import jax
import numpy as np
import pytest
from data_helpers import SMALL_SPEC, SMALL_TRAIN, trained_run
from PIL import Image

from cea_jax import metrics, restore
from cea_jax.data import degrade, embedded
from cea_jax.inference import restore_batch
from cea_jax.pretrained import export
from cea_jax.pretrained.loader import load_pretrained
from cea_jax.pretrained.manifest import FOLDER_VARIABLE, PretrainedError
from cea_jax.workdir import load_params
from runkit.records import settings_digest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shipped(tmp_path, monkeypatch) -> Path:
    """A models folder holding the shared run exported as 'default', which the loader and restore use."""
    folder = tmp_path / "models"
    workdir, _ = trained_run()
    assert export.main(["--workdir", str(workdir), "--name", "default", "--out", str(folder),
                        "--psnr", "sigma25=21.5"]) == 0
    monkeypatch.setenv(FOLDER_VARIABLE, str(folder))
    return folder


def _image(tmp_path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(embedded.test_tiles()[0]).save(path)  # 128x128, as test_restore: one compilation
    return path


def test_the_manifest_says_what_the_model_is_and_where_it_came_from(shipped):
    workdir, _ = trained_run()
    manifest = json.loads((shipped / "default.json").read_text())
    weights = (shipped / "default.safetensors").read_bytes()
    assert manifest["weights"] == "default.safetensors" and manifest["weights_dtype"] == "float32"
    assert manifest["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert manifest["model"] == json.loads(json.dumps(SMALL_SPEC.to_json()))
    assert manifest["training"]["checkpoint_step"] == SMALL_TRAIN.steps
    assert {k: manifest["training"][k] for k in ("steps", "crop", "data", "seed")} == {
        "steps": SMALL_TRAIN.steps, "crop": SMALL_TRAIN.crop, "data": SMALL_TRAIN.data, "seed": SMALL_TRAIN.seed}
    assert manifest["source"]["workdir"] == workdir.name and manifest["source"]["step"] == SMALL_TRAIN.steps
    assert manifest["source"]["settings_digest"] == settings_digest(json.loads((workdir / "config.json").read_text()))
    assert manifest["held_out_psnr"] == {"sigma25": 21.5}
    assert len(weights) < 5 * 2 ** 20


def test_loaded_params_are_the_checkpoints_params(shipped):
    workdir, _ = trained_run()
    config, params, _ = load_pretrained("default", shipped)
    run_config, run_params, _ = load_params(str(workdir))
    assert config == run_config
    assert jax.tree.structure(params) == jax.tree.structure(run_params)
    for ours, theirs in zip(jax.tree.leaves(params), jax.tree.leaves(run_params)):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_restore_without_a_workdir_uses_the_shipped_model_and_equals_the_run(shipped, tmp_path, capsys):
    workdir, _ = trained_run()
    src = _image(tmp_path)
    assert restore.main([str(src), str(tmp_path / "run.png"), "--workdir", str(workdir)]) == 0
    capsys.readouterr()
    assert restore.main([str(src), str(tmp_path / "shipped.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    sha = json.loads((shipped / "default.json").read_text())["weights_sha256"]
    assert lines[0].startswith(f"using pretrained model 'default' (sha256 {sha[:12]}; cea tiny, "
                               f"{SMALL_TRAIN.steps} steps"), lines
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "shipped.png")),
                                  np.asarray(Image.open(tmp_path / "run.png")))


def test_pretrained_flag_picks_another_shipped_model(shipped, tmp_path, capsys):
    for suffix in ("json", "safetensors"):  # a copy under another name: the manifest names its weights file
        (shipped / f"other.{suffix}").write_bytes((shipped / f"default.{suffix}").read_bytes())
    (shipped / "default.json").unlink()
    assert restore.main([str(_image(tmp_path)), str(tmp_path / "out.png"), "--pretrained", "other"]) == 0
    assert capsys.readouterr().out.startswith("using pretrained model 'other' (sha256 ")
    code = restore.main([str(_image(tmp_path)), str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no pretrained model 'default'" in err and "shipped: other" in err


def test_a_tampered_weights_file_is_refused_in_one_line(shipped, tmp_path, capsys):
    weights = shipped / "default.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match=r"default.safetensors: weights sha256 \w+\.\.\. does not match manifest "
                                              r"default.json .*; reinstall or re-export"):
        load_pretrained("default", shipped)
    code = restore.main([str(_image(tmp_path)), str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not match manifest" in err
    assert not (tmp_path / "out.png").exists()


def test_a_manifest_describing_another_model_is_refused(shipped):
    path = shipped / "default.json"
    manifest = json.loads(path.read_text())
    manifest["model"]["overrides"]["rank"] = 3  # the adapter's tensors are rank 2
    path.write_text(json.dumps(manifest))
    with pytest.raises(PretrainedError, match=r"default.safetensors: the weights are not those of the model the "
                                              r"manifest describes \(\d+ tensors differ, e.g. params\..*"):
        load_pretrained("default", shipped)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: "{", "not a pretrained-model manifest"),
    (lambda m: json.dumps(m | {"weights": "../default.safetensors"}), "is not a file name beside the manifest"),
    (lambda m: json.dumps(m | {"format": 99}), "format 99, expected 1"),
])
def test_an_unreadable_manifest_is_refused_naming_it(shipped, edit, message):
    path = shipped / "default.json"
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises(PretrainedError, match=rf"default.json: .*{message}.*; reinstall or re-export"):
        load_pretrained("default", shipped)


def test_an_oversized_export_is_refused_and_writes_nothing(tmp_path):
    workdir, _ = trained_run()
    with pytest.raises(PretrainedError, match=r"small: the weights are 0\.\d\d MiB, over the 0\.0009\d* MiB limit"):
        export.export(str(workdir), None, "small", tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_no_shipped_model_is_one_line_saying_how_to_get_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(FOLDER_VARIABLE, str(tmp_path / "empty"))
    code = restore.main([str(_image(tmp_path)), str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "no pretrained model is shipped" in err and "train.py --workdir DIR" in err
    assert "python -m cea_jax.pretrained.export" in err


@pytest.mark.parametrize(("flags", "message"), [
    (["--pretrained", "x", "--workdir", "w"], "give --pretrained NAME or --workdir/--checkpoint, not both"),
    (["--pretrained", "../x"], "model name '../x': use letters, digits"),
])
def test_pretrained_flag_is_checked_before_the_model_loads(tmp_path, capsys, flags, message):
    code = restore.main([str(tmp_path / "in.png"), str(tmp_path / "out.png"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


def test_the_package_ships_the_model_files():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"*.safetensors", "*.json"} <= set(package_data["cea_jax.pretrained"])


def _imports_and_errors(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, set[str], list[str]]:
    """(exit code, top-level packages imported, stderr lines other than import timings) of ``python -m ...``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **env)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    lines = proc.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    return proc.returncode, imported, [line for line in lines if not line.startswith("import time:")]


@pytest.mark.parametrize(("args", "message"), [
    (["cea_jax.restore", "in.png", "out.png"], "no pretrained model is shipped in"),
    (["cea_jax.pretrained.export", "--workdir", "w", "--name", "a/b"], "model name 'a/b': use letters"),
    (["cea_jax.pretrained.export", "--name", "x"], "give --workdir DIR (newest checkpoint) or --checkpoint"),
    (["cea_jax.pretrained.export", "--workdir", "w", "--psnr", "sigma25"], "--psnr expects COLUMN=DB"),
])
def test_a_missing_model_or_a_bad_export_flag_answers_before_jax_loads(tmp_path, args, message):
    _image(tmp_path)
    code, imported, errors = _imports_and_errors(args, tmp_path, {FOLDER_VARIABLE: str(tmp_path / "empty")})
    assert code == 2 and len(errors) == 1 and message in errors[0], errors
    assert not imported & {"jax", "jaxlib", "flax", "orbax"}, sorted(imported & {"jax", "jaxlib", "flax", "orbax"})


def test_the_shipped_default_model_restores_a_held_out_photo(monkeypatch):
    monkeypatch.delenv(FOLDER_VARIABLE, raising=False)
    config, params, manifest = load_pretrained()  # the committed weights, verified against their manifest
    assert manifest["training"]["data"] == "embedded" and set(manifest["held_out_psnr"]) >= {"sigma25", "dehaze"}
    clean = embedded.test_tiles()[-1]  # astronaut, never trained on
    noisy = degrade.add_uint8_noise(clean, 25.0, np.random.default_rng(0))
    restored = restore_batch(config, params, noisy[None])[0][0]
    target = clean.astype(np.float64) / 255.0
    gain = float(metrics.psnr(target, restored) - metrics.psnr(target, noisy.astype(np.float64) / 255.0))
    assert gain > 5.0, gain
