"""Training loop: schedule, resume after an interrupt equals an uninterrupted run, clear data errors."""

import dataclasses
import json
import multiprocessing
import os
import signal
import threading
import time

import jax
import numpy as np
import pytest
from data_helpers import SMALL_SPEC, SMALL_TRAIN, make_promptir_root, trained_run

import train as train_cli
from cea_jax import model_overrides, train_lib
from cea_jax import workdir as wd
from cea_jax.data import embedded
from cea_jax.summary import count_params
from cea_jax.train_lib import TrainConfig


def test_schedule_warms_up_then_decays_with_the_recipe_proportions():
    schedule = train_lib.learning_rate(TrainConfig(steps=120, lr=2e-4))
    assert float(schedule(0)) == 0.0
    assert float(schedule(15)) == pytest.approx(2e-4)  # warm-up: 15 of 120 "epochs"
    assert float(schedule(7)) == pytest.approx(2e-4 * 7 / 15)
    # Cosine over 150 "epochs" but stopped at 120: the rate at the end is not yet zero.
    assert 0 < float(schedule(120)) < float(schedule(60)) < 2e-4


def test_fft_loss_adds_a_spectral_term():
    a = np.zeros((1, 8, 8, 3), np.float32)
    b = np.full((1, 8, 8, 3), 0.5, np.float32)
    l1 = float(train_lib.restoration_loss(a, b, 0.0))
    assert l1 == pytest.approx(0.5)
    assert float(train_lib.restoration_loss(a, b, 0.1)) > l1


def test_run_writes_config_metrics_and_checkpoint():
    workdir, row = trained_run()
    assert row["step"] == SMALL_TRAIN.steps and not row["interrupted"]
    assert np.isfinite(row["loss"]) and np.isfinite(row["val_psnr"])
    spec, saved_train = wd.load_run_config(workdir)
    assert spec == SMALL_SPEC and saved_train["steps"] == SMALL_TRAIN.steps
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, SMALL_TRAIN.steps + 1))
    assert all(r["images_per_s"] > 0 for r in rows if "loss" in r)
    assert wd.resolve_checkpoint(str(workdir), None)[1].name == str(SMALL_TRAIN.steps)


def _interrupt_when(metrics_path, step):
    """SIGINT this process (as Ctrl-C would) once the run has logged ``step``."""
    def watch():
        deadline = time.time() + 300
        while time.time() < deadline:
            if metrics_path.exists():
                steps = [json.loads(line).get("step", 0) for line in metrics_path.read_text().splitlines()]
                if steps and max(steps) >= step:
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_interrupt_then_resume_equals_uninterrupted_run(tmp_path):
    reference, _ = trained_run()
    workdir = tmp_path / "resumed"
    watcher = _interrupt_when(workdir / "metrics.jsonl", 3)
    first = train_lib.train(workdir, SMALL_SPEC, SMALL_TRAIN, progress=False)
    watcher.join()
    stopped_at = int(wd.resolve_checkpoint(str(workdir), None)[1].name)
    assert first["interrupted"] and 3 <= stopped_at < SMALL_TRAIN.steps
    second = train_lib.train(workdir, SMALL_SPEC, SMALL_TRAIN, progress=False)
    assert not second["interrupted"] and second["step"] == SMALL_TRAIN.steps
    _, expected, _ = wd.load_params(str(reference))
    _, actual, step = wd.load_params(str(workdir))
    assert step == SMALL_TRAIN.steps
    for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(actual), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert second["loss"] == pytest.approx(trained_run()[1]["loss"], abs=1e-6)


def test_a_different_model_in_the_same_workdir_is_refused():
    workdir, _ = trained_run()
    other = wd.ModelSpec("tiny", "none", SMALL_SPEC.overrides)
    with pytest.raises(wd.WorkdirError, match="holds a run of"):
        train_lib.train(workdir, other, SMALL_TRAIN, progress=False)


def test_a_run_on_another_embedded_split_is_refused(monkeypatch):
    """A run resumed after the embedded photos or their scale changed would mix two datasets."""
    workdir, _ = trained_run()
    assert wd.load_run_config(workdir)[1]["embedded_split"] == embedded.split_identity()
    changed = {**embedded.split_identity(), "train_photos": ["camera"]}
    monkeypatch.setattr(embedded, "split_identity", lambda: changed)
    with pytest.raises(wd.WorkdirError, match="other settings .*embedded_split"):
        train_lib.train(workdir, SMALL_SPEC, SMALL_TRAIN, progress=False)


def test_corrupt_training_image_is_a_clear_cli_error(tmp_path, capsys):
    root = make_promptir_root(tmp_path)
    for i in range(2):
        (root / f"Train/Derain/gt/norain-{i}.png").write_bytes(b"not a png")
    code = train_cli.main(["--workdir", str(tmp_path / "run"), "--data", str(root), "--crop", "32",
                           "--batch-size", "4", "--workers", "0", "--steps", "2", "--no-progress",
                           *[f"--set={k}={json.dumps(v)}" for k, v in SMALL_SPEC.overrides]])
    err = capsys.readouterr().err
    assert code == 2
    assert "norain-" in err and "cannot read image" in err
    assert "Traceback" not in err


def test_bad_arguments_are_clear_cli_errors(tmp_path, capsys):
    code = train_cli.main(["--workdir", str(tmp_path / "run"), "--crop", "30"])
    assert code == 2 and "crop must be a multiple of 8" in capsys.readouterr().err
    code = train_cli.main(["--workdir", str(tmp_path / "run"), "--set", "no_such_field=1"])
    assert code == 2 and "no_such_field" in capsys.readouterr().err


