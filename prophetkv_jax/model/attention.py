"""Position-masked grouped-query attention, computed in query blocks x key blocks.

A row at global position p sees every valid slot whose position is <= p. Rows and slots
are not assumed to be in position order (ProphetKV recomputes non-contiguous rows against
an assembled cache), so a key block is skipped when the smallest position among its
valid slots lies after the largest row position of the query block: for an ordinary
causal prefill that skips the upper triangle, and for any layout it skips empty slots.
An online softmax keeps each step's working set at one [KV, group x rows, keys] block,
never a full [heads, rows, slots] matrix.

Few rows (decoding, ProphetKV's Stage I) take a one-pass path instead: their whole
[heads, rows, slots] logits are small, so one softmax gives the output and the Stage-I
scores together, where the blocked path needs a second pass over the keys for the scores.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

log = logging.getLogger(__name__)

# Below every real logit; masked entries are also zeroed explicitly, so its size never leaks.
_MASKED = -1e30
BLOCK_ROWS, BLOCK_KEYS = 256, 256
# At most this many rows go through the one-pass path: [heads, 128, slots] logits stay within
# the [heads, query, context] a Stage I may hold; single decode rows skip the K/V transposes.
FEW_ROWS = 128


def platform() -> str:
    """The backend kernels are chosen for: one place, so a test can lower a pass as a GPU would run it."""
    return jax.default_backend()


def packs_bits(dtype: Any) -> bool:
    """Whether a cache stack of ``dtype`` goes through the layers as its uint16 bits (``pack``).

    XLA:CPU scatters 16-bit floats by converting the whole stack to fp32 and back, and converts a
    bf16 stack to its bits and back around every scatter inside the layer loop: several passes over
    every layer's cache for each layer's few rows (measured: most of a 16-row pass over a 4K bf16
    cache). Carried as bits, each layer scatters only its rows. Other backends scatter in place."""
    return jnp.dtype(dtype).itemsize == 2 and platform() == "cpu"


def pack(stack: jax.Array) -> jax.Array:
    """The stack as the layer loop carries it: its uint16 bits where ``packs_bits``, else itself."""
    return jax.lax.bitcast_convert_type(stack, jnp.uint16) if packs_bits(stack.dtype) else stack


def unpack(stack: jax.Array, dtype: Any) -> jax.Array:
    """``pack`` undone: the stack (or a slice of it) in the cache's ``dtype``."""
    return stack if stack.dtype == jnp.dtype(dtype) else jax.lax.bitcast_convert_type(stack, jnp.dtype(dtype))


def write_rows(stack: jax.Array, layer: jax.Array, targets: jax.Array, values: jax.Array) -> jax.Array:
    """``stack`` [L, S, ...] (as stored, or ``pack``-ed) with ``values`` (in the cache's dtype) written at
    slots ``targets`` of layer ``layer``, in place; targets out of range are dropped (padding rows)."""
    if stack.dtype == jnp.uint16 and values.dtype != jnp.uint16:
        values = jax.lax.bitcast_convert_type(values, jnp.uint16)
    return stack.at[layer, targets].set(values.astype(stack.dtype), mode="drop")


def _block(size: int, wanted: int) -> int:
    """The block length: ``wanted`` when it tiles ``size`` (shape buckets make it so), else one block."""
    return wanted if size % wanted == 0 else size


