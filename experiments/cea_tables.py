"""Statistics and tables shared by the CEA experiment reports (records in, Markdown out, no model).

Differences CEA - baseline are paired by seed (same data order and initial key) and by test
tile; the two-way bootstrap resamples seeds and tiles independently (percentile interval), so
both sources of spread are in its intervals.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np


def paired_bootstrap(diff: np.ndarray, resamples: int, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5th, 97.5th percentile) of the mean of ``diff`` [seeds, tiles] under a two-way bootstrap."""
    seeds, tiles = diff.shape
    rng = np.random.default_rng(seed)
    seed_counts = np.stack([np.bincount(rng.integers(seeds, size=seeds), minlength=seeds) for _ in range(resamples)])
    tile_counts = np.stack([np.bincount(rng.integers(tiles, size=tiles), minlength=tiles) for _ in range(resamples)])
    means = np.einsum("bs,st,bt->b", seed_counts, diff, tile_counts) / (seeds * tiles)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def mean_sd(values: list[float], digits: int) -> str:
    """"mean ± sd" over seeds (the value alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def budget_table(records: list[dict[str, Any]], variants: list[str]) -> str:
    """Adapter parameters per variant against CEA's, as the records counted them when the runs were made.

    Taken from the records rather than today's configs: the matched budgets have been retuned
    since some runs, and a page must describe what was run.
    """
    counts = {r["variant"]: r["adapter_params"] for r in records}
    cea = counts.get("cea")
    lines = ["| variant | adapter params (K) | vs CEA |", "|---|---|---|"]
    for variant in variants:
        ratio = "-" if variant == "none" or not cea else f"{100 * (counts[variant] / cea - 1):+.1f}%"
        lines.append(f"| {variant} | {counts[variant] / 1e3:.1f} | {ratio} |")
    return "\n".join(lines)
