"""What each CEA component adds at a site, after the output gate.

The raw affinity maps show where a component is asked for, but its update is scaled by the
per-channel gate gamma and carried by its direction W_o d_k: a component whose gated
direction is zero changes nothing, however structured its map looks (an untrained network's
maps are structured too, and its gate starts at zero). The gated map
``a_nk * ||gamma ⊙ W_o d_k||`` is the signed size of component k's update at pixel n.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from cea_jax.configs import ModelConfig
from cea_jax.models import build_model
from cea_jax.models.cea import ProbeGenerator
from cea_jax.tiling import pad_to_multiple


def gated_maps(config: ModelConfig, params: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    """Per site, the gated affinity maps [B, H_site, W_site, r] of uint8 ``images`` [B, H, W, 3]."""
    if config.variant != "cea":
        raise ValueError(f"gated routing maps exist for the cea variant only, got {config.variant!r}")
    model = build_model(config)
    x = jnp.asarray(pad_to_multiple(np.asarray(images)), jnp.float32) / 255.0
    (_, aux), state = model.apply(params, x, train=False, return_maps=True, mutable=["intermediates"],
                                  capture_intermediates=lambda module, _: isinstance(module, ProbeGenerator))
    weights = params["params"]["restormer"]
    probes = state.get("intermediates", {}).get("restormer", {})
    out = {}
    for site, maps in aux["maps"].items():
        adapter = weights[f"adapter_{site}"]
        if f"adapter_{site}" in probes:  # per-image directions from the hyper-adapter
            directions = probes[f"adapter_{site}"]["probe"]["__call__"][0][1]
        else:  # learned directions shared by every image
            directions = adapter["static_directions"][None]
        size = jnp.linalg.norm(adapter["gamma"] * (directions @ adapter["out"]), axis=-1)  # [B or 1, r]
        out[site] = np.asarray(maps * size[:, None, None, :])  # maps come cropped to the image's extent
    return out
