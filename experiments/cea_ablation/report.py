"""Tables and targets of the cea_ablation experiment, from its records alone.

    python -m experiments.cea_ablation.report   # rewrites results.{md,json} here from records.jsonl

Seeds are summarised as mean ± half the max-min range (with two seeds the natural spread);
CEA and prompt are paired by seed for the targets.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from experiments.pages import page_command
from runkit.files import atomic_write
from runkit.records import load_records

HERE = Path(__file__).parent
TARGETS_DB = (("test", 0.3), ("mixed", 0.5))  # CEA over prompt: protocol average, mixed split


def _spread(values: list[float]) -> tuple[float, float]:
    """(mean, half the max-min range); with two seeds the half-range is the natural spread."""
    return statistics.fmean(values), (max(values) - min(values)) / 2


def _cell(values: list[float], digits: int) -> str:
    mean, spread = _spread(values)
    return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {spread:.{digits}f}"


def variant_table(records: list[dict[str, Any]], protocol: str) -> str:
    """PSNR (dB) per test column, the average, SSIM average and mixed-split PSNR, mean ± half-range over seeds."""
    rows = [r for r in records if r["group"] == "variants" and r["protocol"] == protocol]
    if not rows:
        return ""
    columns = list(rows[0]["test"]["columns"])
    header = ["variant", "seeds", "params (K)", f"MFLOPs @{rows[0]['flops_size']}", *columns,
              "Average PSNR", "Average SSIM", "Mixed PSNR"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == variant]
        cells = [variant, str(len(group)), f"{group[0]['params'] / 1e3:.1f}", f"{group[0]['flops'] / 1e6:.0f}"]
        cells += [_cell([r["test"]["columns"][c]["psnr"] for r in group], 2) for c in columns]
        cells += [_cell([r["test"]["average"]["psnr"] for r in group], 2),
                  _cell([r["test"]["average"]["ssim"] for r in group], 3),
                  _cell([r["mixed"]["average"]["psnr"] for r in group], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_table(records: list[dict[str, Any]]) -> str:
    """CEA ablations next to the default CEA run of the same seed (AIO-3)."""
    ablations = [r for r in records if r["group"] == "ablations"]
    if not ablations:
        return ""
    seed = ablations[0]["seed"]
    reference = [r for r in records if r["group"] == "variants" and r["protocol"] == "aio3"
                 and r["variant"] == "cea" and r["seed"] == seed]
    rows = [{**r, "label": "default (signed, dense, instance, rank 4)"} for r in reference] + ablations
    lines = ["| CEA setting | params (K) | AIO-3 average PSNR | AIO-3 average SSIM | Mixed PSNR |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['params'] / 1e3:.1f} | {r['test']['average']['psnr']:.2f} | "
                     f"{r['test']['average']['ssim']:.3f} | {r['mixed']['average']['psnr']:.2f} |")
    return "\n".join(lines)


def targets(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets: CEA >= prompt + 0.3 dB average and >= +0.5 dB on the mixed split.

    Differences are paired by seed (same data order and initial key), per training protocol,
    and averaged over the seeds both variants have finished.
    """
    def by_seed(protocol: str, variant: str, key: str) -> dict[int, float]:
        return {r["seed"]: r[key]["average"]["psnr"] for r in records
                if r["group"] == "variants" and r["protocol"] == protocol and r["variant"] == variant}

    out: dict[str, Any] = {}
    for protocol in dict.fromkeys(r["protocol"] for r in records):
        for key, margin in TARGETS_DB:
            cea, prompt = by_seed(protocol, "cea", key), by_seed(protocol, "prompt", key)
            paired = [cea[seed] - prompt[seed] for seed in sorted(cea.keys() & prompt.keys())]
            if paired:
                out[f"{protocol}_{key}_cea_minus_prompt_db"] = statistics.fmean(paired)
                out[f"{protocol}_{key}_cea_minus_prompt_per_seed_db"] = paired
                out[f"{protocol}_{key}_target_met"] = statistics.fmean(paired) >= margin
    return out


def write_results(records: list[dict[str, Any]], settings: dict[str, Any], out: Path,
                  figures: list[str] = ()) -> list[Path]:
    """results.json and results.md under ``out``; the pages written.

    ``settings`` holds steps, batch_size, crop, seeds, protocols and the command; ``figures`` names
    the figures the runner drew beside them.
    """
    checks = targets(records)
    stated = {"preset": "tiny", "data": "embedded", **{k: v for k, v in settings.items() if k != "protocols"}}
    payload = {"settings": stated, "targets": checks, "figures": list(figures), "runs": records}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", json.dumps(payload, indent=2) + "\n")
    parts = [f"# CEA ablation (tiny preset, embedded data, {settings['steps']} steps x batch {settings['batch_size']}, "
             f"crop {settings['crop']})\n", f"Command: `{settings['command']}`\n"]
    for protocol in settings["protocols"]:
        table = variant_table(records, protocol)
        if table:
            parts.append(f"## Trained on {protocol} (PSNR dB per test column; mean ± half-range over seeds)\n\n"
                         f"{table}\n")
    table = ablation_table(records)
    if table:
        parts.append(f"## CEA ablations (AIO-3, seed {settings['seeds'][0]})\n\n{table}\n")
    parts.extend(f"![{name}]({name})\n" for name in figures)
    parts.append("## Targets\n\n```json\n" + json.dumps(checks, indent=2) + "\n```\n")
    atomic_write(out / "results.md", "\n".join(parts))
    return [out / "results.md"]


def write_pages(out: Path = HERE) -> list[Path]:
    """The results page of the committed records under ``out`` (none while no run is committed)."""
    from experiments.cea_ablation import config

    records = load_records(HERE / "records.jsonl", key="name")
    if not records:
        return []
    figures = [name for name in config.FIGURES if (HERE / name).is_file()]
    return write_results(records, config.SETTINGS | {"command": config.COMMAND}, out, figures)


main = page_command(__doc__, HERE, write_pages, when_empty=f"{HERE / 'records.jsonl'}: no records committed yet; "
                                                           "run experiments.cea_ablation.run first")


if __name__ == "__main__":
    raise SystemExit(main())
