"""Chunk KVs: a segment encoded alone, its keys kept before RoPE, in the layout the store holds.

A chunk is encoded alone at local positions 0..n-1 and kept with its keys as the layer
computed them, before RoPE, so that at request time the stored chunks can be laid out in
retrieval order and rotated exactly once, at their global positions (rotating a stored
rotated key again would be the double-RoPE bug the ProphetKV paper warns about). Nothing
is un-rotated, so a bf16 entry is the very bf16 value a full prefill would start from.
Entries travel padded to ``segment_rows`` buckets, so a new mix of chunk lengths compiles
nothing in assembly.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from prophetkv_jax.buckets import bucket_size
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import LlamaConfig
from prophetkv_jax.store import EntrySpec, SegmentKV

SEGMENT_ROW_STEP = 64


def segment_rows(n: int) -> int:
    """Rows a stored segment of n tokens occupies: n rounded up to a multiple of 64."""
    return max(SEGMENT_ROW_STEP, -(-n // SEGMENT_ROW_STEP) * SEGMENT_ROW_STEP)


def segment_spec(config: LlamaConfig, n: int, dtype: str) -> EntrySpec:
    """The shape, length and dtype a stored n-token segment of this model must have."""
    return EntrySpec((config.num_layers, segment_rows(n), config.num_kv_heads, config.head_dim), n, dtype)


@functools.partial(jax.jit, static_argnames=("rows", "dtype"))
def _segment_kv(cache: llama.KVCache, raw_k: jax.Array, n: jax.Array, rows: int, dtype: str):
    keep = (jnp.arange(rows) < n)[None, :, None, None]  # padding rows are zeros, never garbage
    as_stored = lambda x: jnp.where(keep, x[:, :rows], 0).astype(dtype)  # noqa: E731
    return as_stored(raw_k), as_stored(cache.v)


def encode_segment(params: llama.Params, config: LlamaConfig, tokens: np.ndarray,
                   dtype: str | None = None) -> SegmentKV:
    """Prefill one segment on its own (local positions) and return its pre-RoPE K and V as
    device arrays of ``segment_rows(n)`` rows in ``dtype`` (default: the compute dtype)."""
    tokens = np.asarray(tokens, np.int32)
    n = tokens.size
    if n == 0:
        raise ValueError("cannot encode an empty segment")
    capacity = bucket_size(n)
    padded = np.pad(tokens, (0, capacity - n))
    cache, raw_k = llama.encode(params, padded, llama.KVCache.empty(config, capacity), config)
    k, v = _segment_kv(cache, raw_k, np.int32(n), segment_rows(n), dtype or config.dtype)
    return SegmentKV(k=k, v=v, num_tokens=n)
