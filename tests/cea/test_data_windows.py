"""Random training windows: the plain crop without jitter, downscaling only, never below the crop;
recoloured crops are the plain ones in new colours."""

import numpy as np
import pytest

from cea_jax.data import catalog
from cea_jax.data.sources import TASKS
from cea_jax.data.windows import GAIN_RANGE, random_window, recolour
from cea_jax.train_config import TrainConfig


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


def test_recolour_reorders_the_channels_and_tints_them_keeping_one_whole():
    image = np.random.default_rng(3).integers(0, 256, (32, 40, 3), np.uint8)
    out = recolour(image, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    order = rng.permutation(3)
    gains = rng.uniform(*GAIN_RANGE, size=3).astype(np.float32)
    gains /= gains.max()
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, np.round(image[..., order] * gains).astype(np.uint8))
    assert len(set(order.tolist())) == 3 and gains.max() == 1.0 and gains.min() >= GAIN_RANGE[0]


def test_recoloured_training_crops_are_the_plain_crops_in_new_colours_and_degraded_after():
    """Same windows with and without recolouring (the colours are drawn after the window); every
    recoloured clean channel is a plain channel times a gain, and the rain is added to the recoloured one."""
    spec = catalog.parse_data("embedded")
    plain = catalog.train_source(spec, "aio3", seed=0, crop=32)
    recoloured = catalog.train_source(spec, "aio3", seed=0, crop=32, recolour=True)
    for index in (0, 3, 5, 13, 26):  # denoise and derain records of several photos
        a, b = plain[index], recoloured[index]
        assert a["clean"].shape == b["clean"].shape and np.abs(b["clean"].astype(int) - a["clean"]).max() > 10
        source = a["clean"].astype(np.float64)
        order = []
        for channel in range(3):
            ratios = [np.sum(b["clean"][..., channel] * source[..., c]) / max(np.sum(source[..., c] ** 2), 1.0)
                      for c in range(3)]
            fits = [np.abs(b["clean"][..., channel] - ratios[c] * source[..., c]).max() for c in range(3)]
            order.append(int(np.argmin(fits)))
            assert min(fits) <= 1.0 and GAIN_RANGE[0] - 0.02 <= ratios[order[-1]] <= 1.02
        if TASKS[int(b["task"])] == "denoise":  # noise is added later, on the crop
            np.testing.assert_array_equal(b["degraded"], b["clean"])
        else:
            assert np.abs(b["degraded"].astype(int) - b["clean"]).max() > 20


def test_recolouring_a_folder_of_degraded_pairs_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pairs degraded already"):
        TrainConfig(data=str(tmp_path), recolour=True)
    with pytest.raises(ValueError, match="pairs degraded already"):  # a library caller of the source too
        catalog.train_source(catalog.parse_data(str(tmp_path)), "aio3", seed=0, crop=32, recolour=True)
