"""Full-image inference: one jitted forward per input shape, padding to a multiple of 16.

A user's own image is reflect-padded to :data:`cea_jax.tiling.MULTIPLE` and cropped back,
so no pixel is lost.

Memory grows with the pixels restored at once (about 1.8 KB per pixel for the tiny
preset and 5.4 KB for the paper preset on CPU, from XLA's memory analysis), so an image
too large to restore whole is restored in overlapping tiles (:func:`restore_tiled`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cea_jax.configs import ModelConfig
from cea_jax.models import build_model
from cea_jax.tiling import MULTIPLE, blend_ramp, pad_to_multiple, window_starts


@functools.lru_cache(maxsize=8)
def predictor(config: ModelConfig):
    """A jitted ``(params, uint8 [B, H, W, 3]) -> (restored float32 in [0, 1], maps | None)``.

    CEA always returns its affinity maps (they are computed anyway and are small), so
    asking for them never costs a second compilation.
    """
    model = build_model(config)
    with_maps = config.variant == "cea"

    @jax.jit
    def predict(params: Any, images: jax.Array) -> tuple[jax.Array, Any]:
        x = images.astype(jnp.float32) / 255.0
        restored, aux = model.apply(params, x, train=False, return_maps=with_maps)
        return jnp.clip(restored, 0.0, 1.0), aux.get("maps")

    return predict


def restore_batch(config: ModelConfig, params: Any, images: np.ndarray,
                  return_maps: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """Restore uint8 [B, H, W, 3] images of any size (reflect-padded to MULTIPLE, cropped back)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [B, H, W, 3], got {images.dtype} {images.shape}")
    h, w = images.shape[1:3]
    restored, maps = predictor(config)(params, pad_to_multiple(images))
    restored = np.asarray(restored)[:, :h, :w]
    if not return_maps or maps is None:
        return restored, None
    return restored, {name: np.asarray(m) for name, m in maps.items()}


def restore_tiled(config: ModelConfig, params: Any, image: np.ndarray, tile: int,
                  overlap: int) -> np.ndarray:
    """Restore a uint8 [H, W, 3] image in ``tile`` x ``tile`` windows sharing ``overlap`` pixels.

    Each window is restored whole and the results are blended with weights that fade
    linearly over the overlap, so no seam shows; memory stays that of one window. The
    network sees less context near a window's inner edges, so the result is close to,
    not equal to, restoring the image whole (README, "Failure behaviour", gives the measured gap).
    """
    if tile % MULTIPLE or not 0 <= overlap < tile // 2:
        raise ValueError(f"tile must be a multiple of {MULTIPLE} and overlap in [0, tile/2), got {tile}, {overlap}")
    out_h, out_w = image.shape[:2]
    image = pad_to_multiple(image[None])[0]  # the borders are padded as restore_batch pads them
    h, w = image.shape[:2]
    th, tw = min(h, tile), min(w, tile)
    total = np.zeros((h, w, 3), np.float64)
    weight = np.zeros((h, w, 1), np.float64)
    window_weight = np.outer(blend_ramp(th, overlap), blend_ramp(tw, overlap))[..., None]
    for top in window_starts(h, tile, overlap):
        for left in window_starts(w, tile, overlap):
            window = image[top:top + th, left:left + tw]
            restored, _ = restore_batch(config, params, window[None])
            total[top:top + th, left:left + tw] += restored[0] * window_weight
            weight[top:top + th, left:left + tw] += window_weight
    return (total / weight)[:out_h, :out_w].astype(np.float32)
