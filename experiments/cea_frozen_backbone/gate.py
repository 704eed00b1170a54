"""The gate before Stage 2: the backbone must beat blind NL-means on every noise column of the held-out tiles.

A network that a classical, blind denoiser beats is not yet a restorer, and modules trained on
it say nothing about the modules (the committed study's backbone, 24.86 dB at σ=15 against
NL-means' 31.81 dB on these tiles, would not pass). NL-means is the bar because it is blind,
as the network is; BM3D is told σ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cea_jax import anchors, metrics
from cea_jax.data import catalog, layouts, pipeline

EMBEDDED = catalog.parse_data("embedded")
BAR = "NL-means (σ estimated)"


class WeakBackbone(Exception):
    """The backbone does not beat the bar on some noise column."""


def nl_means_psnr(limit: int | None = None) -> dict[str, float]:
    """Mean PSNR of blind NL-means per noise column of the AIO-3 test tiles (the first ``limit`` of each)."""
    columns = {}
    for test_set, (task, _) in zip(catalog.test_sets(EMBEDDED, "aio3", seed=0), layouts.PROTOCOL_TESTS["aio3"]):
        if task != "denoise":
            continue
        values = []
        for rec in pipeline.take(test_set.source, limit):
            clean = rec["clean"].astype(np.float64) / 255.0
            restored = anchors.nl_means_denoise(rec["degraded"].astype(np.float64) / 255.0)
            values.append(float(metrics.psnr(clean[None], restored[None])[0]))
        columns[test_set.label] = float(np.mean(values))
    return columns


def check(backbone_aio3: dict[str, dict[str, Any]], bar: dict[str, float], force: bool = False,
          emit: Callable[[str], None] = print) -> None:
    """``emit`` one line per noise column (backbone vs the bar), then raise WeakBackbone if one is not beaten.

    With ``force`` it says so instead of raising.
    """
    short = []
    for label, bar_psnr in bar.items():
        psnr = backbone_aio3[label]["psnr"]
        emit(f"[gate] {label}: backbone {psnr:.2f} dB, {BAR} {bar_psnr:.2f} dB: "
             + ("beats it" if psnr > bar_psnr else "below"))
        if psnr <= bar_psnr:
            short.append(f"{label} {psnr:.2f} <= {bar_psnr:.2f} dB")
    if short and not force:
        raise WeakBackbone(f"the backbone does not beat {BAR} on {', '.join(short)}; train it longer "
                           "(--backbone-steps) or pass --force-weak-backbone (a smoke run, never a claim)")
    if short:
        emit("[gate] forced past a weak backbone: Stage 2's numbers say nothing about the modules")
