"""Random training windows: the plain crop without jitter, downscaling only, never below the crop."""

import numpy as np
import pytest

from cea_jax.data.windows import random_window


def _ramp(h=256, w=256):
    """uint8 RGB whose value is the column index (so a window's column span is readable)."""
    assert w <= 256
    return np.broadcast_to(np.arange(w, dtype=np.uint8)[None, :, None], (h, w, 3)).copy()


def test_no_jitter_is_a_plain_crop_at_the_drawn_position():
    image = np.random.default_rng(1).integers(0, 256, (90, 120, 3), np.uint8)
    out, depth = random_window(image, None, np.random.default_rng(7), 72)
    rng = np.random.default_rng(7)
    top, left = int(rng.integers(90 - 72 + 1)), int(rng.integers(120 - 72 + 1))
    np.testing.assert_array_equal(out, image[top : top + 72, left : left + 72])
    assert depth is None


def test_a_half_scale_window_covers_twice_the_scene_in_the_same_pixels():
    image = _ramp(w=250)
    depth = np.linspace(0, 1, 256 * 250, dtype=np.float32).reshape(256, 250)
    out, out_depth = random_window(image, depth, np.random.default_rng(0), 64, scales=(0.5, 0.5))
    assert out.shape == (64, 64, 3) and out_depth.shape == (64, 64) and out_depth.dtype == np.float32
    assert int(out[0, -1, 0]) - int(out[0, 0, 0]) == pytest.approx(127, abs=3)
    plain, _ = random_window(image, None, np.random.default_rng(0), 64)
    assert int(plain[0, -1, 0]) - int(plain[0, 0, 0]) == 63


def test_jittered_windows_vary_in_scale_and_never_fall_below_min_size():
    image = _ramp(h=100, w=100)
    spans = set()
    for seed in range(20):
        out, _ = random_window(image, None, np.random.default_rng(seed), 72, scales=(0.5, 1.0), min_size=48)
        assert min(out.shape[:2]) >= 48 and max(out.shape[:2]) <= 72
        spans.add(int(out[0, -1, 0]) - int(out[0, 0, 0]))
    assert len(spans) > 5


@pytest.mark.parametrize("scales", [(0.0, 1.0), (0.8, 0.5), (0.5, 1.5)])
def test_bad_scale_ranges_are_refused(scales):
    with pytest.raises(ValueError, match="scales must satisfy"):
        random_window(_ramp(), None, np.random.default_rng(0), 64, scales=scales)
