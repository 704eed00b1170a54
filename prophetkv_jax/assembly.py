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


@functools.partial(jax.jit, donate_argnames=("k", "v"))
def _write_segment(k: jax.Array, v: jax.Array, segment_k: jax.Array, segment_v: jax.Array,
                   start: jax.Array) -> tuple[jax.Array, jax.Array]:
    slots = start + jnp.arange(segment_k.shape[1])  # padding past the capacity is dropped
    return k.at[:, slots].set(segment_k, mode="drop"), v.at[:, slots].set(segment_v, mode="drop")


def _bucketed(x: np.ndarray) -> np.ndarray:
    """[L, n, KV, hd] zero-padded to ``bucket_size(n)`` rows, fp32: few shapes, so few compiles."""
    n = x.shape[1]
    return np.pad(np.asarray(x, np.float32), ((0, 0), (0, llama.bucket_size(n) - n), (0, 0), (0, 0)))


def assemble(config: LlamaConfig, segments: list[SegmentKV], capacity: int) -> llama.KVCache:
    """Concatenate segments in order into one cache, slot i = global position i, RoPE applied once.

    Each segment goes to the device as it is (no host-side copy of the whole cache) and is
    written at its offset; segments are padded to shape buckets first, so a new chunk
    length compiles nothing inside TTFT, and each one's padding is overwritten by the next
    segment. Keys are rotated in fp32, then the cache takes the config's compute dtype (a
    bf16 model gets a bf16 cache, as a full prefill does)."""
    total = sum(s.length for s in segments)
    if total > capacity:
        raise ValueError(f"segments hold {total} tokens but the cache capacity is {capacity}")
    shape = (config.num_layers, capacity, config.num_kv_heads, config.head_dim)
    k, v = jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)
    start = 0
    for segment in segments:
        k, v = _write_segment(k, v, _bucketed(segment.k), _bucketed(segment.v), jnp.int32(start))
        start += segment.length
    positions = jnp.arange(capacity, dtype=jnp.int32)
    dtype = jnp.dtype(config.dtype)
    return llama.KVCache(
        k=_rotate_keys(k, positions, config).astype(dtype),
        v=v.astype(dtype),
        positions=positions,
        valid=positions < total,
    )
