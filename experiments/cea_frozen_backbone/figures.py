"""Figures of the cea_frozen_backbone experiment: CEA − baseline with intervals, and per-region PSNR with error bars."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from experiments.cea_frozen_backbone.stats import METRICS, TARGET_OVER_BEST_DB, region_means

matplotlib.use("Agg")  # files only, never a window


def diff_figure(diffs: dict[str, dict[str, Any]], path: Path) -> None:
    """Dot plot per metric: CEA − baseline (mean) with its 95% t-interval over seeds (thick) and the
    two-way bootstrap interval (thin); zero is marked, and the goal's +0.3 dB on mixed PSNR."""
    baselines = list(diffs)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 0.55 * len(baselines) + 1.6),
                             sharey=True)
    for ax, (label, _, title) in zip(axes, METRICS):
        for y, baseline in enumerate(baselines):
            d = diffs[baseline][label]
            ax.plot([d["boot_low"], d["boot_high"]], [y, y], color="0.6", lw=1.2)
            if np.isfinite(d["t_low"]):
                ax.plot([d["t_low"], d["t_high"]], [y, y], color="C0", lw=3.5, solid_capstyle="butt")
            ax.plot(d["mean"], y, "o", color="C3", ms=6, zorder=3)
        ax.axvline(0.0, color="k", lw=1)
        if label == "mixed_psnr":
            ax.axvline(TARGET_OVER_BEST_DB, color="k", lw=1, ls="--")
            ax.text(TARGET_OVER_BEST_DB, len(baselines) - 0.45, " goal +0.3", fontsize=8)
        ax.set_yticks(range(len(baselines)), [f"CEA − {b}" for b in baselines])
        ax.set_ylim(-0.6, len(baselines) - 0.2)
        ax.set_xlabel("CEA − baseline (dB); > 0 favours CEA")
        ax.set_title(title, fontsize=10)
    seeds = len(next(iter(diffs.values()))["seeds"])
    fig.suptitle(f"CEA − baseline on the mixed set: mean (dot), 95% t-interval over {seeds} seed"
                 f"{'s' if seeds > 1 else ''} (blue), two-way bootstrap over seeds and tiles (grey)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def region_figure(records: list[dict[str, Any]], variants: list[str], path: Path) -> None:
    """Grouped bars of per-region PSNR on the mixed set by recipe: the degraded input, then each
    method (mean over seeds, error bars ± sd over seeds); the axis starts at 0 dB."""
    kinds = list(region_means(records[0], "input_psnr"))
    series = {"degraded input": (list(region_means(records[0], "input_psnr").values()), None)}
    for variant in variants:
        per_seed = [region_means(r, "psnr") for r in records if r["variant"] == variant]
        means = [statistics.fmean(p[k] for p in per_seed) for k in kinds]
        sds = [statistics.stdev(p[k] for p in per_seed) if len(per_seed) > 1 else 0.0 for k in kinds]
        series["none (backbone)" if variant == "none" else variant] = (means, sds)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.84 / len(series)
    for i, (name, (values, errors)) in enumerate(series.items()):
        x = np.arange(len(kinds)) + (i - (len(series) - 1) / 2) * width
        colour = "0.75" if errors is None else f"C{i - 1}"
        ax.bar(x, values, width, yerr=errors, capsize=2, label=name, color=colour,
               hatch="//" if errors is None else None, edgecolor="0.4" if errors is None else None)
    ax.set_xticks(np.arange(len(kinds)), [f"{k} regions" for k in kinds])
    ax.set_ylabel("PSNR (dB)")
    ax.set_ylim(0, max(max(v) for v, _ in series.values()) + 4)
    ax.legend(ncol=3, fontsize=8, loc="upper right")
    ax.set_title("Per-region PSNR on the mixed set (mean ± sd over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
