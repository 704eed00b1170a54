"""Shape buckets: padded lengths and bounds-checked row padding."""

import numpy as np
import pytest

from prophetkv_jax.buckets import bucket_size, pad_rows


def test_pad_rows_refuses_out_of_range_slots():
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        pad_rows(np.zeros(3), np.arange(3), np.array([0, 1, 8]), capacity=8)


def test_bucket_size():
    assert [bucket_size(n, 16) for n in (0, 1, 16, 17, 100, 1024, 1025, 4100)] == [
        16, 16, 16, 32, 128, 1024, 1280, 4352
    ]
