"""Paired comparisons of two methods on the same prompts, and Holm's adjustment over a family of them.

Per-prompt differences of KL are heavy-tailed: a few prompts move the mean, so the interval
of the mean can straddle 0 while most pairs go one way. The Wilcoxon signed-rank test works
on ranks and sees that; Holm's step-down procedure keeps the chance of any false claim
across all the comparisons made at once at 5%. Zero differences are dropped by Wilcoxon's
test and kept (ranked) by Pratt's; both are reported, so a verdict that rests on the choice shows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ALPHA = 0.05
# Differences below this are float noise (p = 1 reproduces full prefill to KL < 1e-10) and count as ties.
NOISE = 1e-9


@dataclasses.dataclass(frozen=True)
class Paired:
    """One comparison: differences (ours - theirs) over the pairs, with their bootstrap means."""

    diffs: np.ndarray
    draws: np.ndarray  # bootstrap resamples of the mean difference

    @classmethod
    def of(cls, diffs: np.ndarray, rounds: int = 4000, seed: int = 0) -> "Paired":
        diffs = np.asarray(diffs, np.float64)
        diffs = np.where(np.abs(diffs) < NOISE, 0.0, diffs)
        draws = np.random.default_rng(seed).choice(diffs, (rounds, diffs.size)).mean(axis=1)
        return cls(diffs, draws)

    def interval(self, level: float = 1 - ALPHA) -> tuple[float, float]:
        """Percentile-bootstrap interval of the mean difference at ``level``."""
        tail = 100 * (1 - level) / 2
        return float(np.percentile(self.draws, tail)), float(np.percentile(self.draws, 100 - tail))

    def wilcoxon_p(self) -> float:
        """Two-sided Wilcoxon signed-rank p-value, zero differences dropped (1.0 when all are zero):
        exact for up to 50 untied differences, else the normal approximation with tie correction
        (scipy's default would run a random permutation test on small tied samples)."""
        from scipy.stats import wilcoxon

        nonzero = self.diffs[self.diffs != 0]
        if nonzero.size == 0:
            return 1.0
        untied = np.unique(np.abs(nonzero)).size == nonzero.size
        method = "exact" if untied and nonzero.size <= 50 else "approx"
        return float(wilcoxon(nonzero, alternative="two-sided", method=method).pvalue)

    def pratt_p(self) -> float:
        """Two-sided signed-rank p with Pratt's handling of zero differences: they are ranked with the
        others and then left out of the statistic, so many ties (e.g. top-1 agreement, where most prompts
        agree on every position) weigh against significance instead of vanishing. Equal to ``wilcoxon_p``
        when no difference is zero; the normal approximation otherwise (1.0 when all are zero)."""
        from scipy.stats import wilcoxon

        if not np.any(self.diffs):
            return 1.0
        if np.all(self.diffs != 0):
            return self.wilcoxon_p()
        return float(wilcoxon(self.diffs, zero_method="pratt", alternative="two-sided", method="approx").pvalue)

    def summary(self) -> dict[str, float | int]:
        low, high = self.interval()
        return {"mean": float(self.diffs.mean()), "low": low, "high": high, "positive": int(np.sum(self.diffs > 0)),
                "negative": int(np.sum(self.diffs < 0)), "zero": int(np.sum(self.diffs == 0)),
                "p": self.wilcoxon_p(), "p_pratt": self.pratt_p()}


def holm(p_values: list[float], alpha: float = ALPHA) -> tuple[list[float], list[float]]:
    """Holm-adjusted p-values and the level each test is held to: sorted by p, the i-th smallest
    (from 0) is tested at alpha / (m - i); adjusted p = running max of (m - i) * p, capped at 1."""
    m = len(p_values)
    adjusted, levels = [0.0] * m, [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index], levels[index] = running, alpha / (m - rank)
    return adjusted, levels
