"""Tables, intervals, figures and verdict of benchmarks/cea_study.py (issue 25).

Differences CEA − baseline are paired by seed (a seed's Stage 2 runs share the data order,
crops and schedule) and by tile. Three views of each:
- a t-interval over the seed means (the spread between training runs; what the goal uses),
- the two-way bootstrap over seeds and tiles (mixed_report.paired_bootstrap),
- a sign test over tiles: on how many tiles (averaged over seeds) CEA is ahead, with a
  two-sided binomial p-value.
The backbone ("none") is one run; its per-tile scores pair with every seed's CEA.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import numpy as np
from mixed_report import _mean_sd, budget_table, paired_bootstrap
from scipy import stats

from runkit.files import atomic_write

GLOBAL_BASELINES = ("descriptor", "experts", "prompt")  # conditioning on a global summary of the image
BASELINES = ("none", *GLOBAL_BASELINES)
TARGET_OVER_BEST_DB = 0.3  # the goal: CEA's mixed PSNR this far above the best baseline
RESTORES_DB = 1.0  # Stage 1's target: this far above the degraded input on every column
METRICS = (("mixed_psnr", "psnr", "mixed PSNR (dB)"), ("delta", "delta", "Δ (dB)"))


def tile_matrix(records: list[dict[str, Any]], variant: str, key: str, seeds: list[int]) -> np.ndarray:
    """[len(seeds), tiles] of a per-tile mixed score; the single backbone run repeats for every seed."""
    by_seed = {r["seed"]: [t[key] for t in r["mixed"]] for r in records if r["variant"] == variant}
    if variant == "none":
        return np.repeat(np.asarray([next(iter(by_seed.values()))], np.float64), len(seeds), axis=0)
    return np.asarray([by_seed[s] for s in seeds], np.float64)


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of ``values`` (nan bounds for one value)."""
    n, mean = len(values), float(np.mean(values))
    if n < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * np.std(values, ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half


def sign_test(tile_diffs: np.ndarray) -> dict[str, Any]:
    """Tiles where CEA is ahead / behind (ties dropped) and the two-sided binomial p-value."""
    wins, losses = int(np.sum(tile_diffs > 0)), int(np.sum(tile_diffs < 0))
    p = float(stats.binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0
    return {"wins": wins, "losses": losses, "p": p}


def paired_differences(records: list[dict[str, Any]], resamples: int) -> dict[str, dict[str, Any]]:
    """CEA − baseline on mixed PSNR and Δ over the seeds both finished (every CEA seed for none)."""
    cea_seeds = sorted(r["seed"] for r in records if r["variant"] == "cea")
    out: dict[str, dict[str, Any]] = {}
    for baseline in BASELINES:
        seeds = [s for s in cea_seeds if baseline == "none" or any(
            r["variant"] == baseline and r["seed"] == s for r in records)]
        if not seeds or not any(r["variant"] == baseline for r in records):
            continue
        row: dict[str, Any] = {"seeds": seeds}
        for label, key, _ in METRICS:
            diff = tile_matrix(records, "cea", key, seeds) - tile_matrix(records, baseline, key, seeds)
            mean, low, high = t_interval(diff.mean(axis=1))
            _, boot_low, boot_high = paired_bootstrap(diff, resamples)
            row[label] = {"mean": mean, "t_low": low, "t_high": high, "boot_low": boot_low, "boot_high": boot_high,
                          "sign": sign_test(diff.mean(axis=0))}
        out[baseline] = row
    return out


def verdict(records: list[dict[str, Any]], diffs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The goal: CEA's Δ above every global baseline's (t-interval > 0) and mixed PSNR >= best baseline + 0.3 dB."""
    smaller_penalty = {b: diffs[b]["delta"]["t_low"] > 0 for b in GLOBAL_BASELINES if b in diffs}
    means = {v: statistics.fmean(statistics.fmean(t["psnr"] for t in r["mixed"]) for r in records
                                 if r["variant"] == v) for v in BASELINES if any(r["variant"] == v for r in records)}
    best = max(means, key=means.get) if means else None
    over_best = diffs[best]["mixed_psnr"]["mean"] if best in diffs else None
    complete = len(smaller_penalty) == len(GLOBAL_BASELINES) and over_best is not None
    return {"complete": complete, "penalty_smaller_than": smaller_penalty, "best_baseline": best,
            "mixed_psnr_over_best_db": over_best,
            "met": bool(complete and all(smaller_penalty.values()) and over_best >= TARGET_OVER_BEST_DB)}


def backbone_table(record: dict[str, Any]) -> tuple[str, bool]:
    """Stage 1: the backbone against the degraded input per column and on the mixed set; whether it restores."""
    lines = ["| test set | degraded input | backbone | gain (dB) |", "|---|---|---|---|"]
    gains = []
    rows = [(label, c["input_psnr"], c["psnr"]) for label, c in record["aio3"].items()]
    rows.append((f"Mixed ({len(record['mixed'])} tiles)", statistics.fmean(t["input_psnr"] for t in record["mixed"]),
                 statistics.fmean(t["psnr"] for t in record["mixed"])))
    for label, inp, out in rows:
        gains.append(out - inp)
        lines.append(f"| {label} | {inp:.2f} | {out:.2f} | {out - inp:+.2f} |")
    return "\n".join(lines), min(gains) >= RESTORES_DB


def _region_means(record: dict[str, Any], name: str) -> dict[str, float]:
    """Mean ``name`` PSNR per region recipe over the regions whose degraded input differs from the
    target (a rain region that no streak crosses has an infinite input PSNR; it is left out for every
    method alike, so the means stay comparable)."""
    values: dict[str, list[float]] = {}
    for tile in record["mixed"]:
        for region in tile["regions"]:
            if np.isfinite(region["input_psnr"]):
                values.setdefault(region["kind"], []).append(region[name])
    return {kind: float(np.mean(v)) for kind, v in sorted(values.items())}


def mixed_table(records: list[dict[str, Any]], variants: list[str]) -> str:
    first = records[0]
    kinds = list(_region_means(first, "input_psnr"))
    regions = " | ".join(f"{k} regions" for k in kinds)
    lines = [f"| method | seeds | mixed PSNR | {regions} | composite | Δ (dB) |",
             "|---|---|---|" + "---|" * (len(kinds) + 2)]
    inp = _region_means(first, "input_psnr")
    lines.append(f"| degraded input | - | {statistics.fmean(t['input_psnr'] for t in first['mixed']):.2f} | "
                 + " | ".join(f"{inp[k]:.2f}" for k in kinds) + " | - | - |")
    for variant in variants:
        group = [r for r in records if r["variant"] == variant]
        cells = [_mean_sd([statistics.fmean(t[key] for t in r["mixed"]) for r in group], 2)
                 for key in ("psnr",)]
        cells += [_mean_sd([_region_means(r, "psnr")[k] for r in group], 2) for k in kinds]
        cells += [_mean_sd([statistics.fmean(t[key] for t in r["mixed"]) for r in group], 2)
                  for key in ("composite_psnr", "delta")]
        name = "none (backbone)" if variant == "none" else variant
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diff_table(diffs: dict[str, dict[str, Any]]) -> str:
    def cells(d: dict[str, Any]) -> str:
        sign = d["sign"]
        return (f"{d['mean']:+.3f} | [{d['t_low']:+.3f}, {d['t_high']:+.3f}] | [{d['boot_low']:+.3f}, "
                f"{d['boot_high']:+.3f}] | {sign['wins']}/{sign['wins'] + sign['losses']} (p={sign['p']:.2g})")

    head = " | ".join(f"{title} {part}" for _, _, title in METRICS
                      for part in ("mean", "t-interval", "bootstrap", "tiles CEA ahead"))
    lines = [f"| CEA − baseline | seeds | {head} |", "|---|---|" + "---|" * 8]
    for baseline, row in diffs.items():
        lines.append(f"| {baseline} | {len(row['seeds'])} | " + " | ".join(cells(row[label]) for label, _, _ in METRICS)
                     + " |")
    return "\n".join(lines)


def write_results(records: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """results.json, results.md, diffs.png and per_region.png under ``args.out``."""
    from cea_study_figures import diff_figure, region_figure

    variants = [v for v in ("none", "cea", *GLOBAL_BASELINES) if any(r["variant"] == v for r in records)]
    diffs = paired_differences(records, args.bootstrap)
    decision = verdict(records, diffs)
    backbone = next((r for r in records if r["variant"] == "none"), None)
    settings = {key: getattr(args, key) for key in ("seeds", "backbone_steps", "backbone_lr", "adapter_steps",
                                                    "adapter_lr", "batch_size", "adapter_batch_size", "crop",
                                                    "mix_prob", "bootstrap")}
    payload = {"settings": settings | {"command": args.command}, "backbone": backbone and backbone["backbone"],
               "paired_differences": diffs, "verdict": decision,
               "runs": [{k: r[k] for k in ("name", "variant", "seed", "digest", "adapter_params", "step")}
                        for r in records]}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "results.json", json.dumps(payload, indent=2) + "\n")
    region_figure(records, variants, args.out / "per_region.png")
    parts = ["# CEA on a trained backbone: modules trained alone (tiny preset, embedded AIO-3, mixed crops)\n",
             f"Command: `{args.command}`\n",
             f"Stage 1: backbone {args.backbone_steps} steps x batch {args.batch_size}, lr {args.backbone_lr}. "
             f"Stage 2: each module {args.adapter_steps} steps x batch {args.adapter_batch_size}, lr "
             f"{args.adapter_lr}, backbone frozen. Crop {args.crop}, mix-prob {args.mix_prob}; seeds {args.seeds}.\n"]
    if backbone is not None:
        table, restores = backbone_table(backbone)
        weights = backbone["backbone"]
        parts.append(f"## Stage 1: the backbone (step {weights['step']}, weights sha256 {weights['sha256'][:16]})\n\n"
                     f"{table}\n\nRestores (>= +{RESTORES_DB:.0f} dB on every row): "
                     f"**{'yes' if restores else 'no'}**\n")
    parts += ["## Adapter budgets\n\n" + budget_table(variants) + "\n",
              "## Mixed set (mean ± sd over seeds)\n\n" + mixed_table(records, variants) + "\n",
              "![per-region PSNR](per_region.png)\n"]
    if diffs:
        diff_figure(diffs, args.out / "diffs.png")
        parts += ["## CEA − baseline, paired by seed and tile\n\nt-interval over the seed means; two-way bootstrap "
                  "(seeds and tiles); tiles CEA ahead of the baseline (seed-averaged) with the sign test's p.\n\n"
                  + diff_table(diffs) + "\n", "![CEA minus baseline](diffs.png)\n"]
    if (args.out / "routing.png").is_file():
        parts.append("## CEA's routing on mixed tiles\n\n![routing](routing.png)\n")
    parts.append("## Verdict\n\n```json\n" + json.dumps(decision, indent=2) + "\n```\n")
    atomic_write(args.out / "results.md", "\n".join(parts))

