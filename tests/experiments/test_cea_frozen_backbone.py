"""The cea_frozen_backbone experiment: its statistics (t-interval, sign test, pairing with the single backbone),
the verdict, the figures, and the settings checks that keep a resumed study honest."""

import json

import numpy as np
import pytest

from experiments import cea_runs
from experiments.cea_frozen_backbone import gate, report, stats
from experiments.cea_frozen_backbone import run as study
from runkit.records import SettingsMismatch


def _record(variant, seed, psnr, delta, kinds=("noise", "rain")):
    tiles = [{"psnr": p, "input_psnr": 15.0, "delta": d, "composite_psnr": p - d, "ssim": 0.5,
              "regions": [{"kind": k, "psnr": p + i, "input_psnr": 14.0 + i} for i, k in enumerate(kinds)]}
             for p, d in zip(psnr, delta)]
    return {"name": f"{variant}-seed{seed}", "variant": variant, "seed": seed, "digest": "x", "adapter_params": 1,
            "step": 10, "mixed": tiles, "backbone": {"step": 10, "sha256": "ab" * 32}}


def test_t_interval_matches_the_textbook_formula_and_needs_two_values():
    mean, low, high = stats.t_interval(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert mean == 3.0 and high - mean == pytest.approx(2.7764451 * np.std([1, 2, 3, 4, 5], ddof=1) / np.sqrt(5))
    assert low == pytest.approx(2 * mean - high)
    assert np.isnan(stats.t_interval(np.array([1.0]))[1])


def test_sign_test_counts_wins_drops_ties_and_gives_the_binomial_p():
    result = stats.sign_test(np.array([0.1, 0.2, -0.3, 0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]))
    assert (result["wins"], result["losses"]) == (8, 1)
    assert result["p"] == pytest.approx(20 / 512)  # 2 * P(X <= 1), X ~ Bin(9, 1/2)


def test_the_single_backbone_pairs_with_every_cea_seed():
    records = [_record("none", None, [10.0, 11.0, 12.0], [0.0, 0.0, 0.0])]
    records += [_record("cea", s, [10.5 + s, 11.5 + s, 12.5 + s], [0.1, 0.1, 0.1]) for s in (0, 1)]
    records += [_record("prompt", 0, [10.0, 11.0, 12.0], [-0.2, -0.2, -0.2])]
    diffs = stats.paired_differences(records, 200)
    assert diffs["none"]["seeds"] == [0, 1]
    assert diffs["none"]["mixed_psnr"]["mean"] == pytest.approx(1.0)  # (0.5 + 1.5) / 2
    assert diffs["none"]["mixed_psnr"]["sign"] == {"wins": 3, "losses": 0, "p": pytest.approx(0.25)}
    assert diffs["prompt"]["seeds"] == [0]  # only seed 0 has both
    assert diffs["prompt"]["delta"]["mean"] == pytest.approx(0.3)


def test_verdict_needs_every_global_baseline_beaten_on_delta_and_the_psnr_margin():
    records = [_record("none", None, [10.0] * 4, [-0.5] * 4)]
    for seed in range(3):
        records.append(_record("cea", seed, [11.0 + 0.01 * seed] * 4, [-0.1] * 4))
        for baseline in ("descriptor", "experts", "prompt"):
            records.append(_record(baseline, seed, [10.5 - 0.02 * seed] * 4, [-0.4 - 0.01 * seed] * 4))
    decision = stats.verdict(records, stats.paired_differences(records, 200))
    assert decision["complete"] and decision["best_baseline"] in ("descriptor", "experts", "prompt")
    assert decision["met"] and decision["mixed_psnr_over_best_db"] == pytest.approx(0.53)
    close = [dict(r, mixed=[dict(t, psnr=t["psnr"] - 0.4) for t in r["mixed"]]) if r["variant"] == "cea" else r
             for r in records]
    assert not stats.verdict(close, stats.paired_differences(close, 200))["met"]  # only +0.13 dB


def test_write_results_draws_every_figure_and_states_whether_the_backbone_restores(tmp_path):
    backbone = _record("none", None, [16.0, 17.0], [-0.1, -0.2])
    backbone["aio3"] = {"Denoise σ=15": {"psnr": 26.0, "input_psnr": 24.6},
                        "Dehaze": {"psnr": 12.5, "input_psnr": 12.0}}
    records = [backbone] + [_record(v, s, [16.2 + s, 17.1], [-0.1, -0.1]) for s in (0, 1) for v in ("cea", "prompt")]
    settings = dict(bootstrap=100, seeds=[0, 1], backbone_steps=5, backbone_lr=1e-3,
                    adapter_steps=3, adapter_lr=1e-3, batch_size=2, adapter_batch_size=2, crop=32,
                    mix_prob=0.5, command="python -m experiments.cea_frozen_backbone.run")
    backbone["mixed"][0]["regions"][1]["input_psnr"] = float("inf")  # a rain region no streak crosses
    report.write_results(records, settings, tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "| degraded input | - | 15.00 | 14.00 | 15.00 |" in text  # the rain mean leaves that region out
    assert "Restores (>= +1 dB on every row): **no**" in text  # Dehaze gains only +0.5 dB
    assert "| Dehaze | 12.00 | 12.50 | +0.50 |" in text
    assert (tmp_path / "diffs.png").stat().st_size > 0 and (tmp_path / "per_region.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["paired_differences"]["prompt"]["seeds"] == [0, 1]


def test_a_workdir_or_record_made_with_other_settings_is_refused(tmp_path):
    args = study.parse_args(["--runs", str(tmp_path / "runs"), "--seeds", "0"])
    run = study.module_runs(args)[0]
    assert run["config"].train == "adapter" and run["config"].init_from == str(tmp_path / "runs" / "backbone")
    workdir = tmp_path / "runs" / run["name"]
    workdir.mkdir(parents=True)
    saved = {"model": run["spec"].to_json(), "train": {**vars(run["config"]), "lr": 0.5}}
    (workdir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(SettingsMismatch,
                       match=r"trained with other settings \(lr 0.5 -> [0-9.e-]+\); remove it or use another --runs$"):
        cea_runs.check_workdir(run, workdir)
    saved["train"] = {**vars(run["config"]), "init_checkpoint": {"sha256": "ab"}}  # the record is not a setting
    (workdir / "config.json").write_text(json.dumps(saved))
    cea_runs.check_workdir(run, workdir)
    saved["train"] = {k: v for k, v in vars(run["config"]).items() if k != "mix_feather"}  # added to TrainConfig later
    saved["train"]["val_every"] += 1  # free on resume (train.py's FREE_ON_RESUME)
    (workdir / "config.json").write_text(json.dumps(saved))
    cea_runs.check_workdir(run, workdir)
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"name": run["name"], "digest": "old"}) + "\n")
    with pytest.raises(SettingsMismatch, match="digest mismatch"):
        cea_runs.scored_records(records, [{"name": run["name"], "digest": "new"}])


def test_a_torn_record_line_costs_only_its_own_run(tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"name": "a", "digest": "x"}) + "\n" + '{"name": "b", "dig'
                       + "\n" + json.dumps({"name": "c", "digest": "y"}) + "\n")
    runs = [{"name": n, "digest": d} for n, d in (("a", "x"), ("b", "z"), ("c", "y"))]
    assert sorted(cea_runs.scored_records(records, runs)) == ["a", "c"]


