"""PSNR / SSIM must equal scikit-image's (the papers' numbers come from it)."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cea_jax import metrics


def _pair(seed: int, shape=(37, 52, 3)):
    rng = np.random.default_rng(seed)
    clean = rng.random(shape)
    noisy = np.clip(clean + rng.normal(0, 0.1, shape), 0, 1)
    return clean, noisy


@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_matches_skimage(seed):
    clean, noisy = _pair(seed)
    expected = peak_signal_noise_ratio(clean, noisy, data_range=1)
    assert metrics.psnr(clean, noisy) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("window,kwargs", [
    ("uniform", {}),  # PromptIR's call
    ("gaussian", {"gaussian_weights": True}),  # MoCE-IR's call: sigma 1.5, sample covariance
])
def test_ssim_matches_skimage(window, kwargs):
    for seed in range(3):
        clean, noisy = _pair(seed)
        expected = structural_similarity(clean, noisy, data_range=1, channel_axis=-1, **kwargs)
        assert metrics.ssim(clean, noisy, window=window) == pytest.approx(expected, abs=1e-10)


def test_batched_metrics_equal_per_image():
    a = np.stack([_pair(s)[0] for s in range(3)])
    b = np.stack([_pair(s)[1] for s in range(3)])
    for fn in (metrics.psnr, metrics.ssim):
        batched = fn(a, b)
        assert batched.shape == (3,)
        np.testing.assert_allclose(batched, [fn(x, y) for x, y in zip(a, b)], rtol=1e-12)


def test_identical_images_are_perfect():
    clean, _ = _pair(0)
    assert metrics.ssim(clean, clean) == pytest.approx(1.0)
    assert np.isinf(metrics.psnr(clean, clean))


def test_bad_inputs_are_named():
    clean, noisy = _pair(0)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(clean, noisy[:-1])
    with pytest.raises(ValueError, match="unknown SSIM window"):
        metrics.ssim(clean, noisy, window="box")
    with pytest.raises(ValueError, match="smaller than"):
        metrics.ssim(clean[:5, :5], noisy[:5, :5], window="gaussian")


def test_region_metrics_are_the_metrics_of_the_masked_pixels():
    clean, noisy = _pair(2)
    mask = np.zeros(clean.shape[:2], bool)
    mask[5:30, 10:40] = True
    mse = np.mean((clean[mask] - noisy[mask]) ** 2)
    assert metrics.region_psnr(clean, noisy, mask) == pytest.approx(10 * np.log10(1 / mse), rel=1e-12)
    _, full_map = structural_similarity(clean, noisy, data_range=1, channel_axis=-1, full=True)
    expected = full_map.mean(axis=-1)[mask].mean()  # the mask stays 3 px (half the 7x7 window) off the border
    assert metrics.region_ssim(clean, noisy, mask) == pytest.approx(expected, abs=1e-10)
    whole = np.ones(clean.shape[:2], bool)
    assert metrics.region_ssim(clean, noisy, whole) == pytest.approx(float(metrics.ssim(clean, noisy)), abs=1e-12)
