"""Cache assembly: stored chunk KVs laid out in retrieval order in one cache, RoPE applied once.

Chunk KVs hold their keys before RoPE (``chunks``); here each segment (a device array, or a
host array that goes to the device once, in its own dtype) is rotated at its offset in fp32
and written into the cache in the compute dtype by one jitted, cache-donating call
(``dynamic_update_slice`` in place; on CPU the keys' halves are swapped by a program of their
own, see ``llama.rotate``). Segments arrive padded to ``segment_rows`` buckets, so a new mix of
chunk lengths compiles nothing. A finished request's cache can be handed back (``recycle``) and
its memory rewritten in place: on CPU a new cache costs a page fault per 4 KiB, more than the
writes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prophetkv_jax.buckets import bucket_size
from prophetkv_jax.chunks import SEGMENT_ROW_STEP, segment_rows
from prophetkv_jax.host_memory import on_device, to_device, wait_for
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import LlamaConfig
from prophetkv_jax.store import SegmentKV


def padded_end(lengths: list[int]) -> int:
    """The last slot (exclusive) that segments of these token counts reach with their padding
    rows when laid out in order."""
    ends, start = [0], 0
    for n in lengths:
        ends.append(start + segment_rows(n))
        start += n
    return max(ends)


def cache_capacity(lengths: list[int], total_tokens: int) -> int:
    """Cache slots for ``total_tokens`` tokens (prompt and answer) whose leading segments have these
    token counts: every method of one request gets this size, so their caches decode together."""
    return bucket_size(max(total_tokens, padded_end(lengths)))


_rope_program = jax.jit(llama.rope_tables, static_argnames="config")


@functools.lru_cache(maxsize=8)
def _rope_table(config: LlamaConfig, length: int) -> llama.Rope:
    """cos/sin [length, hd] for positions 0..length-1, computed once on the device (XLA would
    otherwise recompute the cosines inside every element of the rotation it fuses them into)."""
    return _rope_program(jnp.arange(length, dtype=jnp.int32), config)


def _as_bits(x: jax.Array) -> jax.Array:
    """16-bit floats as uint16: XLA:CPU copies those as integers, but converts bf16 element by element."""
    return jax.lax.bitcast_convert_type(x, jnp.uint16) if x.dtype.itemsize == 2 else x


def _from_bits(x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    return jax.lax.bitcast_convert_type(x, dtype) if x.dtype != dtype else x


def _widen(x: jax.Array) -> jax.Array:
    """To fp32; bf16 by shifting its bits into the high half (exact, and ~4x XLA:CPU's convert)."""
    if x.dtype != jnp.bfloat16:
        return x.astype(jnp.float32)
    return jax.lax.bitcast_convert_type(_as_bits(x).astype(jnp.uint32) << 16, jnp.float32)


def _narrow(x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """fp32 to ``dtype``; to bf16 by integer round-to-nearest-even, bit for bit XLA's convert, NaN kept."""
    if dtype != jnp.bfloat16:
        return x.astype(dtype)
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return _from_bits(jnp.where(jnp.isnan(x), jnp.uint32(0x7FC0), rounded).astype(jnp.uint16), dtype)


@functools.partial(jax.jit, static_argnames=("rows",), donate_argnames=("k", "v"))
def _clear_tail(k: jax.Array, v: jax.Array, rows: int) -> tuple[jax.Array, jax.Array]:
    """Zero a recycled cache's last ``rows`` slots in place (one write: the cost is the slots cleared)."""
    at = (0, k.shape[1] - rows, 0, 0)
    clear = lambda x: _from_bits(jax.lax.dynamic_update_slice(  # noqa: E731
        _as_bits(x), jnp.zeros((x.shape[0], rows, *x.shape[2:]), _as_bits(x).dtype), at), x.dtype)
    return clear(k), clear(v)


def check_recyclable(config: LlamaConfig, cache: llama.KVCache) -> None:
    """Refuse a cache whose K/V are not this model's (layers, KV heads, head dim, dtype)."""
    expected = (config.num_layers, cache.capacity, config.num_kv_heads, config.head_dim)
    have = [(x.shape, str(x.dtype)) for x in (cache.k, cache.v)]
    if have != [(expected, config.dtype)] * 2:
        raise ValueError(f"cannot recycle a cache of K/V {have[0][0]} {have[0][1]} for a model whose caches are "
                         f"{expected} {config.dtype}; recycle only caches of the same model and dtype")


def blank_cache(config: LlamaConfig, capacity: int, recycle: llama.KVCache | None = None,
                overwritten: int = 0) -> llama.KVCache:
    """A cache of ``capacity`` slots, none valid, whose slots from ``overwritten`` on are zero.

    Without ``recycle`` (or with nothing ``overwritten``) it is new, all zero (``KVCache.empty``).
    With it, that finished cache of this model and capacity is donated (it must not be used
    afterwards) and only its last slots are cleared, from ``overwritten`` or a little before (their
    count rounds up to a shape bucket, so few sizes compile): the caller writes every slot before
    ``overwritten`` before reading it, and stale values elsewhere, even non-finite ones, never
    reach a masked attention product.
    """
    if recycle is None or overwritten < 1:
        return llama.KVCache.empty(config, capacity)
    k, v = _cleared(config, capacity, recycle, overwritten)
    positions, valid = _no_slots(capacity)
    return llama.KVCache(k=k, v=v, positions=positions, valid=valid)


@functools.partial(jax.jit, static_argnums=0)
def _no_slots(capacity: int) -> tuple[jax.Array, jax.Array]:
    """``KVCache.empty``'s positions and validity (all zero), in one launch."""
    return jnp.zeros((capacity,), jnp.int32), jnp.zeros((capacity,), bool)


def _cleared(config: LlamaConfig, capacity: int, recycle: llama.KVCache | None,
             overwritten: int) -> tuple[jax.Array, jax.Array]:
    """``blank_cache``'s K and V."""
    if recycle is None or overwritten < 1:
        empty = llama.KVCache.empty(config, capacity)
        return empty.k, empty.v
    check_recyclable(config, recycle)
    if recycle.capacity != capacity:
        raise ValueError(f"cannot recycle a cache of {recycle.capacity} slots as one of {capacity}")
    stale = capacity - min(capacity, overwritten) // SEGMENT_ROW_STEP * SEGMENT_ROW_STEP
    # Slot 0 (which the caller writes) is never cleared: a result that depended on no input slot
    # would be laid out anew by XLA (replicated over a mesh) and the donation dropped.
    return _clear_tail(recycle.k, recycle.v, min(capacity - 1, bucket_size(stale, SEGMENT_ROW_STEP)))


@functools.partial(jax.jit, static_argnums=0)
def _slot_index(capacity: int, filled: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Slot positions 0..capacity-1 and which of them hold tokens (the first ``filled``): one launch,
    where building them op by op would be several."""
    positions = jnp.arange(capacity, dtype=jnp.int32)
    return positions, positions < filled


@jax.jit
def _swapped_halves(x: jax.Array) -> jax.Array:
    """x with the two halves of its last axis exchanged, as a program of its own: XLA:CPU does not
    vectorise the reversal fused into the rotation (see ``llama.rotate``); other backends fuse it."""
    pairs = _as_bits(x).reshape(*x.shape[:-1], 2, x.shape[-1] // 2)
    return _from_bits(pairs[..., ::-1, :].reshape(x.shape), x.dtype)


@functools.partial(jax.jit, donate_argnames=("k", "v"))
def _write_segment(k: jax.Array, v: jax.Array, segment_k: jax.Array, swapped_k: jax.Array | None,
                   segment_v: jax.Array, start: jax.Array, table: llama.Rope) -> tuple[jax.Array, jax.Array]:
    """Rotate a segment's keys at global positions start.. (fp32 math) and write K/V in place;
    ``swapped_k``: the keys' halves exchanged by ``_swapped_halves`` (on CPU), else None."""
    rows = segment_k.shape[1]
    rope = tuple(jax.lax.dynamic_slice_in_dim(t, start, rows) for t in table)
    if swapped_k is None:
        rotated = jax.vmap(lambda layer_k: llama.rotate(layer_k, rope))(_widen(segment_k))
    else:
        rotated = jax.vmap(lambda layer_k, layer_swapped: llama.rotate(layer_k, rope, layer_swapped))(
            _widen(segment_k), _widen(swapped_k))
    rotated = _narrow(rotated, k.dtype)
    values = segment_v if segment_v.dtype == v.dtype else _narrow(_widen(segment_v), v.dtype)
    at = (0, start, 0, 0)
    return (_from_bits(jax.lax.dynamic_update_slice(_as_bits(k), _as_bits(rotated), at), k.dtype),
            _from_bits(jax.lax.dynamic_update_slice(_as_bits(v), _as_bits(values), at), v.dtype))


def assemble(config: LlamaConfig, segments: list[SegmentKV], capacity: int,
             recycle: llama.KVCache | None = None, copied: Sequence[bool] = (),
             timings: dict[str, float] | None = None) -> llama.KVCache:
    """Lay segments out in order in one cache, slot i = global position i, RoPE applied once.

    Every call is asynchronous device work: host segments are transferred first, all at
    once (so the copies overlap the cache clearing), then each one is written at its offset; a
    segment's padding rows land where the next segment (or the query) overwrites them. The
    cache has ``capacity`` slots (see :func:`cache_capacity`); ``recycle`` is a finished cache of
    that shape whose memory is reused (see :func:`blank_cache`). With ``timings``, the segments given in
    host memory, or marked in ``copied`` (their copies to the device issued by the caller), are waited
    for once, after the cache clearing is issued and before the first write, and the seconds waited go
    to ``timings["copy_wait"]``: the copy time the request still pays, at the cost of one host sync.
    """
    odd = [s for s in segments if s.k.shape[1] != segment_rows(s.length)]
    if odd:
        raise ValueError(f"a segment has {odd[0].k.shape[1]} rows for {odd[0].length} tokens; segments travel "
                         f"padded to segment_rows(n) = {segment_rows(odd[0].length)}")
    total, reach = sum(s.length for s in segments), padded_end([s.length for s in segments])
    if max(total, reach) > capacity:
        raise ValueError(f"segments of {total} tokens reach slot {reach} with their padding, but the cache capacity "
                         f"is {capacity}; size it with cache_capacity()")
    copied = tuple(copied) or (False,) * len(segments)
    if len(copied) != len(segments):
        raise ValueError(f"assemble: copied has {len(copied)} flags for {len(segments)} segments; give one per segment")
    in_flight = [timings is not None and (c or not on_device(s)) for c, s in zip(copied, segments)]
    segments = [to_device(s) for s in segments]  # host segments: every copy issued before the first write
    (k, v), table = _cleared(config, capacity, recycle, total), _rope_table(config, capacity)
    swap_apart = any(device.platform == "cpu" for device in k.devices())
    arriving = [(s.k, s.v) for s, wait in zip(segments, in_flight) if wait]
    waited = wait_for(arriving) if arriving else 0.0
    start = 0
    for segment in segments:
        swapped = _swapped_halves(segment.k) if swap_apart else None
        k, v = _write_segment(k, v, segment.k, swapped, segment.v, np.int32(start), table)
        start += segment.length
    if timings is not None:
        timings["copy_wait"] = waited
    positions, valid = _slot_index(capacity, np.int32(total))
    return llama.KVCache(k=k, v=v, positions=positions, valid=valid)
