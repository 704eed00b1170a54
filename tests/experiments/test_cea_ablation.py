"""The ablation experiment's aggregation: seeds are averaged per variant, targets compare CEA with prompt."""

import json

import pytest

from experiments.cea_ablation import report
from experiments.cea_ablation import run as cea_ablation


def _record(variant, seed, test_psnr, mixed_psnr, group="variants", label=None, protocol="aio3"):
    columns = {"Denoise": {"psnr": test_psnr - 1, "ssim": 0.5}, "Derain": {"psnr": test_psnr + 1, "ssim": 0.7}}
    return {"name": f"{protocol}-{variant}-{seed}-{label}", "group": group, "label": label or variant,
            "protocol": protocol, "variant": variant, "seed": seed, "params": 1000, "flops": 2e6, "flops_size": 128,
            "test": {"columns": columns, "average": {"psnr": test_psnr, "ssim": 0.6}},
            "mixed": {"average": {"psnr": mixed_psnr, "ssim": 0.5}}}


def test_variant_table_averages_seeds_with_half_range():
    records = [_record("prompt", 0, 20.0, 18.0), _record("prompt", 1, 21.0, 18.4), _record("cea", 0, 22.0, 19.0)]
    table = report.variant_table(records, "aio3")
    prompt_row = next(line for line in table.splitlines() if line.startswith("| prompt "))
    assert "| 2 |" in prompt_row and "20.50 ± 0.50" in prompt_row and "18.20 ± 0.20" in prompt_row
    assert "19.50 ± 0.50" in prompt_row  # the Denoise column (average - 1)
    cea_row = next(line for line in table.splitlines() if line.startswith("| cea "))
    assert "22.00 |" in cea_row and "±" not in cea_row  # one seed: no spread
    assert report.variant_table(records, "cdd11") == ""


def test_targets_pair_cea_and_prompt_by_seed():
    records = [_record("prompt", 0, 20.0, 18.0), _record("prompt", 1, 21.0, 18.0),
               _record("cea", 0, 20.6, 18.4), _record("cea", 1, 21.2, 18.6),
               _record("cea", 0, 30.0, 30.0, protocol="cdd11"),  # no prompt run on cdd11: no cdd11 target
               _record("cea", 2, 40.0, 40.0)]  # no prompt run for seed 2: not paired
    targets = report.targets(records)
    assert not any(key.startswith("cdd11") for key in targets)
    assert targets["aio3_test_cea_minus_prompt_per_seed_db"] == pytest.approx([0.6, 0.2])
    assert targets["aio3_test_cea_minus_prompt_db"] == pytest.approx(0.4)
    assert targets["aio3_test_target_met"] is True
    assert targets["aio3_mixed_cea_minus_prompt_db"] == pytest.approx(0.5)
    assert targets["aio3_mixed_target_met"] is True
    records[2]["mixed"]["average"]["psnr"] = 18.3
    assert report.targets(records)["aio3_mixed_target_met"] is False


def test_ablation_table_lists_the_reference_cea_run_first():
    records = [_record("cea", 0, 21.0, 19.0), _record("cea", 1, 25.0, 25.0),
               _record("cea", 0, 20.0, 18.0, group="ablations", label="rank 16")]
    lines = report.ablation_table(records).splitlines()
    assert lines[2].startswith("| default") and "21.00" in lines[2]
    assert lines[3].startswith("| rank 16 ") and "20.00" in lines[3]
    assert len(lines) == 4


def test_planned_runs_cover_grid_and_ablations():
    args = cea_ablation.parse_args(["--seeds", "0,1", "--protocols", "aio3,cdd11"])
    runs = cea_ablation.planned_runs(args)
    grid = [r for r in runs if r["group"] == "variants"]
    assert len(grid) == 2 * 2 * 5 and len({r["name"] for r in runs}) == len(runs)
    assert [r["overrides"] for r in runs if r["group"] == "ablations"] == list(cea_ablation.ABLATIONS.values())
    with pytest.raises(SystemExit):
        cea_ablation.parse_args(["--variants", "cea,bogus"])


def test_a_record_made_with_other_settings_is_refused_not_reused(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--runs", str(tmp_path / "runs"), "--variants", "cea", "--protocols", "aio3",
            "--seeds", "0", "--no-ablations", "--steps", "20"]
    [run] = cea_ablation.planned_runs(cea_ablation.parse_args(argv))
    (tmp_path / "records.jsonl").write_text(json.dumps({**run, "test": {}, "mixed": {}}) + "\n")
    assert cea_ablation.main([*argv[:-1], "30"]) == 2  # --steps 30: the 20-step record must not be reused
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cea_ablation: error: {tmp_path / 'records.jsonl'}: {run['name']} was scored with other settings "
        "(digest mismatch); use another --out")
