"""Scores on the region-labelled mixed test set: per-region quality and the mixing penalty.

The mixing penalty of a tile is
    delta = PSNR(restore(mixed)) - PSNR(composite, region by region, of restore(full_k)),
where full_k is the tile fully degraded by region k's recipe (the mixed tile is cut
from exactly those images). A model that restores each pixel as it would in a
single-degradation image has delta near 0; conditioning on one global summary of a
mixed image pays a negative delta.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cea_jax import metrics

# uint8 [B, H, W, 3] -> restored float [B, H, W, 3] in [0, 1]
Restorer = Callable[[np.ndarray], np.ndarray]
MAX_REGIONS = 3  # batches are padded to 1 + MAX_REGIONS images, so a jitted restorer compiles once


def composite(versions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pixel (i, j) of ``versions[labels[i, j]]``: versions [K, H, W, C], labels [H, W]."""
    return np.take_along_axis(versions, labels[None, :, :, None], axis=0)[0]


def score_mixed(restore: Restorer, rec: dict[str, np.ndarray], window: str = "uniform") -> dict[str, Any]:
    """Whole-tile, per-region and composite scores of one mixed record, for the model and the input."""
    clean = rec["clean"].astype(np.float64) / 255.0
    labels = rec["labels"]
    batch = np.concatenate([rec["degraded"][None], rec["full"]])
    padding = np.repeat(batch[-1:], max(0, 1 + MAX_REGIONS - len(batch)), axis=0)
    restored = restore(np.concatenate([batch, padding]))
    mixed_out, full_out = restored[0], restored[1 : len(batch)]
    degraded = rec["degraded"].astype(np.float64) / 255.0
    out: dict[str, Any] = {"kinds": [str(k) for k in rec["region_kinds"]]}
    for name, image in (("model", mixed_out), ("input", degraded)):
        out[name] = {
            "psnr": float(metrics.psnr(clean, image)), "ssim": float(metrics.ssim(clean, image, window=window)),
            "regions": [{"psnr": metrics.region_psnr(clean, image, labels == k),
                         "ssim": metrics.region_ssim(clean, image, labels == k, window=window)}
                        for k in range(len(out["kinds"]))],
        }
    out["composite_psnr"] = float(metrics.psnr(clean, composite(full_out, labels)))
    out["delta"] = out["model"]["psnr"] - out["composite_psnr"]
    return out


def summarize(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over tiles: whole-tile PSNR/SSIM and delta, and per-region PSNR/SSIM by recipe."""
    def by_kind(name: str) -> dict[str, dict[str, float]]:
        values: dict[str, dict[str, list[float]]] = {}
        for s in scores:
            for kind, region in zip(s["kinds"], s[name]["regions"]):
                for key in ("psnr", "ssim"):
                    values.setdefault(kind, {"psnr": [], "ssim": []})[key].append(region[key])
        return {kind: {key: float(np.nanmean(v)) for key, v in d.items()} for kind, d in sorted(values.items())}

    return {
        "count": len(scores),
        "model": {"psnr": float(np.mean([s["model"]["psnr"] for s in scores])),
                  "ssim": float(np.mean([s["model"]["ssim"] for s in scores])), "regions": by_kind("model")},
        "input": {"psnr": float(np.mean([s["input"]["psnr"] for s in scores])),
                  "ssim": float(np.mean([s["input"]["ssim"] for s in scores])), "regions": by_kind("input")},
        "composite_psnr": float(np.mean([s["composite_psnr"] for s in scores])),
        "delta": float(np.mean([s["delta"] for s in scores])),
    }
