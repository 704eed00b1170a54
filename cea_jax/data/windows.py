"""Random training windows cut at a random scale (the embedded photos' scale jitter), and recoloured.

A window is cut larger than ``size`` and downscaled to it, never upscaled: an upscaled
photo is a blurred clean target, and the model would learn that blur is clean.

Seven of the twelve embedded training photos are greyscale and none holds a blue sky; a
model trained on them alone "corrects" a clean photo's colours it has never seen (the blue
sky of the held-out rocket photo came out warmer by 15-20 levels in red and blue under noise
alone). ``recolour`` draws a new clean photo's colours: a random channel order and channel
gains, so every colour balance appears as a clean target.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 images with Lanczos, float depth maps bilinearly, to (height, width) ``shape``."""
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize(shape[::-1], Image.Resampling.LANCZOS))
    resized = Image.fromarray(image.astype(np.float32)).resize(shape[::-1], Image.Resampling.BILINEAR)
    return np.asarray(resized, np.float32)


def random_window(clean: np.ndarray, depth: np.ndarray | None, rng: np.random.Generator, size: int,
                  scales: tuple[float, float] = (1.0, 1.0),
                  min_size: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """A random ``size`` window (smaller where the image is) of ``clean`` and ``depth``, downscaled by a
    factor drawn uniformly from ``scales`` (<= 1) but never below ``min_size`` pixels on a side.

    With ``scales`` (1, 1) nothing is drawn for the scale, so such a source's stream is the
    plain random window's.
    """
    low, high = scales
    if not 0 < low <= high <= 1:
        raise ValueError(f"scales must satisfy 0 < low <= high <= 1, got {scales}")
    h, w = clean.shape[:2]
    scale = float(rng.uniform(low, high)) if low < high else high
    scale = min(1.0, max(scale, min_size / min(h, w)))  # the downscaled window still holds a crop
    wh, ww = min(round(size / scale), h), min(round(size / scale), w)
    top, left = int(rng.integers(h - wh + 1)), int(rng.integers(w - ww + 1))
    clean = clean[top : top + wh, left : left + ww]
    depth = None if depth is None else depth[top : top + wh, left : left + ww]
    if scale < 1.0:
        shape = (max(round(wh * scale), min(min_size, wh)), max(round(ww * scale), min(min_size, ww)))
        clean = _resize(clean, shape)
        depth = None if depth is None else _resize(depth, shape)
    return clean, depth


GAIN_RANGE = (0.6, 1.0)  # per-channel gains of ``recolour`` before the largest is scaled to 1


def recolour(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clean`` (uint8 RGB) with its channels in a random order, scaled by gains drawn from GAIN_RANGE
    and divided by the largest (a tint that keeps one channel's range whole).

    Both keep a clean photo clean (no blur, no noise, no clipping), so the pair stays a valid
    restoration target once degraded; a greyscale photo becomes a tinted one."""
    order = rng.permutation(3)
    gains = rng.uniform(*GAIN_RANGE, size=3).astype(np.float32)
    gains /= gains.max()
    return np.round(clean[..., order].astype(np.float32) * gains).astype(np.uint8)