def test_gate_passes_a_backbone_above_nl_means_on_every_noise_column_and_names_the_ones_below():
    bar = {"Denoise σ=15": 31.8, "Denoise σ=25": 29.2}
    strong = {"Denoise σ=15": {"psnr": 32.0}, "Denoise σ=25": {"psnr": 29.5}, "Derain": {"psnr": 1.0}}
    lines = []
    gate.check(strong, bar, emit=lines.append)
    assert [line.endswith("beats it") for line in lines] == [True, True]
    weak = dict(strong, **{"Denoise σ=25": {"psnr": 29.2}})  # a tie is not a win
    lines.clear()
    with pytest.raises(gate.WeakBackbone, match=r"on Denoise σ=25 29.20 <= 29.20 dB; train it longer"):
        gate.check(weak, bar, emit=lines.append)
    assert len(lines) == 2 and lines[1].endswith("below")  # the numbers come before the refusal
    lines.clear()
    gate.check(weak, bar, force=True, emit=lines.append)
    assert lines[1].endswith("below") and "forced past a weak backbone" in lines[-1]


@pytest.fixture
def jax_cache_settings_restored():
    """The runner points JAX's compilation cache at its --runs; later tests get the old settings back."""
    import jax

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {name: getattr(jax.config, name) for name in names}
    yield
    for name, value in saved.items():
        jax.config.update(name, value)


