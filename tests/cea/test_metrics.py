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
    ("uniform", {}),
    ("gaussian", {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}),
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
