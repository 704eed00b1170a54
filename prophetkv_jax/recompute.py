"""The one recompute kernel and the scoring passes that feed the selectors.

Recomputation carries a sorted set of rows (selected context rows plus every query row)
from the embedding through all layers; at each layer their fresh K/V are scatter-written
into the assembled cache at their slots and they attend over the blended cache with the
exact causal mask from global positions. That is ``llama.forward`` itself; this module
adds the host-side padding to shape buckets and the two scoring passes:

* ``query_attention`` (ProphetKV Stage I, and the full-prefill oracle): per-layer attention
  that the query rows pay to every slot;
* ``check_layer`` (CacheBlend, KVShare): layer 0 recomputed for all tokens, then fresh
  layer-1 V (and, for KVShare, layer-1 attention) to compare with the cached V.

Slots equal global positions in an assembled cache, so rows are addressed by position.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from prophetkv_jax.buckets import bucket_size, pad_rows
from prophetkv_jax.model import llama
from prophetkv_jax.model.attention import blocked_attention
from prophetkv_jax.model.config import LlamaConfig

# Reuse passes carry few rows (the query: tens of tokens) over a long cache: padding them to 64
# rows made 16 query rows cost 4x their attention and projections. Full prefill keeps 64.
FEW_ROWS_MINIMUM = 16


def _padded(tokens: np.ndarray, positions: np.ndarray, capacity: int, minimum: int = 64):
    return pad_rows(tokens, positions, positions, capacity, minimum)


def recompute_rows(
    params: llama.Params, config: LlamaConfig, cache: llama.KVCache,
    tokens: np.ndarray, positions: np.ndarray, min_rows: int = 64, last_only: bool = False,
    donate: bool = False, causal_prefix: bool = False,
) -> tuple[np.ndarray, llama.KVCache]:
    """Carry rows through every layer, scattering their K/V into ``cache``; logits of the rows
    (of the last row only with ``last_only``, all a prefill needs).

    Rows are padded to a shape bucket of at least ``min_rows`` (1 when decoding). With
    ``donate`` the cache is updated in its own buffers and must not be used again.
    ``causal_prefix`` (a full prefill: positions 0..n-1) lets accelerators use a causal kernel.
    """
    n = len(tokens)
    if causal_prefix and not np.array_equal(positions, np.arange(n)):
        raise ValueError("causal_prefix needs the rows at positions 0..n-1 in order")
    rows, pos, slots = _padded(tokens, positions, cache.capacity, min_rows)
    logits, cache = llama.forward(
        params, rows, pos, cache, slots, config, _last_row(n, last_only), donate, causal_prefix)
    return logits if last_only else logits[:n], cache


def _last_row(n: int, last_only: bool) -> np.ndarray | None:
    return np.array([n - 1], np.int32) if last_only else None


def query_attention(
    params: llama.Params, config: LlamaConfig, cache: llama.KVCache,
    tokens: np.ndarray, positions: np.ndarray, score_from: int, donate: bool = False,
) -> tuple[np.ndarray, np.ndarray, llama.KVCache]:
    """Run rows through all layers and return per-layer attention [L, S] paid by rows at
    positions >= ``score_from`` (the query segment), with the last row's logits and the cache.

    Against an assembled cache with only the query rows this is ProphetKV's Stage I;
    over all rows of an empty cache it is the full-prefill oracle.
    """
    n = len(tokens)
    rows, pos, slots = _padded(tokens, positions, cache.capacity, FEW_ROWS_MINIMUM)
    score_rows = ((pos >= score_from) & (slots >= 0)).astype(np.float32)
    logits, cache, scores = llama.forward_with_scores(
        params, rows, pos, cache, slots, score_rows, config, _last_row(n, True), donate
    )
    return np.asarray(scores), logits, cache


@functools.partial(jax.jit, static_argnames=("config", "rows"), donate_argnames=("cache",))
def _stage_one_pick(params, query_tokens, query_pos, query_slots, score_rows, cache, tokens, first_row, context,
                    budget, total, config, rows):
    """Stage I, the layer-mean scores, their top ``budget`` context rows in [first_row, context) and the
    recompute rows ([selected | query | padding], ``rows`` long): one program, nothing leaves the device.

    ``budget``, ``context`` and ``total`` are traced, so requests of one shape bucket share the compile:
    top-k runs for ``rows`` (>= budget) entries and the first ``budget`` are kept."""
    _, cache, scores = llama.Llama(config).apply(  # its logits are unused: XLA drops the LM head
        {"params": params}, query_tokens, query_pos, cache, query_slots, score_rows, jnp.zeros((1,), jnp.int32))
    slot = jnp.arange(cache.capacity)
    alpha = jnp.where((slot >= first_row) & (slot < context), scores.mean(axis=0), -jnp.inf)
    _, picked = jax.lax.top_k(alpha, rows)  # ties go to the earlier slot, as selectors.top_k
    index = jnp.arange(rows)
    selected = jnp.sort(jnp.where(index < budget, picked, jnp.iinfo(jnp.int32).max))
    positions = jnp.where(index < budget, selected, context + index - budget)
    real = index < total - context + budget
    positions = jnp.where(real, positions, 0).astype(jnp.int32)
    return tokens[positions] * real, positions, jnp.where(real, positions, -1), selected, cache


def stage_one_and_rows(
    params: llama.Params, config: LlamaConfig, cache: llama.KVCache, tokens: np.ndarray,
    first_row: int, context: int, budget: int,
) -> tuple[llama.KVCache, tuple[jax.Array, jax.Array, jax.Array], jax.Array, int]:
    """ProphetKV's Stage I over the query rows of ``tokens`` (positions ``context``..), then on the device
    the top ``budget`` rows of [first_row, context) by layer-mean score: the cache (``cache`` donated),
    the padded recompute rows (tokens, positions, write slots) for :func:`recompute_padded`, the
    selected rows (the first ``budget`` entries, sorted) and the recompute's real row count."""
    total = len(tokens)
    query = np.arange(context, total)
    q_rows, q_pos, q_slots = _padded(tokens[context:], query, cache.capacity, FEW_ROWS_MINIMUM)
    score_rows = ((q_pos >= context) & (q_slots >= 0)).astype(np.float32)
    count = budget + len(query)
    rows = bucket_size(count, 64)
    padded_tokens = np.zeros((cache.capacity,), np.int32)
    padded_tokens[:total] = tokens
    row_tokens, positions, slots, selected, cache = _stage_one_pick(
        params, q_rows, q_pos, q_slots, score_rows, cache, padded_tokens, np.int32(first_row), np.int32(context),
        np.int32(budget), np.int32(total), config, rows)
    return cache, (row_tokens, positions, slots), selected, count


