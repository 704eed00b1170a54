"""Tables, intervals, figure and verdict of benchmarks/cea_mixed.py (issue 16).

Differences CEA - baseline are paired by seed (same data order and initial key) and by
test tile; their 95% intervals come from a two-way bootstrap that resamples seeds and
tiles independently (percentile interval), so both sources of spread are in them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cea_jax.configs import get_config, matched_overrides
from runkit.files import atomic_write

GLOBAL_BASELINES = ("descriptor", "experts", "prompt")  # conditioning on a global summary of the image
TARGET_OVER_PROMPT_DB = 0.5


def paired_bootstrap(diff: np.ndarray, resamples: int, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5th, 97.5th percentile) of the mean of ``diff`` [seeds, tiles] under a two-way bootstrap."""
    seeds, tiles = diff.shape
    rng = np.random.default_rng(seed)
    seed_counts = np.stack([np.bincount(rng.integers(seeds, size=seeds), minlength=seeds) for _ in range(resamples)])
    tile_counts = np.stack([np.bincount(rng.integers(tiles, size=tiles), minlength=tiles) for _ in range(resamples)])
    means = np.einsum("bs,st,bt->b", seed_counts, diff, tile_counts) / (seeds * tiles)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def per_tile(records: list[dict[str, Any]], variant: str, task: str, key: str) -> np.ndarray:
    """[seeds, tiles] of one per-image score (seeds in ascending order)."""
    rows = sorted((r for r in records if r["variant"] == variant), key=lambda r: r["seed"])
    values = []
    for r in rows:
        scores = [s for column in r[task]["per_image"].values() for s in column]
        values.append([s["delta"] if key == "delta" else s["model"][key] for s in scores])
    return np.asarray(values, np.float64)