def test_stage_2_refuses_a_backbone_that_nl_means_beats_unless_forced(tmp_path, capsys, monkeypatch,
                                                                      jax_cache_settings_restored):
    argv = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--seeds", "0", "--backbone-steps", "1",
            "--batch-size", "1", "--crop", "32", "--max-tiles", "1", "--bootstrap", "10"]
    assert study.main(argv) == 2  # one step of training: NL-means beats it everywhere
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("cea_frozen_backbone: error: the backbone does not beat "
                                                     "NL-means (σ estimated) on Denoise σ=15 ")
    gate_lines = [line for line in captured.out.splitlines() if line.startswith("[gate]")]
    assert len(gate_lines) == 3 and all(line.endswith("below") for line in gate_lines)
    assert not (tmp_path / "runs" / "cea-seed0").exists()  # Stage 2 never started

    started = []

    def stage_2_stops_at_once(run, runs, progress=True):
        assert run["name"] != study.BACKBONE  # Stage 1 is reused, not retrained
        started.append(run["name"])
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "train_run", stage_2_stops_at_once)
    assert study.main([*argv, "--force-weak-backbone"]) == 130
    assert started == ["cea-seed0"] and "forced past a weak backbone" in capsys.readouterr().out


def test_the_layouts_of_one_base_tile_are_one_unit_and_photos_are_reported_apart():
    def with_tiles(record, tiles, photos):
        return dict(record, mixed=[dict(t, tile=b, photo=p) for t, b, p in zip(record["mixed"], tiles, photos)])

    tiles, photos = [0, 0, 0, 1, 1, 1], ["a", "a", "a", "b", "b", "b"]
    cea = [with_tiles(_record("cea", s, [11.0, 11.0, 11.0, 9.0, 9.0, 9.0], [0.0] * 6), tiles, photos) for s in (0, 1)]
    prompt = [with_tiles(_record("prompt", s, [10.0] * 6, [0.0] * 6), tiles, photos) for s in (0, 1)]
    row = stats.paired_differences(cea + prompt, 50)["prompt"]["mixed_psnr"]
    assert row["units"] == 2 and (row["sign"]["wins"], row["sign"]["losses"]) == (1, 1)  # not 3 wins, 3 losses
    assert row["per_photo"]["a"]["mean"] == pytest.approx(1.0) and row["per_photo"]["b"]["mean"] == pytest.approx(-1.0)
    assert row["per_photo"]["a"]["units"] == 1


def test_records_without_base_tiles_use_the_test_sets_own_indexing():
    record = _record("cea", 0, [10.0] * 90, [0.0] * 90)
    tiles, photos = stats.base_tiles(record)
    assert tiles[:2] == [0, 1] and tiles[88:] == [0, 1]  # 88 base tiles, then the next layout
    assert photos[0] == "chelsea" and photos[87] == "astronaut"


def test_every_seed_has_a_whole_backbone_fine_tuning_control():
    args = study.parse_args(["--seeds", "0,1"])
    controls = [r for r in study.module_runs(args) if r["variant"] == stats.CONTROL]
    assert [r["seed"] for r in controls] == [0, 1]
    assert all(r["spec"].variant == "none" and r["config"].train == "all" for r in controls)
    cea = next(r for r in study.module_runs(args) if r["variant"] == "cea")
    same = ("steps", "batch_size", "lr", "seed", "crop", "mix_prob", "init_from")
    assert all(getattr(controls[0]["config"], k) == getattr(cea["config"], k) for k in same)
