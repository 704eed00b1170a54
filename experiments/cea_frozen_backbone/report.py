"""Tables, figures and verdict of the cea_frozen_backbone experiment, from its records alone.

    python -m experiments.cea_frozen_backbone.report   # rewrites results.{md,json}, diffs.png, per_region.png here

The routing figure needs a trained CEA run's weights, so the runner draws it (routing.png) and
this page shows the committed one.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from experiments.cea_frozen_backbone import config
from experiments.cea_frozen_backbone.figures import diff_figure, region_figure
from experiments.cea_frozen_backbone.stats import (
    CONTROL,
    GLOBAL_BASELINES,
    METRICS,
    RESTORES_DB,
    paired_differences,
    region_means,
    verdict,
)
from experiments.cea_tables import budget_table, mean_sd
from experiments.pages import page_command
from runkit.files import atomic_write
from runkit.records import load_records

HERE = Path(__file__).parent
ROUTING = "routing.png"
SETTING_KEYS = ("seeds", "backbone_steps", "backbone_lr", "adapter_steps", "adapter_lr", "batch_size",
                "adapter_batch_size", "crop", "mix_prob", "bootstrap")


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


def mixed_table(records: list[dict[str, Any]], variants: list[str]) -> str:
    first = records[0]
    kinds = list(region_means(first, "input_psnr"))
    regions = " | ".join(f"{k} regions" for k in kinds)
    lines = [f"| method | seeds | mixed PSNR | {regions} | composite | Δ (dB) |",
             "|---|---|---|" + "---|" * (len(kinds) + 2)]
    inp = region_means(first, "input_psnr")
    lines.append(f"| degraded input | - | {statistics.fmean(t['input_psnr'] for t in first['mixed']):.2f} | "
                 + " | ".join(f"{inp[k]:.2f}" for k in kinds) + " | - | - |")
    for variant in variants:
        group = [r for r in records if r["variant"] == variant]
        cells = [mean_sd([statistics.fmean(t[key] for t in r["mixed"]) for r in group], 2)
                 for key in ("psnr",)]
        cells += [mean_sd([region_means(r, "psnr")[k] for r in group], 2) for k in kinds]
        cells += [mean_sd([statistics.fmean(t[key] for t in r["mixed"]) for r in group], 2)
                  for key in ("composite_psnr", "delta")]
        lines.append(f"| {_name(variant)} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cells(d: dict[str, Any]) -> str:
    sign = d["sign"]
    return (f"{d['mean']:+.3f} | [{d['t_low']:+.3f}, {d['t_high']:+.3f}] | [{d['boot_low']:+.3f}, "
            f"{d['boot_high']:+.3f}] | {sign['wins']}/{sign['wins'] + sign['losses']} (p={sign['p']:.2g})")


def diff_table(diffs: dict[str, dict[str, Any]]) -> str:
    head = " | ".join(f"{title} {part}" for _, _, title in METRICS
                      for part in ("mean", "t-interval", "bootstrap", "base tiles CEA ahead"))
    lines = [f"| CEA − baseline | seeds | {head} |", "|---|---|" + "---|" * 8]
    for baseline, row in diffs.items():
        lines.append(f"| {_name(baseline)} | {len(row['seeds'])} | "
                     + " | ".join(_cells(row[label]) for label, _, _ in METRICS) + " |")
    return "\n".join(lines)


def per_photo_table(diffs: dict[str, dict[str, Any]]) -> str:
    """The same differences photo by photo: a claim that holds on one photo only is not a claim."""
    head = " | ".join(f"{title} {part}" for _, _, title in METRICS
                      for part in ("mean", "t-interval", "bootstrap", "base tiles CEA ahead"))
    lines = [f"| CEA − baseline | photo | {head} |", "|---|---|" + "---|" * 8]
    for baseline, row in diffs.items():
        for photo in row[METRICS[0][0]]["per_photo"]:
            lines.append(f"| {_name(baseline)} | {photo} | "
                         + " | ".join(_cells(row[label]["per_photo"][photo]) for label, _, _ in METRICS) + " |")
    return "\n".join(lines)


def _name(variant: str) -> str:
    return {"none": "none (backbone)", CONTROL: "finetune (control: whole backbone, no module)"}.get(variant, variant)


def write_results(records: list[dict[str, Any]], settings: dict[str, Any], out: Path,
                  routing: Path | None = None) -> list[Path]:
    """results.json, results.md, diffs.png and per_region.png under ``out``; the pages written.

    ``settings`` holds SETTING_KEYS and the command; ``routing`` is the runner's routing figure,
    copied under ``out`` when it lies elsewhere.
    """
    variants = [v for v in ("none", "cea", *GLOBAL_BASELINES, CONTROL) if any(r["variant"] == v for r in records)]
    diffs = paired_differences(records, settings["bootstrap"])
    decision = verdict(records, diffs)
    backbone = next((r for r in records if r["variant"] == "none"), None)
    payload = {"settings": settings, "backbone": backbone and backbone["backbone"],
               "paired_differences": diffs, "verdict": decision,
               "runs": [{k: r[k] for k in ("name", "variant", "seed", "digest", "adapter_params", "step")}
                        for r in records]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", json.dumps(payload, indent=2) + "\n")
    region_figure(records, variants, out / "per_region.png")
    parts = ["# CEA on a trained backbone: modules trained alone (tiny preset, embedded AIO-3, mixed crops)\n",
             f"Command: `{settings['command']}`\n",
             f"Stage 1: backbone {settings['backbone_steps']} steps x batch {settings['batch_size']}, lr "
             f"{settings['backbone_lr']}. Stage 2: each module {settings['adapter_steps']} steps x batch "
             f"{settings['adapter_batch_size']}, lr {settings['adapter_lr']}, backbone frozen. Crop "
             f"{settings['crop']}, mix-prob {settings['mix_prob']}; seeds {settings['seeds']}.\n"]
    if backbone is not None:
        table, restores = backbone_table(backbone)
        weights = backbone["backbone"]
        parts.append(f"## Stage 1: the backbone (step {weights['step']}, weights sha256 {weights['sha256'][:16]})\n\n"
                     f"{table}\n\nRestores (>= +{RESTORES_DB:.0f} dB on every row): "
                     f"**{'yes' if restores else 'no'}**\n")
    parts += ["## Adapter budgets\n\n" + budget_table(records, variants) + "\n",
              "## Mixed set (mean ± sd over seeds)\n\n" + mixed_table(records, variants) + "\n",
              "![per-region PSNR](per_region.png)\n"]
    if diffs:
        diff_figure(diffs, out / "diffs.png")
        first = next(iter(diffs.values()))["mixed_psnr"]
        units, photos = first["units"], len(first["per_photo"])
        parts += ["## CEA − baseline, paired by seed and base tile\n\nThe unit is a base tile: its region layouts "
                  f"are averaged first ({units} base tiles from {photos} photos). t-interval over the seed means; "
                  "two-way bootstrap (seeds and base tiles); base tiles CEA "
                  "is ahead on (seed-averaged) with the sign test's p. The control fine-tunes the whole backbone for "
                  "Stage 2's steps with no module; it is reported, not part of the goal.\n\n"
                  + diff_table(diffs) + "\n", "![CEA minus baseline](diffs.png)\n",
                  "### Per photo\n\n" + per_photo_table(diffs) + "\n"]
    if routing is not None and routing.is_file():
        if routing.resolve() != (out / ROUTING).resolve():
            shutil.copyfile(routing, out / ROUTING)
        parts.append(f"## CEA's routing on mixed tiles\n\n![routing]({ROUTING})\n")
    parts.append("## Verdict\n\n```json\n" + json.dumps(decision, indent=2) + "\n```\n")
    atomic_write(out / "results.md", "\n".join(parts))
    return [out / "results.md"]


def write_pages(out: Path = HERE) -> list[Path]:
    """The results page of the committed records (records.jsonl beside this file) under ``out``."""
    return write_results(load_records(HERE / "records.jsonl", key="name"),
                         config.SETTINGS | {"command": config.COMMAND}, out, HERE / ROUTING)


main = page_command(__doc__, HERE, write_pages)


if __name__ == "__main__":
    raise SystemExit(main())