def blocked_attention(
    q: jax.Array, k_cache: jax.Array, v_cache: jax.Array, layer: jax.Array,
    row_positions: jax.Array, key_positions: jax.Array, key_valid: jax.Array,
    score_rows: jax.Array | None = None, block_rows: int = BLOCK_ROWS, block_keys: int = BLOCK_KEYS,
    few_rows: int = FEW_ROWS, skip_blocks: bool | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """Attention of rows q [T, H, hd] over layer ``layer`` of a stacked cache [L, S, KV, hd].

    Key blocks are read straight out of the stack (no per-layer copy). With ``score_rows``
    [T] (a weight per row) also returns, per slot [S], the head-averaged attention
    probabilities summed over the weighted rows: ProphetKV's Stage-I score, from a second
    pass over the visited blocks once each row's normaliser is known. Up to ``few_rows``
    rows go through ``few_rows_attention`` instead.

    ``skip_blocks`` (default: on CPU only) guards each key block with a ``lax.cond`` that skips it
    when no row of the query block sees it. On an accelerator a conditional per block splits the
    pass into many small launches; there every block is computed (its mask zeroes what is unseen),
    so Stage I stays one fused program.
    """
    if q.shape[0] <= few_rows:
        return few_rows_attention(q, k_cache, v_cache, layer, row_positions, key_positions, key_valid, score_rows)
    rows, heads, head_dim = q.shape
    slots, kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = heads // kv_heads
    bq = _block(rows, min(block_rows, rows))
    # Few rows (Stage I, decoding): proportionally longer key blocks, so the loop runs few,
    # larger steps; a block stays within [heads, rows, slots] either way.
    bk = _block(slots, min(block_keys * max(1, block_rows // bq), slots))
    nq, nk = rows // bq, slots // bk
    # [nq, KV, group * bq, hd]: the KV head leads every operand so XLA:CPU emits library matmuls.
    q_blocks = q.reshape(nq, bq, kv_heads, group, head_dim).transpose(0, 2, 3, 1, 4)
    q_blocks = q_blocks.reshape(nq, kv_heads, group * bq, head_dim)
    row_pos = jnp.asarray(row_positions).reshape(nq, bq)
    key_pos = jnp.asarray(key_positions).reshape(nk, bk)
    valid = jnp.asarray(key_valid).reshape(nk, bk)
    first_visible = jnp.min(jnp.where(valid, key_pos, jnp.iinfo(jnp.int32).max), axis=1)  # [nk]
    weights = None if score_rows is None else jnp.asarray(score_rows, jnp.float32).reshape(nq, bq)
    scale = head_dim**-0.5
    skip = platform() == "cpu" if skip_blocks is None else skip_blocks

    def maybe(j: jax.Array, visible: jax.Array, update: Callable, state: Any) -> Any:
        return jax.lax.cond(visible[j], update, lambda s: s, state) if skip else update(state)

    def key_block(j: jax.Array, qb: jax.Array, qpos: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        start, size = (layer, j * bk, 0, 0), (1, bk, kv_heads, head_dim)
        k = jax.lax.dynamic_slice(k_cache, start, size)[0].transpose(1, 0, 2)  # [KV, bk, hd]
        v = jax.lax.dynamic_slice(v_cache, start, size)[0].transpose(1, 0, 2)
        logits = jnp.einsum("kmd,ksd->kms", qb, k, preferred_element_type=jnp.float32) * scale
        seen = (key_pos[j][None, :] <= qpos[:, None]) & valid[j][None, :]  # [bq, bk]
        seen = jnp.tile(seen, (group, 1))[None]  # rows of every head in a group share the mask
        return jnp.where(seen, logits, _MASKED), seen, v

    def query_block(xs):
        qb, qpos, w = xs
        visible = first_visible <= jnp.max(qpos)

        def accumulate(j, state):
            def update(state):
                m, denom, acc = state
                logits, seen, v = key_block(j, qb, qpos)
                m_new = jnp.maximum(m, logits.max(axis=-1))
                p = jnp.where(seen, jnp.exp(logits - m_new[..., None]), 0.0)
                correction = jnp.exp(m - m_new)
                acc = acc * correction[..., None] + jnp.einsum(
                    "kms,ksd->kmd", p.astype(v.dtype), v, preferred_element_type=jnp.float32
                )
                return m_new, denom * correction + p.sum(axis=-1), acc

            return maybe(j, visible, update, state)

        stats = jnp.full((kv_heads, group * bq), _MASKED, jnp.float32)
        init = (stats, jnp.zeros_like(stats), jnp.zeros((kv_heads, group * bq, head_dim), jnp.float32))  # bf16 too
        m, denom, acc = jax.lax.fori_loop(0, nk, accumulate, init)
        out = jnp.where(denom[..., None] > 0, acc / jnp.maximum(denom, 1e-30)[..., None], 0.0).astype(q.dtype)
        if w is None:
            return out, None
        log_norm = m + jnp.log(jnp.maximum(denom, 1e-30))
        row_weight = jnp.tile(w, group)[None, :, None] / heads

        def score(j, totals):
            def add(totals):
                logits, seen, _ = key_block(j, qb, qpos)
                p = jnp.where(seen, jnp.exp(logits - log_norm[..., None]), 0.0)
                return totals.at[j].set((p * row_weight).sum(axis=(0, 1)))

            return maybe(j, visible, add, totals)

        return out, jax.lax.fori_loop(0, nk, score, jnp.zeros((nk, bk), jnp.float32))

    out, scores = jax.lax.map(query_block, (q_blocks, row_pos, weights))
    out = out.reshape(nq, kv_heads, group, bq, head_dim).transpose(0, 3, 1, 2, 4)
    out = out.reshape(rows, heads, head_dim)
    return out, None if scores is None else scores.sum(axis=0).reshape(slots)


def few_rows_attention(
    q: jax.Array, k_cache: jax.Array, v_cache: jax.Array, layer: jax.Array,
    row_positions: jax.Array, key_positions: jax.Array, key_valid: jax.Array,
    score_rows: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """``blocked_attention`` for a few rows in one pass over every slot of the layer.

    A single row (decoding) multiplies the layer's keys and values as stored, [S, KV x hd],
    by a block-diagonal query (each head's q in its KV head's columns, zeros elsewhere):
    KV times the (tiny) arithmetic, but no transposed copy of the layer per token.
    """
    rows, heads, head_dim = q.shape
    slots, kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = heads // kv_heads
    key_positions, key_valid = jnp.asarray(key_positions), jnp.asarray(key_valid)
    seen = (key_positions[None, :] <= jnp.asarray(row_positions)[:, None]) & key_valid[None, :]
    k = jax.lax.dynamic_index_in_dim(k_cache, layer, keepdims=False)  # [S, KV, hd]
    v = jax.lax.dynamic_index_in_dim(v_cache, layer, keepdims=False)
    if rows == 1:
        own = jnp.repeat(jnp.eye(kv_heads, dtype=q.dtype), group, axis=0)  # [H, KV]: head -> its KV head
        q_wide = (q[0][:, None, :] * own[:, :, None]).reshape(heads, kv_heads * head_dim)
        logits = jnp.einsum("hc,sc->hs", q_wide, k.reshape(slots, -1), preferred_element_type=jnp.float32)
        logits = logits.reshape(kv_heads, group, slots)  # [KV, group x rows, S], rows = 1
        visible = jnp.tile(seen, (group, 1))[None]  # [1, group x rows, S], rows of a group share the mask
    else:
        # One plain 2-D product per KV head, [rows x group, hd] by that head's [S, hd] keys as stored:
        # XLA:CPU runs those as library matmuls, where a product batched over KV heads (after a
        # transposed copy of the layer) took ~4x as long in bf16 for 16 rows over 4K slots.
        q_grouped = q.reshape(rows, kv_heads, group * head_dim)
        logits = jnp.stack([
            jax.lax.dot_general(q_grouped[:, h].reshape(rows * group, head_dim), k[:, h],
                                (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
            for h in range(kv_heads)])  # [KV, rows x group, S]: row r's heads at r x group ..
        visible = jnp.repeat(seen, group, axis=0)[None]
    logits = jnp.where(visible, logits * head_dim**-0.5, _MASKED)
    probs = jnp.where(visible, jnp.exp(logits - logits.max(axis=-1, keepdims=True)), 0.0)
    probs = probs / jnp.maximum(probs.sum(axis=-1, keepdims=True), 1e-30)  # a row seeing nothing gives 0
    if rows == 1:
        wide = jnp.einsum("hs,sc->hc", probs.reshape(heads, slots).astype(v.dtype), v.reshape(slots, -1),
                          preferred_element_type=jnp.float32).reshape(heads, kv_heads, head_dim)
        out = jnp.einsum("hkd,hk->hd", wide, own)[None]
    else:
        out = jnp.stack([jnp.dot(probs[h].astype(v.dtype), v[:, h], preferred_element_type=jnp.float32)
                         for h in range(kv_heads)], axis=1)  # [rows x group, KV, hd]
        out = out.reshape(rows, group, kv_heads, head_dim).transpose(0, 2, 1, 3).reshape(rows, heads, head_dim)
    out = out.astype(q.dtype)
    if score_rows is None:
        return out, None
    weights = jnp.asarray(score_rows, jnp.float32)
    row_weight = (jnp.tile(weights, group) if rows == 1 else jnp.repeat(weights, group))[None, :, None] / heads
    return out, (probs * row_weight).sum(axis=(0, 1))


_GPU_BACKENDS = ("gpu", "cuda", "rocm")
# Every pass's kernel as chosen when it was traced: (backend, dtype, head_dim, rows, slots, Stage I, causal) ->
# the kernel, and why a cuDNN kernel was not taken where one was wanted. Read with ``chosen_kernels``.
_CHOSEN: dict[tuple, dict[str, Any]] = {}


def chosen_kernels() -> list[dict[str, Any]]:
    """The kernel of every pass traced so far in this process, one entry per pass shape (for benchmark records)."""
    return [dict(entry) for entry in _CHOSEN.values()]


def choose_kernel(
    backend: str, dtype: str, head_dim: int, *, wants_scores: bool, causal_prefix: bool, rows: int = FEW_ROWS + 1,
    slots: int = 0, heads: int = 1, kv_heads: int = 1, cudnn_works: Callable[..., bool] | None = None,
) -> str:
    """The attention kernel for one forward pass of ``rows`` query rows over ``slots`` slots, one of four:

    * ``blocked`` (``blocked_attention``): CPU, fp32, Stage I and the oracle (they need the
      attention probabilities), up to ``FEW_ROWS`` rows (decoding and short query segments: its
      one-pass path, no mask to build), and any GPU shape cuDNN refuses;
    * ``cudnn_causal``: cuDNN's fused attention with ``is_causal`` over the first T slots, for rows
      that are positions 0..T-1 written to slots 0..T-1 (a full prefill, a chunk encoded alone);
    * ``cudnn_masked``: cuDNN with an additive mask from global positions, for more than ``FEW_ROWS``
      rows at scattered positions (selective recomputation), run per row group over the group's slot
      prefix (``fused_attention``);
    * ``xla_masked``: ``jax.nn.dot_product_attention`` with ``implementation="xla"`` on TPU,
      the path TPUs have always taken here (not yet measured against ``blocked`` there).
    ``cudnn_works(kernel, dtype, head_dim, rows, slots, heads, kv_heads)`` defaults to compiling that
    cuDNN kernel once at exactly this pass's shapes (``fused_kernel_compiles``): cuDNN may accept a
    small shape and refuse a real one. Each choice, and a refusal's reason, goes to ``chosen_kernels``.
    """
    kernel, fallback = "blocked", None
    if wants_scores or backend == "cpu" or rows <= FEW_ROWS:
        pass
    elif backend == "tpu":
        kernel = "xla_masked"
    elif backend not in _GPU_BACKENDS or dtype not in ("bfloat16", "float16") or head_dim % 8:
        fallback = f"cuDNN needs bf16/fp16 and a head_dim multiple of 8 ({dtype}, {head_dim}) on a GPU"
    else:
        wanted = "cudnn_causal" if causal_prefix else "cudnn_masked"
        if (cudnn_works or _cudnn_works)(wanted, dtype, head_dim, rows, slots, heads, kv_heads):
            kernel = wanted
        else:
            fallback = f"{wanted} refused at {rows} rows x {slots} slots; blocked attention instead"
    _CHOSEN[(backend, dtype, head_dim, rows, slots, wants_scores, causal_prefix)] = {
        "backend": backend, "dtype": dtype, "rows": rows, "slots": slots, "stage_one": wants_scores,
        "causal_prefix": causal_prefix, "kernel": kernel, "fallback": fallback}
    return kernel


def fused_kernel_compiles(kernel: str, dtype: str, head_dim: int, rows: int, slots: int, heads: int,
                          kv_heads: int) -> bool:
    """Whether ``fused_attention`` with ``kernel`` compiles for one layer at these shapes, as the model
    calls it (row groups and mask included); False, with a warning, on any refusal."""
    floats = jnp.dtype(dtype)
    q = jax.ShapeDtypeStruct((rows, heads, head_dim), floats)
    kv = jax.ShapeDtypeStruct((slots, kv_heads, head_dim), floats)
    masked = kernel != "cudnn_causal"
    bias = jax.ShapeDtypeStruct((1, 1, rows, slots), floats) if masked else None
    lengths = jax.ShapeDtypeStruct((row_groups(rows),), jnp.int32) if masked else None
    try:
        jax.jit(fused_attention, static_argnames="kernel").lower(q, kv, kv, kernel, bias, lengths).compile()
    except Exception as err:  # noqa: BLE001 - any refusal means: keep the blocked kernel
        log.warning("%s unavailable for %s, head_dim %d at %d rows x %d slots (%s); using blocked attention",
                    kernel, dtype, head_dim, rows, slots, str(err).splitlines()[0] if str(err) else type(err).__name__)
        return False
    return True


@functools.lru_cache(maxsize=None)
def _cudnn_works(kernel: str, dtype: str, head_dim: int, rows: int, slots: int, heads: int, kv_heads: int) -> bool:
    """``fused_kernel_compiles``, once per pass shape in this process."""
    return fused_kernel_compiles(kernel, dtype, head_dim, rows, slots, heads, kv_heads)


def mask_bias(row_positions: jax.Array, key_positions: jax.Array, key_valid: jax.Array, dtype: Any) -> jax.Array:
    """Additive mask [1, 1, T, S]: 0 where a row sees a slot (key position <= row position, slot valid)."""
    seen = (key_positions[None, :] <= row_positions[:, None]) & key_valid[None, :]
    blocked = jnp.asarray(-0.7 * jnp.finfo(dtype).max, dtype)  # finite: a row seeing nothing stays finite
    return jnp.where(seen, jnp.zeros((), dtype), blocked)[None, None]


# jax.nn.dot_product_attention's implementation per fused kernel (tests run the cuDNN ones' wiring with "xla").
IMPLEMENTATION = {"cudnn_causal": "cudnn", "cudnn_masked": "cudnn", "xla_masked": "xla"}

# Recomputed rows arrive sorted by position (selected rows, then the query), and a row sees only
# keys up to its own position: cut into this many groups of consecutive rows, each group attends
# to the slots up to the last one it sees, so the masked kernels visit about (G + 1) / 2G of the
# dense rows x slots pairs (0.56 for 8 groups of evenly spread rows) instead of all of them.
ROW_GROUPS = 8


def row_groups(rows: int) -> int:
    """How many groups ``rows`` rows are cut into (one when they do not split evenly)."""
    return ROW_GROUPS if rows % ROW_GROUPS == 0 else 1


def group_key_lengths(row_positions: jax.Array, key_positions: jax.Array, key_valid: jax.Array,
                      groups: int) -> jax.Array:
    """[groups] int32: per group of consecutive rows, 1 + the last slot any of its rows sees (at least 1).
    Every slot past it is masked for the whole group, so a kernel may skip it."""
    rows, slots = row_positions.shape[0], key_positions.shape[0]
    last = jnp.max(jnp.asarray(row_positions).reshape(groups, rows // groups), axis=1)
    seen = jnp.asarray(key_valid)[None, :] & (jnp.asarray(key_positions)[None, :] <= last[:, None])
    return jnp.maximum(jnp.max(jnp.where(seen, jnp.arange(1, slots + 1), 0), axis=1), 1).astype(jnp.int32)


def attended_fraction(row_positions: Any, key_positions: Any, key_valid: Any, groups: int) -> float:
    """Share of the dense rows x slots pairs that the masked kernels visit with ``groups`` row groups."""
    lengths = group_key_lengths(row_positions, key_positions, key_valid, groups)
    rows, slots = len(row_positions), len(key_positions)
    return float(jnp.sum(lengths.astype(jnp.float32)) * (rows // groups) / (rows * slots))


def fused_attention(q: jax.Array, k: jax.Array, v: jax.Array, kernel: str, bias: jax.Array | None,
                    key_lengths: jax.Array | None = None) -> jax.Array:
    """q [T, H, hd] over one layer's k, v [S, KV, hd] with a fused kernel from ``choose_kernel``.

    ``cudnn_causal`` reads only the first T slots (the rows are positions 0..T-1); the masked
    kernels take ``mask_bias`` of the rows against every slot and, with ``key_lengths``
    (``group_key_lengths``), run per row group over that group's slot prefix only.
    """
    implementation = IMPLEMENTATION[kernel]
    if kernel == "cudnn_causal":
        rows = q.shape[0]
        return jax.nn.dot_product_attention(
            q[None], k[None, :rows], v[None, :rows], is_causal=True, implementation=implementation)[0]
    if key_lengths is None:
        return jax.nn.dot_product_attention(q[None], k[None], v[None], bias=bias, implementation=implementation)[0]
    groups = key_lengths.shape[0]
    size = q.shape[0] // groups
    return jnp.concatenate([
        jax.nn.dot_product_attention(
            q[None, g * size:(g + 1) * size], k[None], v[None], bias=bias[:, :, g * size:(g + 1) * size],
            key_value_seq_lengths=key_lengths[g:g + 1], implementation=implementation)[0]
        for g in range(groups)])
