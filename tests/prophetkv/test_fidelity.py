"""Fidelity to full prefill: teacher-forced log-probs and the KL / top-1 arithmetic."""

import jax
import numpy as np
import pytest

from prophetkv_jax import fidelity, recompute
from prophetkv_jax.buckets import bucket_size
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import tiny_config
from prophetkv_jax.pipeline import Engine, RagPrompt

CONFIG = tiny_config(num_layers=2)


@pytest.fixture(scope="module")
def engine():
    return Engine(llama.init_params(CONFIG, jax.random.PRNGKey(3)), CONFIG, max_new_tokens=16)


def prompt() -> RagPrompt:
    rng = np.random.default_rng(1)
    tokens = lambda n: rng.integers(2, CONFIG.vocab_size, n)  # noqa: E731
    return RagPrompt(prefix=tokens(4), chunks=(tokens(10), tokens(12)), query=tokens(5))


def numpy_log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1, keepdims=True)) - x.max(-1, keepdims=True)


def test_teacher_forcing_equals_one_prefill_of_prompt_plus_answer(engine):
    """Rows of a single ordinary prefill over prompt + answer give the same next-token log-probs."""
    p = prompt()
    full = engine.prefill(p, "full")
    answer = [7, 9, 11, 13, 15]
    got = fidelity.answer_log_probs(engine.params, CONFIG, full, answer)
    tokens = np.concatenate([engine.layout(p).tokens(), answer[:-1]])
    cache = llama.KVCache.empty(CONFIG, bucket_size(len(tokens)))
    logits, _ = recompute.recompute_rows(engine.params, CONFIG, cache, tokens, np.arange(len(tokens)))
    n = full.next_position
    expected = numpy_log_softmax(np.asarray(logits)[n - 1 : n - 1 + len(answer)])
    assert got.shape == (5, CONFIG.vocab_size)
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_only_the_first_positions_are_compared_and_the_cache_is_left_alone(engine):
    full = engine.prefill(prompt(), "full")
    before = np.asarray(full.cache.k).copy()
    long = list(range(2, 40))
    assert fidelity.answer_log_probs(engine.params, CONFIG, full, long).shape[0] == fidelity.ANSWER_POSITIONS
    assert fidelity.answer_log_probs(engine.params, CONFIG, full, [5]).shape[0] == 1
    np.testing.assert_array_equal(np.asarray(full.cache.k), before)
    with pytest.raises(ValueError, match="empty"):
        fidelity.answer_log_probs(engine.params, CONFIG, full, [])


def test_kl_and_top1_against_hand_computed_values():
    p = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    q = np.log(np.array([[0.25, 0.5, 0.25], [0.2, 0.7, 0.1]]))
    result = fidelity.compare(p, q)
    kl0 = 0.5 * np.log(2) + 0.25 * np.log(0.5)
    kl1 = 0.1 * np.log(0.5) + 0.8 * np.log(0.8 / 0.7)
    assert result.kl == pytest.approx((kl0 + kl1) / 2)
    assert result.top1_agreement == 0.5  # position 0's argmax moved, position 1's did not
    assert fidelity.compare(p, p).kl == pytest.approx(0.0, abs=1e-12)
    assert fidelity.oracle_overlap(np.array([1, 2, 3, 9]), np.array([2, 3, 4, 5])) == 0.5
