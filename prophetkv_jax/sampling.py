"""Sampling settings, checked without JAX so the command line refuses a bad one at once."""

from __future__ import annotations

import math


def check_sampling(temperature: float, top_p: float) -> None:
    """Written so NaN fails every comparison: NaN is refused, never taken for a valid setting."""
    if not 0 <= temperature < math.inf:
        raise ValueError(f"--temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")
