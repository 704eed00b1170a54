"""Geometry of whole-image restoration without JAX: padding to the network's multiple, tile windows, blend weights.

Kept apart from :mod:`cea_jax.inference` so the command line can check ``--tile`` before JAX loads.
"""

from __future__ import annotations

import numpy as np

# The U-Net downsamples three times, so any multiple of 8 works; the official test scripts
# centre-crop test images to a multiple of 16, so a user's image is padded to 16 as well.
MULTIPLE = 16


def pad_to_multiple(images: np.ndarray) -> np.ndarray:
    """[B, H, W, C] padded at the bottom and right to multiples of MULTIPLE (reflected, or repeated if tiny)."""
    h, w = images.shape[1:3]
    ph, pw = -h % MULTIPLE, -w % MULTIPLE
    if not (ph or pw):
        return images
    mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
    return np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)


def window_starts(size: int, window: int, overlap: int) -> list[int]:
    """Window origins covering ``size`` with at least ``overlap`` shared pixels; the last ends at ``size``."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window, window - overlap))
    return starts + [size - window]


def blend_ramp(size: int, overlap: int) -> np.ndarray:
    """Blending weight across a window: rising linearly over ``overlap`` pixels at both ends, never 0."""
    x = np.arange(size, dtype=np.float64) + 0.5
    return np.minimum(1.0, np.minimum(x, size - x) / max(overlap, 1))