def test_workdir_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("")
    code = train_cli.main(["--workdir", str(tmp_path / "notes.txt"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "notes.txt: is a file; --workdir needs a folder" in err


def test_flags_are_the_train_config_fields():
    args = train_cli.parse_args(["--workdir", "w", "--val-crop", "64", "--skip-bad", "--tfds-data-dir", "d"])
    config = TrainConfig(**{f: getattr(args, f) for f in TrainConfig.__dataclass_fields__})
    assert config == TrainConfig(val_crop=64, skip_bad=True, tfds_data_dir="d")
    assert train_cli.parse_args(["--workdir", "w"]).lr == TrainConfig().lr


def test_non_finite_loss_or_validation_stops_the_run():
    train_lib._check_finite({"loss": 0.5, "val_psnr": 30.0}, 3)
    with pytest.raises(FloatingPointError, match="val_psnr=nan at step 3"):
        train_lib._check_finite({"loss": 0.5, "val_psnr": float("nan")}, 3)


def test_grain_workers_are_closed_when_the_run_fails_after_they_started(tmp_path, monkeypatch):
    real = train_lib.state_initializer

    def failing_initializer(*args):
        def create(source=None):  # runs after the first batch was read, i.e. with the workers up
            assert multiprocessing.active_children(), "the workers should be running by now"
            raise MemoryError("no memory to initialise the model")
        return real(*args)[0], create

    monkeypatch.setattr(train_lib, "state_initializer", failing_initializer)
    config = dataclasses.replace(SMALL_TRAIN, workers=1)
    with pytest.raises(MemoryError) as caught:
        train_lib.train(tmp_path / "run", SMALL_SPEC, config, progress=False)
    assert caught.value  # the traceback (and with it the iterator) is still alive here ...
    assert multiprocessing.active_children() == []  # ... yet its worker process is gone


def test_resume_forgets_rows_past_the_checkpoint_and_half_written_ones(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1}\n{"step": 2, "val_psnr": 20}\n{"step": 3, "loss": 0.5}\n{"step": 4, "lo')
    train_lib._drop_rows_after(path, 2)
    assert path.read_text() == '{"step": 1, "loss": 1}\n{"step": 2, "val_psnr": 20}\n'
    inode = path.stat().st_ino
    train_lib._drop_rows_after(path, 2)  # nothing to forget: the file is not rewritten (nor fsynced)
    assert path.stat().st_ino == inode
    assert path.read_text() == '{"step": 1, "loss": 1}\n{"step": 2, "val_psnr": 20}\n'


@pytest.mark.parametrize(("flag", "value"), [("--lr", "nan"), ("--lr", "inf"), ("--weight-decay", "nan"),
                                             ("--fft-weight", "inf"), ("--mix-feather", "nan"),
                                             ("--mix-prob", "-inf")])
def test_non_finite_numbers_are_refused_before_any_work(tmp_path, capsys, monkeypatch, flag, value):
    monkeypatch.setattr(train_lib, "train", lambda *a, **k: pytest.fail("training started"))
    code = train_cli.main(["--workdir", str(tmp_path / "run"), f"{flag}={value}", "--no-progress"])
    err = capsys.readouterr().err
    name = flag[2:].replace("-", "_")
    assert code == 2 and err == f"train.py: error: {name} must be a finite number, got {float(value)}\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("setting", "message"), [
    ("rank=1e9", "--set rank: expected int, got float 1000000000.0"),
    ("dim=true", "--set dim: expected int, got bool true"),
    ("num_blocks=[1,1,1]", "--set num_blocks: expected a list of 4 ints, got list [1, 1, 1]"),
    ("ffn_expansion=Infinity", "--set ffn_expansion: expected a finite number, got float Infinity"),
    ("probes=2.5", "--set probes: expected int or null, got float 2.5"),
    ("learn_tau=1", "--set learn_tau: expected bool, got int 1"),
    ("adapter.affinity=3", "--set adapter.affinity: expected str, got int 3"),
])
def test_set_values_of_the_wrong_type_are_refused_before_the_workdir_exists(tmp_path, capsys, monkeypatch,
                                                                             setting, message):
    monkeypatch.setattr(train_lib, "train", lambda *a, **k: pytest.fail("training started"))
    code = train_cli.main(["--workdir", str(tmp_path / "run"), "--set", setting, "--no-progress"])
    assert code == 2 and capsys.readouterr().err == f"train.py: error: {message}\n"
    assert not (tmp_path / "run").exists()


def test_a_model_too_large_for_the_device_is_refused_before_the_workdir_exists(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_lib, "train", lambda *a, **k: pytest.fail("training started"))
    # rank 10^9: 32 billion parameters, 477 GiB of training state, more than any one device or host here.
    code = train_cli.main(["--workdir", str(tmp_path / "run"), "--set", "rank=1000000000", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("train.py: error: --config tiny --variant cea --set rank=1000000000: the model has "
                          "32,000,819,354 parameters, whose training state alone needs 476.8 GiB, more than the ")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("train", "fits"), [("all", False), ("adapter", True)])
def test_the_memory_check_counts_optimiser_state_only_for_what_is_trained(monkeypatch, train, fits):
    config = SMALL_SPEC.config()
    counts = count_params(config)
    # Room for every weight plus the adapter's gradients and moments, not the whole model's.
    room = 4 * counts["total"] + 12 * counts["adapter"]
    monkeypatch.setattr(model_overrides, "_device_memory", lambda: (room, "a small test device"))
    if fits:
        model_overrides.check_fits(config, train == "adapter", "small")
    else:
        with pytest.raises(ValueError, match="more than the 0.0 GiB of a small test device"):
            model_overrides.check_fits(config, train == "adapter", "small")
