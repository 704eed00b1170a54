"""Shape buckets: padded lengths for rows and cache slots, so a new length rarely compiles anew.

Every jitted pass (prefill, Stage I, recompute, decode, segment encoding) sees its rows and its
cache capacity rounded up to a bucket; lengths inside one bucket share one compiled program.
"""

from __future__ import annotations

import numpy as np

POWER_OF_TWO_LIMIT, BUCKET_STEP = 1024, 256


def bucket_size(n: int, minimum: int = 64) -> int:
    """Padded length for n rows or slots: lengths within a bucket share one compile.

    Powers of two up to 1024, then multiples of 256: padding rows cost as much as real
    ones, so a 2.1K-token prompt pads to 2304, not 4096 (at most 1/8 extra work above 2K).
    """
    if n < 0:
        raise ValueError(f"length must be >= 0, got {n}")
    if n > POWER_OF_TWO_LIMIT:
        return max(minimum, -(-n // BUCKET_STEP) * BUCKET_STEP)
    return max(minimum, 1 << max(0, n - 1).bit_length())


def pad_rows(
    tokens: np.ndarray, positions: np.ndarray, write_slots: np.ndarray, capacity: int,
    minimum: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad a batch of rows to its bucket (padding rows get slot -1) after bounds-checking slots.

    Scatter silently drops out-of-range writes, so a bad slot is refused here instead.
    """
    tokens, positions, write_slots = (np.asarray(a, np.int32) for a in (tokens, positions, write_slots))
    if not (tokens.shape == positions.shape == write_slots.shape and tokens.ndim == 1):
        raise ValueError(
            f"tokens, positions and write_slots must be equal-length vectors, got shapes "
            f"{tokens.shape}, {positions.shape}, {write_slots.shape}"
        )
    if write_slots.size and (write_slots.min() < 0 or write_slots.max() >= capacity):
        raise ValueError(
            f"write slots must lie in [0, {capacity}) (the cache capacity), got "
            f"[{write_slots.min()}, {write_slots.max()}]"
        )
    padded = bucket_size(tokens.size, minimum)
    extra = padded - tokens.size
    return (
        np.pad(tokens, (0, extra)),
        np.pad(positions, (0, extra)),
        np.pad(write_slots, (0, extra), constant_values=-1),
    )