def _mean_sd(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def budget_table(variants: list[str]) -> str:
    from cea_jax.summary import count_params

    cea = count_params(get_config("tiny", "cea"))["adapter"]
    lines = ["| variant | setting | adapter params (K) | vs CEA | sites |", "|---|---|---|---|---|"]
    for variant in variants:
        overrides = matched_overrides("tiny", variant)
        config = get_config("tiny", variant, **overrides)
        adapter = count_params(config)["adapter"]
        setting = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "default"
        ratio = "-" if variant == "none" else f"{100 * (adapter / cea - 1):+.1f}%"
        sites = "-" if variant == "none" else config.adapter.sites
        lines.append(f"| {variant} | {setting} | {adapter / 1e3:.1f} | {ratio} | {sites} |")
    return "\n".join(lines)


def single_table(records: list[dict[str, Any]], variants: list[str]) -> str:
    columns = list(records[0]["aio3"]["columns"])
    lines = ["| method | seeds | " + " | ".join(columns) + " | Average PSNR | Average SSIM |",
             "|---|---|" + "---|" * (len(columns) + 2)]
    first = records[0]["aio3"]["input"]
    lines.append("| input (degraded) | - | " + " | ".join(f"{first['columns'][c]['psnr']:.2f}" for c in columns)
                 + f" | {first['average']['psnr']:.2f} | {first['average']['ssim']:.3f} |")
    for variant in variants:
        group = [r["aio3"] for r in records if r["variant"] == variant]
        cells = [_mean_sd([g["columns"][c]["psnr"] for g in group], 2) for c in columns]
        cells += [_mean_sd([g["average"]["psnr"] for g in group], 2), _mean_sd([g["average"]["ssim"] for g in group], 3)]
        lines.append(f"| {variant} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mixed_table(records: list[dict[str, Any]], variants: list[str]) -> str:
    inp = records[0]["mixed"]["summary"]["input"]
    kinds = list(inp["regions"])
    lines = ["| method | seeds | Mixed PSNR | Mixed SSIM | " + " | ".join(f"{k} regions PSNR" for k in kinds)
             + " | composite PSNR | Δ (dB) |", "|---|---|---|---|" + "---|" * (len(kinds) + 2)]
    lines.append(f"| input (degraded) | - | {inp['psnr']:.2f} | {inp['ssim']:.3f} | "
                 + " | ".join(f"{inp['regions'][k]['psnr']:.2f}" for k in kinds) + " | - | - |")
    for variant in variants:
        group = [r["mixed"]["summary"] for r in records if r["variant"] == variant]
        cells = [_mean_sd([g["model"]["psnr"] for g in group], 2), _mean_sd([g["model"]["ssim"] for g in group], 3)]
        cells += [_mean_sd([g["model"]["regions"][k]["psnr"] for g in group], 2) for k in kinds]
        cells += [_mean_sd([g["composite_psnr"] for g in group], 2), _mean_sd([g["delta"] for g in group], 2)]
        lines.append(f"| {variant} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_differences(records: list[dict[str, Any]], resamples: int) -> dict[str, dict[str, Any]]:
    """CEA - baseline on mixed PSNR, delta and the AIO-3 per-tile PSNR, over the seeds both finished."""
    out: dict[str, dict[str, Any]] = {}
    cea_seeds = {r["seed"] for r in records if r["variant"] == "cea"}
    for baseline in dict.fromkeys(r["variant"] for r in records if r["variant"] != "cea"):
        seeds = cea_seeds & {r["seed"] for r in records if r["variant"] == baseline}
        if not seeds:
            continue
        paired = [r for r in records if r["seed"] in seeds]
        row: dict[str, Any] = {"seeds": sorted(seeds)}
        for label, task, key in (("mixed_psnr", "mixed", "psnr"), ("delta", "mixed", "delta"),
                                 ("aio3_psnr", "aio3", "psnr")):
            diff = per_tile(paired, "cea", task, key) - per_tile(paired, baseline, task, key)
            row[label] = dict(zip(("mean", "low", "high"), paired_bootstrap(diff, resamples)))
        out[baseline] = row
    return out


def verdict(diffs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's goal: CEA's delta above every global baseline's (interval > 0) and >= +0.5 dB over prompt."""
    smaller_penalty = {b: diffs[b]["delta"]["low"] > 0 for b in GLOBAL_BASELINES if b in diffs}
    over_prompt = diffs.get("prompt", {}).get("mixed_psnr", {}).get("mean")
    complete = len(smaller_penalty) == len(GLOBAL_BASELINES) and over_prompt is not None
    return {"complete": complete, "penalty_smaller_than": smaller_penalty,
            "mixed_psnr_over_prompt_db": over_prompt,
            "met": complete and all(smaller_penalty.values()) and over_prompt >= TARGET_OVER_PROMPT_DB}


def diff_table(diffs: dict[str, dict[str, Any]]) -> str:
    def cell(d: dict[str, float]) -> str:
        return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"

    lines = ["| CEA − baseline | seeds | mixed PSNR (dB) | Δ (dB) | AIO-3 tiles PSNR (dB) |", "|---|---|---|---|---|"]
    for baseline, row in diffs.items():
        lines.append(f"| {baseline} | {len(row['seeds'])} | {cell(row['mixed_psnr'])} | {cell(row['delta'])} | "
                     f"{cell(row['aio3_psnr'])} |")
    return "\n".join(lines)


def region_figure(records: list[dict[str, Any]], variants: list[str], path: Path) -> None:
    """Grouped bars: per-region PSNR on the mixed set by region recipe, input and every variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(records[0]["mixed"]["summary"]["input"]["regions"])
    series = {"input": [records[0]["mixed"]["summary"]["input"]["regions"][k]["psnr"] for k in kinds]}
    for variant in variants:
        group = [r["mixed"]["summary"]["model"]["regions"] for r in records if r["variant"] == variant]
        series[variant] = [statistics.fmean(g[k]["psnr"] for g in group) for k in kinds]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(kinds)) + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(np.arange(len(kinds)), [f"{k} regions" for k in kinds])
    ax.set_ylabel("PSNR (dB)")
    ax.set_ylim(min(min(v) for v in series.values()) - 1, max(max(v) for v in series.values()) + 1)
    ax.legend(ncol=3, fontsize=8)
    ax.set_title("Per-region PSNR on the mixed set (mean over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(records: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """results.json, results.md and per_region.png under ``args.out`` from the finished records."""
    variants = list(dict.fromkeys(r["variant"] for r in records))
    diffs = paired_differences(records, args.bootstrap)
    decision = verdict(diffs)
    settings = {"preset": "tiny", "protocol": "aio3", "data": "embedded", "steps": args.steps,
                "batch_size": args.batch_size, "crop": args.crop, "mix_prob": args.mix_prob, "seeds": args.seeds,
                "command": " ".join(["python", *sys.argv])}
    payload = {"settings": settings, "paired_differences": diffs, "verdict": decision,
               "runs": [{k: r[k] for k in ("name", "variant", "seed", "digest", "adapter_params")}
                        | {"aio3": {k: r["aio3"][k] for k in ("columns", "average")}, "mixed": r["mixed"]["summary"]}
                        for r in records]}
    atomic_write(args.out / "results.json", json.dumps(payload, indent=2) + "\n")
    region_figure(records, variants, args.out / "per_region.png")
    parts = [
        f"# CEA under spatially mixed degradations (tiny preset, AIO-3 embedded, {args.steps} steps x batch "
        f"{args.batch_size}, crop {args.crop}, mix-prob {args.mix_prob})\n", f"Command: `{settings['command']}`\n",
        "## Adapter budgets\n\n" + budget_table(variants) + "\n",
        "## Single-degradation test tiles (PSNR dB; mean ± sd over seeds)\n\n" + single_table(records, variants) + "\n",
        f"## Mixed set ({records[0]['mixed']['summary']['count']} tiles; mean ± sd over seeds)\n\n"
        + mixed_table(records, variants) + "\n",
        "![per-region PSNR](per_region.png)\n",
        "## CEA − baseline, paired by seed and tile (mean [95% bootstrap interval])\n\n" + diff_table(diffs) + "\n",
        "## Verdict\n\n```json\n" + json.dumps(decision, indent=2) + "\n```\n",
    ]
    atomic_write(args.out / "results.md", "\n".join(parts))
