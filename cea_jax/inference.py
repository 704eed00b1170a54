"""Full-image inference: one jitted forward per input shape, padding to a multiple of 16.

The U-Net downsamples three times, so any multiple of 8 works; the official test
scripts centre-crop test images to a multiple of 16, and for a user's own image we
reflect-pad to 16 and crop back instead, so no pixel is lost.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cea_jax.configs import ModelConfig
from cea_jax.models import build_model

MULTIPLE = 16


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


def abstract_params(config: ModelConfig) -> Any:
    """The model's parameters as ShapeDtypeStructs (no memory, no compilation): what a checkpoint must hold."""
    model = build_model(config)
    key = jax.random.key(0)
    sample = jax.ShapeDtypeStruct((1, MULTIPLE, MULTIPLE, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init({"params": key, "router": key}, x), sample)


def restore_batch(config: ModelConfig, params: Any, images: np.ndarray,
                  return_maps: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """Restore uint8 [B, H, W, 3] images of any size (reflect-padded to MULTIPLE, cropped back)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [B, H, W, 3], got {images.dtype} {images.shape}")
    h, w = images.shape[1:3]
    ph, pw = -h % MULTIPLE, -w % MULTIPLE
    if ph or pw:
        mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
        images = np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)
    restored, maps = predictor(config)(params, images)
    restored = np.asarray(restored)[:, :h, :w]
    if not return_maps or maps is None:
        return restored, None
    return restored, {name: np.asarray(m) for name, m in maps.items()}
