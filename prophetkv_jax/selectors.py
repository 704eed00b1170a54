"""Which context rows each method recomputes: small pure functions over scores and layout.

Every method shares one recompute kernel; they differ only in the set returned here.
Sets are sorted arrays of global context positions, of size ``budget(ratio, C)``.
"""

from __future__ import annotations

import fractions
import math

import numpy as np

METHODS = ("full", "naive", "cacheblend", "epic", "kvshare", "prophetkv", "prophetkv_chunks")


def check_ratio(ratio: float) -> float:
    if not (isinstance(ratio, (int, float)) and 0.0 <= ratio <= 1.0):
        raise ValueError(f"recompute ratio must be a number in [0, 1], got {ratio!r}")
    return float(ratio)


def floor_share(ratio: float, count: int) -> int:
    """floor(p * n) with p taken as the decimal it was written as: 0.35 x 180 is 63, where
    binary floating point gives 62.99999... and floor 62."""
    return math.floor(fractions.Fraction(repr(check_ratio(ratio))) * count)


def budget(ratio: float, num_context: int) -> int:
    """k = floor(p * C) context rows may be recomputed (query rows are free)."""
    return floor_share(ratio, num_context)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, sorted by position; ties go to earlier positions."""
    scores = np.asarray(scores, np.float64)
    if k <= 0:
        return np.zeros((0,), np.int64)
    order = np.lexsort((np.arange(scores.size), -scores))  # by score desc, then position asc
    return np.sort(order[:k])


def epic(chunk_starts: list[int], chunk_lengths: list[int], ratio: float, k: int) -> np.ndarray:
    """EPIC/LegoLink: the first floor(p * len) tokens of every chunk (never the prefix).

    The global budget ``k`` = floor(p * C) counts the prefix too, so floor(p * len) per
    chunk can leave budget over; it is handed out by ascending in-chunk offset (offset
    j of every chunk, in chunk order, before offset j + 1 of any).
    """
    taken = [min(n, floor_share(ratio, n)) for n in chunk_lengths]
    leftovers = min(k, sum(chunk_lengths)) - sum(taken)
    for offset in range(max(chunk_lengths, default=0)):
        for j, n in enumerate(chunk_lengths):
            if leftovers > 0 and taken[j] == offset < n:
                taken[j] += 1
                leftovers -= 1
    picked = [np.arange(start, start + t) for start, t in zip(chunk_starts, taken)]
    return np.sort(np.concatenate(picked)) if picked else np.zeros((0,), np.int64)


def cacheblend_scores(v_fresh: np.ndarray, v_cached: np.ndarray) -> np.ndarray:
    """Sum over heads and dims of (V_new - V_cached)^2 at the check layer, per token."""
    diff = np.asarray(v_fresh, np.float64) - np.asarray(v_cached, np.float64)
    return np.sum(diff * diff, axis=tuple(range(1, diff.ndim)))


def kvshare_scores(attention_received: np.ndarray, v_fresh: np.ndarray, v_cached: np.ndarray) -> np.ndarray:
    """Attention each token receives (column sum, head mean) times sum |V_new - V_cached|."""
    diff = np.abs(np.asarray(v_fresh, np.float64) - np.asarray(v_cached, np.float64))
    return np.asarray(attention_received, np.float64) * np.sum(diff, axis=tuple(range(1, diff.ndim)))


def prophetkv_scores(layer_scores: np.ndarray) -> np.ndarray:
    """Stage I fusion: alpha(t) = mean over layers of the query's attention to t."""
    return np.asarray(layer_scores, np.float64).mean(axis=0)


def prophetkv_chunk_rows(scores: np.ndarray, first_chunk_row: int, ratio: float) -> np.ndarray:
    """Chunk-only ProphetKV (not the spec's ProphetKV, which counts the prefix in C): the prefix
    segment is cached at its true positions with nothing before it, so its KV is already exact;
    only chunk rows are candidates, and the budget is floor(p * C_chunks)."""
    chunk_scores = np.asarray(scores)[first_chunk_row:]
    return first_chunk_row + top_k(chunk_scores, budget(ratio, chunk_scores.size))