def recompute_padded(
    params: llama.Params, config: LlamaConfig, cache: llama.KVCache,
    rows: tuple[jax.Array, jax.Array, jax.Array], count: int,
) -> tuple[jax.Array, llama.KVCache]:
    """``recompute_rows(..., last_only=True, donate=True)`` for rows already padded on the device
    (:func:`stage_one_and_rows`): the same compiled program, no host round trip for the rows."""
    row_tokens, positions, slots = rows
    return llama.forward(params, row_tokens, positions, cache, slots, config, _last_row(count, True), True)


@dataclasses.dataclass(frozen=True)
class CheckLayer:
    """What CacheBlend/KVShare need after layer 0 was recomputed for every token."""

    hidden: jax.Array  # [T_padded, D] layer-0 output of every row
    v_fresh: np.ndarray  # [T, KV, hd] layer-1 V from the recomputed layer-0 output
    v_cached: np.ndarray  # [T, KV, hd] layer-1 V in the assembled cache
    attention_received: np.ndarray | None  # [T] column sums of head-mean layer-1 attention
    cache: llama.KVCache  # assembled cache with layer 0 fully recomputed


def _layer_range(params: llama.Params, start: int, stop: int) -> llama.Params:
    return {"layers": jax.tree.map(lambda x: x[start:stop], params["layers"])}


@functools.partial(jax.jit, static_argnames=("config", "with_attention"), donate_argnames=("cache",))
def _check_layer(params, tokens, positions, cache, slots, config, with_attention):
    model = llama.Llama(config)
    cache, rows = llama.prepare_rows(cache, positions, slots, config)
    embedded = model.apply({"params": params}, tokens, method="embed_tokens")
    hidden, cache, _ = model.apply(
        {"params": _layer_range(params, 0, 1)}, embedded, cache, rows, jnp.arange(1), method="run_layers"
    )
    second = jax.tree.map(lambda x: x[1], params["layers"])
    q1, k1, v1 = llama.layer_qkv(second, hidden, rows.rope, config)
    v_cached = cache.v[1][jnp.clip(slots, 0)]
    received = None
    if with_attention:  # layer-1 attention among the rows themselves (not the cache)
        row_valid = slots >= 0
        _, received = blocked_attention(
            q1, k1[None], v1[None], jnp.zeros((), jnp.int32), positions, positions, row_valid,
            row_valid.astype(jnp.float32),
        )
    return hidden, v1, v_cached, received, cache


def check_layer(
    params: llama.Params, config: LlamaConfig, cache: llama.KVCache,
    tokens: np.ndarray, positions: np.ndarray, with_attention: bool,
) -> CheckLayer:
    """Layer 0 for all rows (written into the cache), then fresh vs cached layer-1 V.

    The cache is donated: pass one the caller no longer needs (an assembled cache).
    """
    if config.num_layers < 2:
        raise ValueError("CacheBlend/KVShare select at layer 1 and need a model with >= 2 layers")
    n = len(tokens)
    rows, pos, slots = _padded(tokens, positions, cache.capacity)
    hidden, v_fresh, v_cached, received, cache = _check_layer(
        params, rows, pos, cache, slots, config, with_attention
    )
    return CheckLayer(
        hidden=hidden,
        v_fresh=np.asarray(v_fresh[:n]),
        v_cached=np.asarray(v_cached[:n]),
        attention_received=None if received is None else np.asarray(received[:n]),
        cache=cache,
    )


@functools.partial(jax.jit, static_argnames=("config",), donate_argnames=("cache",))
def _continue_from_layer_1(params, hidden, row_index, positions, cache, slots, config, last_row):
    model = llama.Llama(config)
    cache, rows = llama.prepare_rows(cache, positions, slots, config)
    h, cache, _ = model.apply(
        {"params": _layer_range(params, 1, config.num_layers)}, hidden[row_index], cache, rows,
        jnp.arange(1, config.num_layers), method="run_layers",
    )
    return model.apply({"params": params}, h[last_row], method="logits"), cache


def continue_from_layer_1(
    params: llama.Params, config: LlamaConfig, check: CheckLayer,
    row_index: np.ndarray, positions: np.ndarray,
) -> tuple[np.ndarray, llama.KVCache]:
    """Carry the chosen rows (indices into the check pass's rows) through layers 1..L-1;
    logits of the last row. ``check.cache`` is donated (updated in place)."""
    n = len(row_index)
    index, pos, slots = _padded(row_index, positions, check.cache.capacity)
    return _continue_from_layer_1(
        params, check.hidden, index, pos, check.cache, slots, config, _last_row(n, True)
    )
