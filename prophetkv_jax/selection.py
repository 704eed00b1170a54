"""Which context rows a method recomputes, and the recompute: the selection step of a prefill.

Every method starts from the same assembled cache and ends in one recompute pass (Stage II) over
its selected context rows plus every query row; they differ in how the rows are picked:

* ``naive``: none; ``epic``: the first rows of every chunk, from the layout alone;
* ``prophetkv`` / ``prophetkv_chunks``: Stage I, the query's attention to every slot averaged over
  layers (``recompute.query_attention``), then the top-k rows;
* ``cacheblend`` / ``kvshare``: layer 0 recomputed for every row and the layer-1 V deviation (and
  attention) scored (``recompute.check_layer``); their recompute carries on from layer 1.

``full``, the reference, recomputes every row over a blank cache instead of an assembled one.
The scoring rules themselves are ``selectors``; the model passes are ``recompute``.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from prophetkv_jax import recompute, selectors
from prophetkv_jax.layout import Layout
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import LlamaConfig

# Logits of the last row, the cache, and the recomputed context rows, sorted: a NumPy array, or a device
# array chosen on the device whose entries past the selected ones are >= the context length.
Selection = tuple[jax.Array, llama.KVCache, np.ndarray | jax.Array]


def check(method: str, ratio: float) -> None:
    """Refuse an unknown method or a ratio outside [0, 1] before any work is done."""
    if method not in selectors.METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {selectors.METHODS}")
    selectors.check_ratio(ratio)


def full_prefill(params: llama.Params, config: LlamaConfig, layout: Layout, blank: llama.KVCache) -> Selection:
    """Every row computed into ``blank`` (donated), no stored KV used: the reference."""
    tokens = layout.tokens()
    logits, cache = recompute.recompute_rows(
        params, config, blank, tokens, np.arange(len(tokens)), last_only=True, donate=True, causal_prefix=True,
    )
    return logits, cache, np.arange(layout.num_context)


def select_and_recompute(params: llama.Params, config: LlamaConfig, layout: Layout, cache: llama.KVCache,
                         method: str, ratio: float, timings: dict[str, float]) -> Selection:
    """Pick ``method``'s rows in the assembled ``cache`` (donated) and recompute them with the query;
    the time the choice took goes to ``timings["select"]``."""
    tokens, c = layout.tokens(), layout.num_context
    k = selectors.budget(ratio, c)
    query = np.arange(c, layout.total)
    clock = time.perf_counter()
    if method in ("cacheblend", "kvshare"):
        checked = recompute.check_layer(params, config, cache, tokens, np.arange(layout.total),
                                        with_attention=method == "kvshare")
        if method == "cacheblend":
            scores = selectors.cacheblend_scores(checked.v_fresh[:c], checked.v_cached[:c])
        else:
            scores = selectors.kvshare_scores(checked.attention_received[:c], checked.v_fresh[:c], checked.v_cached[:c])
        selected = selectors.top_k(scores, k)
        timings["select"] = time.perf_counter() - clock
        rows = np.concatenate([selected, query])
        logits, cache = recompute.continue_from_layer_1(params, config, checked, rows, rows)
        return logits, cache, selected
    if method == "naive":
        selected = np.zeros((0,), np.int64)
    elif method == "epic":
        selected = selectors.epic(list(layout.starts[1:-1]), [len(s) for s in layout.segments[1:-1]], ratio, k)
    else:  # prophetkv, prophetkv_chunks: Stage I, top-k and the recompute rows stay on the device
        # Stage I writes the query rows' K/V in place; the recompute pass below rewrites
        # every one of those slots before reading them, so its cache carries straight on.
        first = 0 if method == "prophetkv" else layout.starts[1]
        budget = k if method == "prophetkv" else selectors.budget(ratio, c - first)
        cache, rows, selected, count = recompute.stage_one_and_rows(params, config, cache, tokens, first, c, budget)
        timings["select"] = time.perf_counter() - clock  # dispatch only: the work is asynchronous
        logits, cache = recompute.recompute_padded(params, config, cache, rows, count)
        return logits, cache, selected
    timings["select"] = time.perf_counter() - clock
    rows = np.concatenate([selected, query]).astype(np.int32)
    logits, cache = recompute.recompute_rows(params, config, cache, tokens[rows], rows, last_only=True, donate=True,
                                             min_rows=recompute.FEW_ROWS_MINIMUM)
    return logits, cache, selected


def oracle_scores(params: llama.Params, config: LlamaConfig, layout: Layout, blank: llama.KVCache) -> np.ndarray:
    """The query's attention to each context row in a real full prefill into ``blank`` (donated),
    averaged over layers: the rows Stage I tries to predict."""
    tokens, c = layout.tokens(), layout.num_context
    scores, _, _ = recompute.query_attention(
        params, config, blank, tokens, np.arange(layout.total), score_from=c, donate=True
    )
    return selectors.prophetkv_scores(scores)[:c]
