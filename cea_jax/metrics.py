"""PSNR and SSIM on RGB images in [0, 1], numerically as scikit-image computes them.

The papers report ``skimage.metrics`` values (PromptIR: SSIM with a uniform 7x7 window
and sample covariance; MoCE-IR: the Gaussian-window variant of Wang et al.), so these are
re-implemented in float64 numpy with the same constants and border handling and
tested against scikit-image. Inputs are [..., H, W, C] arrays; leading axes are batch.
"""

from __future__ import annotations

import numpy as np

SSIM_WINDOWS = ("uniform", "gaussian")
_K1, _K2 = 0.01, 0.03
_GAUSSIAN_SIGMA, _GAUSSIAN_TRUNCATE = 1.5, 3.5


def _check(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    if x.ndim < 3:
        raise ValueError(f"expected [..., H, W, C] images, got shape {x.shape}")
    return x, y


def psnr(image_true: np.ndarray, image_test: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """10 log10(data_range^2 / MSE) per image (MSE over H, W, C); shape = the leading axes."""
    x, y = _check(image_true, image_test)
    mse = np.mean((x - y) ** 2, axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def _window(kind: str) -> np.ndarray:
    if kind == "uniform":
        return np.full(7, 1.0 / 7)
    if kind == "gaussian":
        radius = int(_GAUSSIAN_TRUNCATE * _GAUSSIAN_SIGMA + 0.5)
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / _GAUSSIAN_SIGMA) ** 2)
        return taps / taps.sum()
    raise ValueError(f"unknown SSIM window {kind!r}; expected one of {SSIM_WINDOWS}")


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation over the H and W axes keeping only fully covered positions.

    scikit-image filters with reflected borders and then discards a (win - 1) / 2 border
    before averaging, so the kept values never touch the padding: a valid filter is exact.
    """
    k = len(taps)
    rows = np.lib.stride_tricks.sliding_window_view(x, k, axis=-3) @ taps
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=-2) @ taps


def ssim_map(image_true: np.ndarray, image_test: np.ndarray, data_range: float = 1.0,
             window: str = "uniform") -> np.ndarray:
    """Per-pixel SSIM averaged over channels, [..., H - k + 1, W - k + 1] for a k-tap window.

    Only positions the window fully covers are kept (scikit-image crops the same border
    before averaging), so the map's pixel (i, j) belongs to image pixel (i + k//2, j + k//2).
    """
    x, y = _check(image_true, image_test)
    taps = _window(window)
    if min(x.shape[-3:-1]) < len(taps):
        raise ValueError(f"images of {x.shape[-2]}x{x.shape[-3]} are smaller than the {len(taps)}-pixel SSIM window")
    n = len(taps) ** 2
    cov_norm = n / (n - 1)  # scikit-image's default use_sample_covariance=True, for both windows
    ux, uy = _filter_valid(x, taps), _filter_valid(y, taps)
    vx = cov_norm * (_filter_valid(x * x, taps) - ux * ux)
    vy = cov_norm * (_filter_valid(y * y, taps) - uy * uy)
    vxy = cov_norm * (_filter_valid(x * y, taps) - ux * uy)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.mean(axis=-1)


def ssim(image_true: np.ndarray, image_test: np.ndarray, data_range: float = 1.0,
         window: str = "uniform") -> np.ndarray:
    """Mean SSIM per image, averaged over channels like ``structural_similarity(channel_axis=-1)``.

    ``window="uniform"``: 7x7 box (scikit-image defaults, PromptIR). ``window="gaussian"``:
    11x11 Gaussian, sigma 1.5 (``gaussian_weights=True``, as MoCE-IR evaluates). Both use
    scikit-image's default sample covariance.
    """
    return ssim_map(image_true, image_test, data_range, window).mean(axis=(-2, -1))


def region_psnr(image_true: np.ndarray, image_test: np.ndarray, mask: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR over the pixels where ``mask`` [H, W] is true (one image [H, W, C])."""
    x, y = _check(image_true, image_test)
    mse = np.mean((x[mask] - y[mask]) ** 2)
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(data_range**2 / mse))


def region_ssim(image_true: np.ndarray, image_test: np.ndarray, mask: np.ndarray, data_range: float = 1.0,
                window: str = "uniform") -> float:
    """Mean of the SSIM map over the pixels of ``mask`` [H, W] the window fully covers."""
    values = ssim_map(image_true, image_test, data_range, window)
    r = len(_window(window)) // 2
    inner = mask[r : mask.shape[0] - r, r : mask.shape[1] - r]
    return float(values[inner].mean()) if inner.any() else float("nan")
