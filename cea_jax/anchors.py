"""Classical restorers printed beside the network's rows, so a reader can tell whether it restores at all.

Each takes a degraded float image [H, W, 3] in [0, 1] and returns the restored one in [0, 1].
Which applies to which column: noise -> BM3D (told the protocol's sigma), NL-means (blind:
sigma estimated, as the network is blind) and TV (weight picked per column from TV_WEIGHTS
by best PSNR, an oracle choice); rain -> a 5x5 per-channel median; haze -> the dark-channel
prior. BM3D comes from the optional ``bm3d`` package (``pip install -e '.[anchors]'``),
imported only when used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, estimate_sigma

# A coarse fixed grid: the per-column best of it is reported as an oracle choice, not a tuned method.
TV_WEIGHTS = (0.05, 0.10, 0.15, 0.20, 0.25)


class MissingAnchorPackage(RuntimeError):
    """An anchor's optional package is not installed."""


def bm3d_denoise(image: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (Dabov et al.) in the opponent colour space, told the noise sigma (in uint8 units)."""
    try:
        import bm3d
    except ImportError:
        raise MissingAnchorPackage("the BM3D anchor needs the bm3d package: pip install 'bm3d>=4,<5'") from None
    return np.clip(bm3d.bm3d_rgb(image, sigma / 255.0), 0.0, 1.0)


def nl_means_denoise(image: np.ndarray) -> np.ndarray:
    """Blind NL-means: sigma estimated from the image; scikit-image's fast mode and colour settings."""
    sigma = float(np.mean(estimate_sigma(image, channel_axis=-1)))
    restored = denoise_nl_means(image, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6,
                                channel_axis=-1)
    return np.clip(restored, 0.0, 1.0)


def tv_denoise(image: np.ndarray, weight: float) -> np.ndarray:
    """Chambolle's total-variation denoising with one weight for all three channels."""
    return np.clip(denoise_tv_chambolle(image, weight=weight, channel_axis=-1), 0.0, 1.0)


def median_derain(image: np.ndarray, size: int = 5) -> np.ndarray:
    """A size x size median per channel: thin bright streaks are outliers in their window."""
    return ndimage.median_filter(image, size=(size, size, 1))


def dark_channel(image: np.ndarray, patch: int = 15) -> np.ndarray:
    """min over the channels, then over a patch x patch window."""
    return ndimage.minimum_filter(image.min(axis=2), size=patch)


def atmospheric_light(image: np.ndarray, dark: np.ndarray, fraction: float = 0.001) -> np.ndarray:
    """Among the brightest ``fraction`` of the dark channel, the colour of the most intense input pixel."""
    count = max(1, round(dark.size * fraction))
    candidates = image.reshape(-1, 3)[np.argsort(dark.ravel())[-count:]]
    return candidates[np.argmax(candidates.sum(axis=1))]


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide): an edge-following smoothing of ``source``."""
    def box(x: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(x, size=2 * radius + 1)

    mean_g, mean_s = box(guide), box(source)
    a = (box(guide * source) - mean_g * mean_s) / (box(guide * guide) - mean_g**2 + eps)
    b = mean_s - a * mean_g
    return box(a) * guide + box(b)


def dark_channel_transmission(image: np.ndarray, patch: int = 15, omega: float = 0.95,
                              refine_radius: int | None = 15, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """(transmission t [H, W], atmospheric light A [3]) of a hazy image by the dark-channel prior.

    In haze-free patches some channel is near 0, so for I = J t + A (1 - t) the dark channel
    of I / A is about 1 - t: t = 1 - omega * dark(I / A) (omega keeps a little haze for depth).
    t is refined with the guided filter (the authors' later replacement for soft matting;
    radius 15 suits small tiles) unless ``refine_radius`` is None.
    """
    light = atmospheric_light(image, dark_channel(image, patch))
    transmission = 1.0 - omega * dark_channel(image / np.maximum(light, 1e-6), patch)
    if refine_radius is not None:
        transmission = guided_filter(image.mean(axis=2), transmission, refine_radius, eps)
    return transmission, light


def dark_channel_dehaze(image: np.ndarray, t0: float = 0.1, **kwargs: Any) -> np.ndarray:
    """He, Sun and Tang, "Single Image Haze Removal Using Dark Channel Prior" (CVPR 2009).

    J = (I - A) / max(t, t0) + A with t and A from :func:`dark_channel_transmission`
    (``kwargs`` are its settings); t0 keeps dense haze from amplifying noise.
    """
    transmission, light = dark_channel_transmission(image, **kwargs)
    return np.clip((image - light) / np.maximum(transmission, t0)[..., None] + light, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Anchor:
    """One table row: its name and its restorer (given the column's noise sigma, which only BM3D reads).

    Candidates sharing an ``oracle`` name are all scored and the table keeps, per column, the best
    of them under that name.
    """

    name: str
    restore: Callable[[np.ndarray, float], np.ndarray]
    oracle: str | None = None


TV_ORACLE = "TV (oracle weight)"
NOTE = ("BM3D is given the protocol's noise σ; NL-means estimates σ from each image (blind, as the network); "
        f"TV's weight is, per column, the best of {', '.join(f'{w:g}' for w in TV_WEIGHTS)} by PSNR on these very "
        "images (an oracle choice); the median is 5x5 per channel; the dark-channel prior (He et al.) refines its "
        "transmission with a guided filter.")


def _tv(weight: float) -> Anchor:
    return Anchor(f"TV w={weight:g}", lambda image, sigma: tv_denoise(image, weight), oracle=TV_ORACLE)


# The anchors of each single degradation, in the order of the table's rows.
BY_DEGRADATION: dict[str, tuple[Anchor, ...]] = {
    "noise": (Anchor("BM3D (σ known)", bm3d_denoise),
              Anchor("NL-means (σ estimated)", lambda image, sigma: nl_means_denoise(image)),
              *(_tv(w) for w in TV_WEIGHTS)),
    "rain": (Anchor("Median 5x5", lambda image, sigma: median_derain(image)),),
    "haze": (Anchor("Dark-channel prior", lambda image, sigma: dark_channel_dehaze(image)),),
}
