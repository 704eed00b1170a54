"""evaluate.py --task ...: tables, JSON, figures, and clear errors, on the shared tiny run."""

import json

import numpy as np
import pytest
from data_helpers import make_cdd11_root, trained_run
from PIL import Image

import evaluate as evaluate_cli
from cea_jax import evaluation


def test_aio3_writes_tables_grid_and_affinity_maps(tmp_path, capsys):
    workdir, _ = trained_run()
    out = tmp_path / "aio3"
    code = evaluate_cli.main(["--task", "aio3", "--workdir", str(workdir), "--out", str(out),
                              "--max-images", "2", "--grid", "2", "--no-progress"])
    assert code == 0
    table = capsys.readouterr().out
    assert "| Method | Denoise σ=15 | Denoise σ=25 | Denoise σ=50 | Derain | Dehaze | Average |" in table
    result = json.loads((out / "results.json").read_text())
    assert result["variant"] == "cea" and result["ssim_window"] == "uniform"
    assert [c["count"] for c in result["columns"].values()] == [2] * 5
    psnrs = [c["psnr"] for c in result["columns"].values()]
    assert result["average"]["psnr"] == pytest.approx(np.mean(psnrs))
    assert all(np.isfinite(psnrs)) and all(0 < c["ssim"] <= 1 for c in result["columns"].values())
    # Heavier noise is harder: the same tiles score lower at sigma 50 than at sigma 15.
    assert psnrs[0] > psnrs[2]
    assert (out / "results.md").read_text().count("|") > 10
    for png in ("grid.png", "affinity.png"):
        assert Image.open(out / png).size[0] > 100


def test_anchor_rows_sit_beside_the_models_on_the_same_images(tmp_path):
    from data_helpers import make_promptir_root

    workdir, _ = trained_run()
    out = tmp_path / "out"
    root = make_promptir_root(tmp_path)
    args = evaluation.parse_args(["--task", "aio3", "--workdir", str(workdir), "--data", str(root), "--out", str(out),
                                  "--anchors", "--no-progress"])
    result = evaluation.evaluate(args)
    lines = result["table"].splitlines()
    names = [line.split(" | ")[0].removeprefix("| ") for line in lines[2:9]]
    assert names == ["Input (degraded)", "BM3D (σ known)", "NL-means (σ estimated)", "TV (oracle weight)",
                     "Median 5x5", "Dark-channel prior", f"cea (step {result['step']})"]
    assert (out / "results.md").read_text().count("| BM3D (σ known) |") == 1
    for label, column in result["columns"].items():  # the model's count is every anchor's and the input's
        assert result["input"]["columns"][label]["count"] == column["count"] == 2
    rows = json.loads((out / "results.json").read_text())["anchors"]["rows"]
    assert rows["Dark-channel prior"]["columns"]["Dehaze"]["count"] == 2
    assert "Derain" not in rows["BM3D (σ known)"]["columns"]
    for score in result["per_image"]["Denoise σ=15"]:
        assert {"model", "input", "anchors"} <= set(score)


def test_gaussian_ssim_window_and_cdd11_folder(tmp_path):
    workdir, _ = trained_run()
    root = make_cdd11_root(tmp_path)
    args = evaluation.parse_args(["--task", "cdd11", "--workdir", str(workdir), "--data", str(root),
                                  "--out", str(tmp_path / "cdd"), "--ssim-window", "gaussian",
                                  "--max-images", "1", "--no-progress"])
    result = evaluation.evaluate(args)
    assert len(result["columns"]) == 11 and result["ssim_window"] == "gaussian"
    assert "low_haze_snow" in result["table"]


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    code = evaluate_cli.main(["--task", "mixed", "--workdir", str(tmp_path)])
    assert code == 2 and "config.json: not found" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    code = evaluate_cli.main(["--task", "mixed", "--workdir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "no checkpoints under" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--workdir", "x"], "the following arguments are required: --task"),
    (["--task", "aio3", "--workdir", "{tmp}/notes.txt"], "notes.txt/config.json: not found"),
    (["--task", "aio3", "--checkpoint", "{tmp}/notes.txt"], "notes.txt: not a checkpoint step folder"),
    (["--task", "aio3", "--bogus"], "unrecognized arguments: --bogus (see evaluate.py --help)"),  # not the usage
    (["--task", "aio3", "--max-images", "x"], "argument --max-images: invalid int value: 'x'"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    (tmp_path / "notes.txt").write_text("")
    code = evaluate_cli.main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("evaluate.py: error: ") and message in err


def test_mixed_task_reports_the_input_row_regions_and_the_mixing_penalty(tmp_path):
    workdir, _ = trained_run()
    args = evaluation.parse_args(["--task", "mixed", "--workdir", str(workdir), "--out", str(tmp_path),
                                  "--max-images", "3", "--no-progress"])
    result = evaluation.evaluate(args)
    mixed = result["mixed"]
    assert mixed["protocol"] == "aio3" and mixed["count"] == 3  # the run's training protocol
    for score in result["per_image"]["Mixed"]:
        assert score["delta"] == pytest.approx(score["model"]["psnr"] - score["composite_psnr"])
        assert len(score["model"]["regions"]) == len(score["kinds"]) in (2, 3)
    assert mixed["delta"] == pytest.approx(np.mean([s["delta"] for s in result["per_image"]["Mixed"]]))
    lines = result["table"].splitlines()
    assert any(line.startswith("| Input (degraded) |") and line.endswith("| - | - |") for line in lines)
    assert "regions |" in result["table"] and "Δ (dB)" in result["table"]
    assert result["input"]["average"]["psnr"] == pytest.approx(mixed["input"]["psnr"])


def test_skip_bad_leaves_bad_test_images_out_and_counts_the_rest(tmp_path, capsys, caplog):
    from data_helpers import make_promptir_root

    workdir, _ = trained_run()
    root = make_promptir_root(tmp_path)
    (root / "test/derain/Rain100L/input/rain-0.png").write_bytes(b"garbage")
    base = ["--task", "aio3", "--workdir", str(workdir), "--data", str(root), "--out", str(tmp_path / "out"),
            "--no-progress"]
    assert evaluate_cli.main(base) == 2
    assert "rain-0.png: cannot read image" in capsys.readouterr().err
    assert evaluate_cli.main([*base, "--skip-bad"]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    counts = {label: column["count"] for label, column in result["columns"].items()}
    assert counts["Derain"] == 1 and counts["Dehaze"] == 2  # skipped, not replaced by the next image
    assert [s["index"] for s in result["per_image"]["Derain"]] == [1]
    assert caplog.text.count("skipping bad test image") == 1
