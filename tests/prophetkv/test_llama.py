"""Cache semantics of the Flax Llama: positions, slots and padding, on a tiny random model."""

import jax
import numpy as np
import pytest

from prophetkv_jax.buckets import pad_rows
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import RopeScaling, tiny_config

CONFIG = tiny_config(num_layers=3, rope_scaling=RopeScaling(8.0, 1.0, 4.0, 64))  # as test_engine: shared compiles


@pytest.fixture(scope="module")
def params():
    return llama.init_params(CONFIG, jax.random.PRNGKey(0))


def run(params, tokens, positions, slots, cache, minimum=64):
    t, p, s = pad_rows(tokens, positions, slots, cache.capacity, minimum=minimum)
    logits, cache = llama.forward(params, t, p, cache, s, CONFIG)
    return np.asarray(logits[: len(tokens)]), cache


def test_incremental_decoding_equals_full_prefill(params):
    tokens = np.random.RandomState(0).randint(0, CONFIG.vocab_size, 24)
    full, _ = run(params, tokens, np.arange(24), np.arange(24), llama.KVCache.empty(CONFIG, 64))
    logits, cache = run(params, tokens[:10], np.arange(10), np.arange(10), llama.KVCache.empty(CONFIG, 64))
    steps = [logits]
    for i in range(10, 24):
        logits, cache = run(params, tokens[i : i + 1], [i], [i], cache, minimum=1)
        steps.append(logits)
    np.testing.assert_allclose(np.concatenate(steps), full, atol=1e-5)


def test_padding_rows_do_not_change_results_or_cache(params):
    tokens = np.random.RandomState(1).randint(0, CONFIG.vocab_size, 20)
    small, cache_small = run(params, tokens, np.arange(20), np.arange(20), llama.KVCache.empty(CONFIG, 64), minimum=32)
    big, cache_big = run(params, tokens, np.arange(20), np.arange(20), llama.KVCache.empty(CONFIG, 64), minimum=64)
    np.testing.assert_allclose(small, big, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(cache_small.valid), np.arange(64) < 20)
    np.testing.assert_allclose(np.asarray(cache_small.k), np.asarray(cache_big.k), atol=1e-6)


def test_slot_order_is_irrelevant_only_positions_matter(params):
    """Rows written to scrambled slots give the same logits: the mask comes from positions."""
    tokens = np.random.RandomState(2).randint(0, CONFIG.vocab_size, 16)
    ordered, _ = run(params, tokens, np.arange(16), np.arange(16), llama.KVCache.empty(CONFIG, 32))
    slots = np.random.RandomState(3).permutation(32)[:16]
    scrambled, _ = run(params, tokens, np.arange(16), slots, llama.KVCache.empty(CONFIG, 32))
    np.testing.assert_allclose(scrambled, ordered, atol=1e-5)


def test_later_keys_do_not_leak_into_earlier_rows(params):
    tokens = np.random.RandomState(4).randint(0, CONFIG.vocab_size, 16)
    changed = tokens.copy()
    changed[10:] = (changed[10:] + 7) % CONFIG.vocab_size
    a, _ = run(params, tokens, np.arange(16), np.arange(16), llama.KVCache.empty(CONFIG, 32))
    b, _ = run(params, changed, np.arange(16), np.arange(16), llama.KVCache.empty(CONFIG, 32))
    np.testing.assert_allclose(a[:10], b[:10], atol=1e-6)
    assert np.abs(a[10:] - b[10:]).max() > 1e-3


def test_unrolled_layers_equal_the_scanned_stack(params):
    """The decode loop's layout (per-layer weights, Python loop) computes what the scan does."""
    from prophetkv_jax.model.weights import unstack_layers

    tokens = np.random.RandomState(1).randint(0, CONFIG.vocab_size, 12)
    _, cache = run(params, tokens[:11], np.arange(11), np.arange(11), llama.KVCache.empty(CONFIG, 64))
    row = np.array([11], np.int32)
    scanned = llama.Llama(CONFIG).apply({"params": params}, tokens[11:], row, cache, row)
    per_layer = unstack_layers(params)
    assert "layers" not in per_layer and sorted(k for k in per_layer if k.startswith("layers_")) == [
        f"layers_{i}" for i in range(CONFIG.num_layers)
    ]
    unrolled = llama.Llama(CONFIG, unrolled=True).apply({"params": per_layer}, tokens[11:], row, cache, row)
    np.testing.assert_allclose(np.asarray(unrolled[0]), np.asarray(scanned[0]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(unrolled[1].k), np.asarray(scanned[1].k), atol=1e-6)
