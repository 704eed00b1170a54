"""Chunk encoding and cache assembly: position-independent chunk KVs, RoPE applied once.

A chunk is encoded alone at local positions 0..n-1 and kept with its keys *un*-rotated,
so that at request time the stored chunks can be concatenated in retrieval order and
rotated exactly once, at their global positions (rotating a stored rotated key again
would be the double-RoPE bug the ProphetKV paper warns about).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from prophetkv_jax.model import llama
from prophetkv_jax.model.config import LlamaConfig
from prophetkv_jax.store import SegmentKV


@functools.partial(jax.jit, static_argnames=("config",))
def _unrotate_keys(k: jax.Array, positions: jax.Array, config: LlamaConfig) -> jax.Array:
    cos, sin = llama.rope_tables(positions, config)
    return jax.vmap(lambda layer_k: llama.apply_rope(layer_k, (cos, -sin)))(k)


@functools.partial(jax.jit, static_argnames=("config",))
def _rotate_keys(k: jax.Array, positions: jax.Array, config: LlamaConfig) -> jax.Array:
    rope = llama.rope_tables(positions, config)
    return jax.vmap(lambda layer_k: llama.apply_rope(layer_k, rope))(k)


def encode_segment(params: llama.Params, config: LlamaConfig, tokens: np.ndarray) -> SegmentKV:
    """Prefill one segment on its own (local positions) and return its K without RoPE, and V."""
    tokens = np.asarray(tokens, np.int32)
    n = tokens.size
    if n == 0:
        raise ValueError("cannot encode an empty segment")
    capacity = llama.bucket_size(n)
    rows, positions, slots = llama.pad_rows(tokens, np.arange(n), np.arange(n), capacity)
    no_logits = np.zeros((1,), np.int32)  # only the cache is wanted: skip the LM head
    _, cache = llama.forward(
        params, rows, positions, llama.KVCache.empty(config, capacity), slots, config, no_logits,
        donate=True,
    )
    k = _unrotate_keys(cache.k, jnp.arange(capacity), config)
    return SegmentKV(k=np.asarray(k[:, :n]), v=np.asarray(cache.v[:, :n]))


def assemble(config: LlamaConfig, segments: list[SegmentKV], capacity: int) -> llama.KVCache:
    """Concatenate segments in order into one cache, slot i = global position i, RoPE applied once.

    Segments are copied to the device as they are and joined there (no host-side copy of the
    whole cache); keys are rotated in fp32, then the cache takes the config's compute dtype (a
    bf16 model gets a bf16 cache, as a full prefill does)."""
    total = sum(s.length for s in segments)
    if total > capacity:
        raise ValueError(f"segments hold {total} tokens but the cache capacity is {capacity}")
    empty = jnp.zeros((config.num_layers, capacity - total, config.num_kv_heads, config.head_dim), jnp.float32)
    k, v = (jnp.concatenate([*(jnp.asarray(getattr(s, name), jnp.float32) for s in segments), empty], axis=1)
            for name in ("k", "v"))
    positions = jnp.arange(capacity, dtype=jnp.int32)
    dtype = jnp.dtype(config.dtype)
    return llama.KVCache(
        k=_rotate_keys(k, positions, config).astype(dtype),
        v=v.astype(dtype),
        positions=positions,
        valid=positions < total,
    )
