"""Tables, intervals, figure and verdict of the cea_mixed experiment, from its records alone.

    python -m experiments.cea_mixed.report      # rewrites results.{md,json} and per_region.png here

Differences CEA - baseline are paired by seed (same data order and initial key) and by test
tile; their 95% intervals come from a two-way bootstrap that resamples seeds and tiles
independently (percentile interval), so both sources of spread are in them.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from experiments.cea_mixed import config
from experiments.cea_tables import budget_table, mean_sd, paired_bootstrap
from experiments.pages import page_command
from runkit.files import atomic_write
from runkit.records import load_records

HERE = Path(__file__).parent
GLOBAL_BASELINES = ("descriptor", "experts", "prompt")  # conditioning on a global summary of the image
TARGET_OVER_PROMPT_DB = 0.5


def per_tile(records: list[dict[str, Any]], variant: str, task: str, key: str) -> np.ndarray:
    """[seeds, tiles] of one per-image score (seeds in ascending order)."""
    rows = sorted((r for r in records if r["variant"] == variant), key=lambda r: r["seed"])
    values = []
    for r in rows:
        scores = [s for column in r[task]["per_image"].values() for s in column]
        values.append([s["delta"] if key == "delta" else s["model"][key] for s in scores])
    return np.asarray(values, np.float64)


def single_table(records: list[dict[str, Any]], variants: list[str]) -> str:
    columns = list(records[0]["aio3"]["columns"])
    lines = ["| method | seeds | " + " | ".join(columns) + " | Average PSNR | Average SSIM |",
             "|---|---|" + "---|" * (len(columns) + 2)]
    first = records[0]["aio3"]["input"]
    lines.append("| input (degraded) | - | " + " | ".join(f"{first['columns'][c]['psnr']:.2f}" for c in columns)
                 + f" | {first['average']['psnr']:.2f} | {first['average']['ssim']:.3f} |")
    for variant in variants:
        group = [r["aio3"] for r in records if r["variant"] == variant]
        cells = [mean_sd([g["columns"][c]["psnr"] for g in group], 2) for c in columns]
        cells += [mean_sd([g["average"]["psnr"] for g in group], 2), mean_sd([g["average"]["ssim"] for g in group], 3)]
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
        cells = [mean_sd([g["model"]["psnr"] for g in group], 2), mean_sd([g["model"]["ssim"] for g in group], 3)]
        cells += [mean_sd([g["model"]["regions"][k]["psnr"] for g in group], 2) for k in kinds]
        cells += [mean_sd([g["composite_psnr"] for g in group], 2), mean_sd([g["delta"] for g in group], 2)]
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
    """The goal: CEA's delta above every global baseline's (interval > 0) and >= +0.5 dB over prompt."""
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


def write_results(records: list[dict[str, Any]], settings: dict[str, Any], out: Path) -> list[Path]:
    """results.json, results.md and per_region.png under ``out`` from the finished records; the pages written.

    ``settings`` holds the run's steps, batch_size, crop, mix_prob, seeds, bootstrap and command.
    """
    variants = list(dict.fromkeys(r["variant"] for r in records))
    diffs = paired_differences(records, settings["bootstrap"])
    decision = verdict(diffs)
    stated = {"preset": "tiny", "protocol": "aio3", "data": "embedded",
              **{k: v for k, v in settings.items() if k != "bootstrap"}}
    payload = {"settings": stated, "paired_differences": diffs, "verdict": decision,
               "runs": [{k: r[k] for k in ("name", "variant", "seed", "digest", "adapter_params")}
                        | {"aio3": {k: r["aio3"][k] for k in ("columns", "average")}, "mixed": r["mixed"]["summary"]}
                        for r in records]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", json.dumps(payload, indent=2) + "\n")
    region_figure(records, variants, out / "per_region.png")
    parts = [
        f"# CEA under spatially mixed degradations (tiny preset, AIO-3 embedded, {settings['steps']} steps x batch "
        f"{settings['batch_size']}, crop {settings['crop']}, mix-prob {settings['mix_prob']})\n",
        f"Command: `{settings['command']}`\n",
        "## Adapter budgets\n\n" + budget_table(records, variants) + "\n",
        "## Single-degradation test tiles (PSNR dB; mean ± sd over seeds)\n\n" + single_table(records, variants) + "\n",
        f"## Mixed set ({records[0]['mixed']['summary']['count']} tiles; mean ± sd over seeds)\n\n"
        + mixed_table(records, variants) + "\n",
        "![per-region PSNR](per_region.png)\n",
        "## CEA − baseline, paired by seed and tile (mean [95% bootstrap interval])\n\n" + diff_table(diffs) + "\n",
        "## Verdict\n\n```json\n" + json.dumps(decision, indent=2) + "\n```\n",
    ]
    atomic_write(out / "results.md", "\n".join(parts))
    return [out / "results.md"]


def write_pages(out: Path = HERE) -> list[Path]:
    """The results page of the committed records (records.jsonl beside this file) under ``out``."""
    return write_results(load_records(HERE / "records.jsonl", key="name"),
                         config.SETTINGS | {"command": config.COMMAND}, out)


main = page_command(__doc__, HERE, write_pages)


if __name__ == "__main__":
    raise SystemExit(main())
