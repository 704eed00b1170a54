"""The selectors: budgets, top-k order and ties, EPIC's per-chunk spread, score formulas."""

import numpy as np
import pytest

from prophetkv_jax import selectors


@pytest.mark.parametrize("ratio", [-0.1, 1.5, "0.2", None])
def test_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(ValueError, match="recompute ratio"):
        selectors.budget(ratio, 100)


@pytest.mark.parametrize(("ratio", "context", "expected"), [(0.2, 99, 19), (0.0, 50, 0), (1.0, 37, 37), (0.1, 9, 0),
                                                               (0.35, 180, 63), (0.7, 10, 7), (0.29, 100, 29)])
def test_budget_is_floor_of_ratio_times_context(ratio, context, expected):
    assert selectors.budget(ratio, context) == expected


def test_top_k_returns_sorted_positions_and_breaks_ties_towards_earlier_rows():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.5, 0.0])
    np.testing.assert_array_equal(selectors.top_k(scores, 3), [1, 2, 3])
    np.testing.assert_array_equal(selectors.top_k(scores, 0), [])


def test_epic_takes_chunk_heads_and_spreads_leftovers_by_offset():
    # prefix of 10 at 0..9 (never selected), chunks of 7, 5, 9 starting at 10, 17, 22.
    starts, lengths = [10, 17, 22], [7, 5, 9]
    k = selectors.budget(0.3, 10 + 21)  # 9; floor(0.3 * n) = 2, 1, 2 -> 5, leftover 4
    picked = selectors.epic(starts, lengths, 0.3, k)
    assert len(picked) == k
    # offset 1 of chunk 2 first (the only chunk with taken == 1), then offset 2 of chunks 1, 2, 3.
    np.testing.assert_array_equal(picked, [10, 11, 12, 17, 18, 19, 22, 23, 24])
    assert picked.min() >= 10


def test_epic_at_full_ratio_covers_every_chunk_and_terminates():
    picked = selectors.epic([4, 9], [5, 3], 1.0, selectors.budget(1.0, 12))
    np.testing.assert_array_equal(picked, np.arange(4, 12))


def test_score_formulas():
    rng = np.random.default_rng(0)
    fresh, cached = rng.normal(size=(6, 2, 3)), rng.normal(size=(6, 2, 3))
    received = rng.uniform(size=6)
    diff = fresh - cached
    np.testing.assert_allclose(selectors.cacheblend_scores(fresh, cached), [np.sum(d * d) for d in diff])
    np.testing.assert_allclose(
        selectors.kvshare_scores(received, fresh, cached), received * np.abs(diff).sum(axis=(1, 2))
    )
    layers = rng.uniform(size=(4, 6))
    np.testing.assert_allclose(selectors.prophetkv_scores(layers), layers.mean(axis=0))


def test_chunk_only_prophetkv_skips_the_prefix_and_budgets_chunk_rows_only():
    scores = np.array([9.0, 8.0, 0.1, 0.5, 0.3, 0.7, 0.2])  # rows 0-1: the prefix, which scores highest
    np.testing.assert_array_equal(selectors.prophetkv_chunk_rows(scores, 2, 0.4), [3, 5])  # floor(0.4 * 5) = 2
    np.testing.assert_array_equal(selectors.prophetkv_chunk_rows(scores, 2, 0.2), [5])
    np.testing.assert_array_equal(selectors.prophetkv_chunk_rows(scores, 2, 0.6), [3, 4, 5])  # not floor(0.6 * 7) = 4
    np.testing.assert_array_equal(selectors.prophetkv_chunk_rows(scores, 0, 0.3), selectors.top_k(scores, 2))
