"""Tensor parallelism over a 1-D ``model`` mesh axis: Megatron-style rules on the weights' logical axes.

Each weight's logical axes are named in its row of ``weights.WEIGHTS`` and the cache's beside
``llama.KVCache``; ``rules`` maps those names to the mesh axis, and everything else follows from
placing the params and the KV cache with ``NamedSharding``:
the jitted model is unchanged and GSPMD propagates the shardings through it (the mesh's axis is
``Auto``), so selection, assembly and the scatter updates run on sharded arrays as they are.

* q/k/v and gate/up are split by columns (heads, FFN units) and o/down by rows, so each device
  holds whole heads and a slice of the FFN; one all-reduce after o and one after down.
* the embedding and the LM head are split over the vocabulary: with 128-152K tokens they are the
  largest matrices (1-1.5 GB each in bf16 at 8-14B); the head's logits are needed for one row per
  request, and the lookup becomes a masked gather plus an all-reduce.
* an axis whose count the mesh does not divide is replicated: with 2 KV heads on 8 devices the
  k/v projections and the KV cache are replicated (splitting inside a head would cut RoPE pairs).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from prophetkv_jax.model.config import LlamaConfig
from prophetkv_jax.model.llama import KVCache
from prophetkv_jax.model.mesh_flag import MODEL
from prophetkv_jax.model.weights import LOGICAL_AXES, Params

# weights take this share of a device's memory at most when choosing automatically (cache, activations)
_WEIGHT_SHARE = 0.7


def rules(config: LlamaConfig, size: int) -> dict[str, str | None]:
    """Logical axis -> mesh axis; an axis is split only when ``size`` divides its count."""
    split = lambda count: MODEL if size > 1 and count % size == 0 else None  # noqa: E731
    return {"q_heads": split(config.num_heads), "kv_heads": split(config.num_kv_heads),
            "mlp": split(config.intermediate_size), "vocab": split(config.vocab_size)}


def _spec(axes: tuple[str, ...], table: dict[str, str | None]) -> PartitionSpec:
    return PartitionSpec(*(table.get(axis) for axis in axes))


def param_specs(params: Params, config: LlamaConfig, size: int) -> Params:
    """A PartitionSpec per weight, from its logical axes."""
    table = rules(config, size)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: _spec(LOGICAL_AXES["/".join(k.key for k in path)], table), params)


def cache_specs(config: LlamaConfig, size: int) -> KVCache:
    """K/V [L, S, KV, hd] split along KV heads when they divide; slot positions and flags replicated."""
    table = rules(config, size)
    return KVCache(**{field: _spec(axes, table) for field, axes in KVCache.LOGICAL_AXES.items()})


def make_mesh(size: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D ``model`` mesh over the first ``size`` devices (Auto axis: GSPMD propagates shardings)."""
    devices = list(jax.devices() if devices is None else devices)
    if size > len(devices):
        raise ValueError(f"--mesh model={size}: only {len(devices)} {devices[0].platform} device(s) are visible")
    return jax.make_mesh((size,), (MODEL,), devices=devices[:size], axis_types=(AxisType.Auto,))


def auto_size(weight_bytes: int, devices: Sequence[jax.Device] | None = None) -> int:
    """Fewest devices (a power of two) whose memory holds the weights; 1 on CPU or without memory stats."""
    devices = list(jax.devices() if devices is None else devices)
    stats = devices[0].memory_stats() if devices[0].platform != "cpu" else None
    limit = (stats or {}).get("bytes_limit")
    size = 1
    while limit and size < len(devices) and weight_bytes > _WEIGHT_SHARE * limit * size:
        size *= 2
    return min(size, len(devices))


def place_params(params: Params, config: LlamaConfig, size: int | None = 1) -> Params:
    """Host or device weights onto one device (``size`` 1), or split over a ``model`` mesh (None: auto)."""
    if size is None:
        size = auto_size(sum(np.dtype(x.dtype).itemsize * int(np.prod(x.shape)) for x in jax.tree.leaves(params)))
    if size == 1:
        return jax.tree.map(jax.numpy.asarray, params)
    mesh = make_mesh(size)
    return jax.device_put(params, _named(mesh, param_specs(params, config, size)))


def mesh_of(params: Params) -> Mesh | None:
    """The ``model`` mesh the weights are split over, or None for weights on one device."""
    sharding = getattr(params["embed"]["embedding"], "sharding", None)
    if isinstance(sharding, NamedSharding) and MODEL in sharding.mesh.axis_names and sharding.mesh.size > 1:
        return sharding.mesh
    return None


def place_cache(cache: KVCache, config: LlamaConfig, mesh: Mesh | None) -> Any:
    """The cache on the weights' mesh with ``cache_specs`` (unchanged without a mesh)."""
    if mesh is None:
        return cache
    return jax.device_put(cache, _named(mesh, cache_specs(config, mesh.shape[MODEL])))


def _named(mesh: Mesh, specs: Any) -> Any:
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))
