"""The paired statistics and the verdict of the cea_frozen_backbone experiment (records in, numbers out).

Differences CEA − baseline are paired by seed (a seed's Stage 2 runs share the data order,
crops and schedule) and by tile. The mixed set draws each base tile under several region
layouts, and the tiles come from four photos: the layouts of one tile are one unit (their
differences are averaged first), and every view is also given per photo, because tiles of
one photo are not independent either. Three views of each difference:
- a t-interval over the seed means (the spread between training runs; what the goal uses),
- the two-way bootstrap over seeds and base tiles (``experiments.cea_tables.paired_bootstrap``),
- a sign test over base tiles: on how many (averaged over seeds and layouts) CEA is ahead,
  with a two-sided binomial p-value.
The backbone ("none") is one run; its per-tile scores pair with every seed's CEA.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
from scipy import stats

from cea_jax.data import embedded
from experiments.cea_tables import paired_bootstrap

GLOBAL_BASELINES = ("descriptor", "experts", "prompt")  # conditioning on a global summary of the image
CONTROL = "finetune"  # the backbone itself fine-tuned for Stage 2's steps, no module: reported, not in the goal
GOAL_BASELINES = ("none", *GLOBAL_BASELINES)
BASELINES = (*GOAL_BASELINES, CONTROL)
TARGET_OVER_BEST_DB = 0.3  # the goal: CEA's mixed PSNR this far above the best baseline
RESTORES_DB = 1.0  # Stage 1's target: this far above the degraded input on every column
METRICS = (("mixed_psnr", "psnr", "mixed PSNR (dB)"), ("delta", "delta", "Δ (dB)"))


def tile_matrix(records: list[dict[str, Any]], variant: str, key: str, seeds: list[int]) -> np.ndarray:
    """[len(seeds), tiles] of a per-tile mixed score; the single backbone run repeats for every seed."""
    by_seed = {r["seed"]: [t[key] for t in r["mixed"]] for r in records if r["variant"] == variant}
    if variant == "none":
        return np.repeat(np.asarray([next(iter(by_seed.values()))], np.float64), len(seeds), axis=0)
    return np.asarray([by_seed[s] for s in seeds], np.float64)


def base_tiles(record: dict[str, Any]) -> tuple[list[int], list[str]]:
    """(base tile, photo) of each mixed entry; records made before they were stored use the test set's
    own indexing (entry i is base tile i mod the number of tiles)."""
    photos = embedded.test_tile_photos(embedded.MIXED_TILE)
    tiles = [t.get("tile", i % len(photos)) for i, t in enumerate(record["mixed"])]
    return tiles, [t.get("photo", photos[tile]) for t, tile in zip(record["mixed"], tiles)]


def cluster_by_tile(diff: np.ndarray, tiles: list[int]) -> tuple[np.ndarray, list[int]]:
    """[seeds, samples] -> [seeds, base tiles]: the layouts of one base tile averaged into one unit."""
    units = sorted(set(tiles))
    index = np.asarray(tiles)
    return np.stack([diff[:, index == u].mean(axis=1) for u in units], axis=1), units


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


def _views(diff: np.ndarray, resamples: int) -> dict[str, Any]:
    """Mean, t-interval over seed means, two-way bootstrap and sign test of ``diff`` [seeds, units]."""
    mean, low, high = t_interval(diff.mean(axis=1))
    _, boot_low, boot_high = paired_bootstrap(diff, resamples)
    return {"mean": mean, "t_low": low, "t_high": high, "boot_low": boot_low, "boot_high": boot_high,
            "units": int(diff.shape[1]), "sign": sign_test(diff.mean(axis=0))}


def paired_differences(records: list[dict[str, Any]], resamples: int) -> dict[str, dict[str, Any]]:
    """CEA − baseline on mixed PSNR and Δ over the seeds both finished (every CEA seed for none),
    with base tiles as the units, pooled and per photo."""
    cea_runs = [r for r in records if r["variant"] == "cea"]
    if not cea_runs:
        return {}
    cea_seeds = sorted(r["seed"] for r in cea_runs)
    tiles, photos = base_tiles(cea_runs[0])
    photo_of = dict(zip(tiles, photos))
    out: dict[str, dict[str, Any]] = {}
    for baseline in BASELINES:
        seeds = [s for s in cea_seeds if baseline == "none" or any(
            r["variant"] == baseline and r["seed"] == s for r in records)]
        if not seeds or not any(r["variant"] == baseline for r in records):
            continue
        row: dict[str, Any] = {"seeds": seeds}
        for label, key, _ in METRICS:
            diff = tile_matrix(records, "cea", key, seeds) - tile_matrix(records, baseline, key, seeds)
            clustered, units = cluster_by_tile(diff, tiles)
            row[label] = _views(clustered, resamples)
            row[label]["per_photo"] = {
                photo: _views(clustered[:, [photo_of[u] == photo for u in units]], resamples)
                for photo in dict.fromkeys(photos)}
        out[baseline] = row
    return out


def verdict(records: list[dict[str, Any]], diffs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The goal: CEA's Δ above every global baseline's (t-interval > 0) and mixed PSNR >= best baseline + 0.3 dB."""
    smaller_penalty = {b: diffs[b]["delta"]["t_low"] > 0 for b in GLOBAL_BASELINES if b in diffs}
    present = [v for v in GOAL_BASELINES if any(r["variant"] == v for r in records)]
    means = {v: statistics.fmean(statistics.fmean(t["psnr"] for t in r["mixed"]) for r in records
                                 if r["variant"] == v) for v in present}
    best = max(means, key=means.get) if means else None
    over_best = diffs[best]["mixed_psnr"]["mean"] if best in diffs else None
    complete = len(smaller_penalty) == len(GLOBAL_BASELINES) and over_best is not None
    return {"complete": complete, "penalty_smaller_than": smaller_penalty, "best_baseline": best,
            "mixed_psnr_over_best_db": over_best,
            "met": bool(complete and all(smaller_penalty.values()) and over_best >= TARGET_OVER_BEST_DB)}


def region_means(record: dict[str, Any], name: str) -> dict[str, float]:
    """Mean ``name`` PSNR per region recipe over the regions whose degraded input differs from the
    target (a rain region that no streak crosses has an infinite input PSNR; it is left out for every
    method alike, so the means stay comparable)."""
    values: dict[str, list[float]] = {}
    for tile in record["mixed"]:
        for region in tile["regions"]:
            if np.isfinite(region["input_psnr"]):
                values.setdefault(region["kind"], []).append(region[name])
    return {kind: float(np.mean(v)) for kind, v in sorted(values.items())}
