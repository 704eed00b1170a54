"""Degradation recipes that turn a clean image into a degraded one.

Every function is pure numpy: it takes a float32 image [H, W, 3] in [0, 1] (uint8 only
for the denoising recipe, which the official AIO loaders apply on uint8) and a
``numpy.random.Generator``, so a sample is reproducible from its seed alone and the
same code runs inside grain workers. Parameters follow the public synthesis recipes
(PromptIR's uint8 Gaussian noise, Rain100L-like streaks, RESIDE's atmospheric
scattering model, Boracchi-Foi style random-trajectory blur, OneRestore's Retinex low
light and snow masks) scaled to the small images the embedded default uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage, signal

# Single degradations (one per AIO task) and the CDD-11 categories built from them.
SINGLE = ("noise", "rain", "haze", "blur", "low", "snow")
CDD11_CATEGORIES = (
    "low", "haze", "rain", "snow", "low_haze", "low_rain", "low_snow",
    "haze_rain", "haze_snow", "low_haze_rain", "low_haze_snow",
)
# The order composites are applied in: illumination first, then particles, then haze
# (light from far away passes through the rain/snow layer and then the scattering medium).
COMPOSITE_ORDER = ("low", "rain", "snow", "haze")


def _as_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32, copy=False)


def add_uint8_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """AIO denoising: clip(clean + sigma * N(0, 1), 0, 255) truncated to uint8, on a uint8 image."""
    if clean.dtype != np.uint8:
        raise ValueError(f"add_uint8_noise expects a uint8 image, got {clean.dtype}")
    noisy = clean.astype(np.float32) + np.float32(sigma) * rng.standard_normal(clean.shape, dtype=np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def line_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A 1-pixel-wide line of ``length`` pixels through the kernel centre, peak 1."""
    size = length if length % 2 == 1 else length + 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    theta = np.deg2rad(angle_deg)
    ts = np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length)
    rows = np.clip(np.round(c - ts * np.cos(theta)).astype(int), 0, size - 1)
    cols = np.clip(np.round(c + ts * np.sin(theta)).astype(int), 0, size - 1)
    kernel[rows, cols] = 1.0
    return kernel


def rain_layer(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A [H, W] rain-streak intensity map in [0, 1]: sparse seeds smeared along one angle."""
    h, w = shape
    density = rng.uniform(0.002, 0.008)
    seeds = (rng.random((h, w)) < density) * rng.uniform(0.5, 1.0, (h, w))
    seeds = ndimage.gaussian_filter(seeds.astype(np.float32), 0.5)
    length = int(rng.integers(8, 25))
    kernel = line_kernel(length, rng.uniform(-25.0, 25.0))
    streaks = signal.fftconvolve(seeds, kernel, mode="same")
    peak = np.percentile(streaks, 99.9)
    return np.clip(streaks / max(peak, 1e-6), 0.0, 1.0).astype(np.float32)


def add_rain(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rain100L-like streaks: a bright, motion-smeared sparse layer added to the image."""
    img = _as_float(image)
    layer = rain_layer(img.shape[:2], rng) * rng.uniform(0.5, 0.85)
    return np.clip(img + layer[..., None], 0.0, 1.0)


def synthetic_depth(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth depth map [H, W] in [0, 1]: far at the top (sky) plus low-frequency bumps."""
    h, w = shape
    coarse = rng.random((4, 4)).astype(np.float32)
    bumps = ndimage.zoom(coarse, (h / 4, w / 4), order=3, mode="nearest")[:h, :w]
    ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]
    depth = 0.6 * ramp + 0.4 * bumps
    depth = ndimage.gaussian_filter(depth, max(h, w) / 32)
    depth -= depth.min()
    return (depth / max(float(depth.max()), 1e-6)).astype(np.float32)


def disparity_to_depth(disparity: np.ndarray) -> np.ndarray:
    """Stereo disparity -> depth in [0, 1] (depth ~ 1 / disparity; invalid pixels filled)."""
    disp = np.asarray(disparity, np.float32)
    valid = np.isfinite(disp) & (disp > 0)
    if not valid.any():
        raise ValueError("disparity map has no valid (finite, positive) pixels")
    fill = np.median(disp[valid])
    depth = 1.0 / np.where(valid, disp, fill)
    depth = ndimage.median_filter(depth, size=5)
    depth -= depth.min()
    return (depth / max(float(depth.max()), 1e-6)).astype(np.float32)


def add_haze(image: np.ndarray, depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Atmospheric scattering I = J t + A (1 - t), t = exp(-beta d), as RESIDE synthesises haze."""
    img = _as_float(image)
    if depth.shape != img.shape[:2]:
        raise ValueError(f"depth {depth.shape} does not match image {img.shape[:2]}")
    beta = rng.uniform(0.8, 2.0)
    airlight = rng.uniform(0.75, 1.0)
    t = np.exp(-beta * depth)[..., None]
    return np.clip(img * t + airlight * (1.0 - t), 0.0, 1.0).astype(np.float32)


def trajectory_kernel(size: int, rng: np.random.Generator, steps: int = 64) -> np.ndarray:
    """A motion-blur PSF [size, size] from a random camera trajectory (sums to 1).

    The trajectory is a 2-D random walk with inertia and occasional jerks, rescaled to fit
    the kernel, then rasterised with bilinear splatting.
    """
    velocity = complex(*rng.normal(size=2))
    position = 0j
    points = [position]
    for _ in range(steps - 1):
        velocity = 0.8 * velocity + 0.35 * complex(*rng.normal(size=2))
        if rng.random() < 0.05:
            velocity *= -rng.uniform(0.5, 1.5)
        position += velocity
        points.append(position)
    traj = np.array(points)
    traj -= traj.mean()
    extent = max(np.abs(traj.real).max(), np.abs(traj.imag).max(), 1e-6)
    traj *= (size - 1) / 2 * rng.uniform(0.5, 1.0) / extent
    kernel = np.zeros((size, size), np.float64)
    c = (size - 1) / 2
    for p in traj:
        x, y = p.real + c, p.imag + c
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                    kernel[y0 + dy, x0 + dx] += wy * wx
    return (kernel / kernel.sum()).astype(np.float32)


def motion_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur with a random-trajectory PSF (reflect-padded so borders stay unbiased)."""
    img = _as_float(image)
    size = int(rng.integers(7, 16)) | 1
    kernel = trajectory_kernel(size, rng)
    pad = size // 2
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = signal.fftconvolve(padded, kernel[..., None], mode="valid", axes=(0, 1))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def low_light(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OneRestore's Retinex recipe: I = R * L -> R * L**gamma (gamma in [2, 3]) + N(0, s), s in [0.03, 0.08].

    L is a smooth illumination estimate (max over RGB, Gaussian-smoothed), so darkening
    keeps reflectance (colours) and crushes illumination, as in real under-exposure.
    """
    img = _as_float(image)
    illum = ndimage.gaussian_filter(img.max(axis=-1), 3.0)
    illum = np.clip(illum, 1e-3, 1.0)[..., None]
    reflect = np.clip(img / illum, 0.0, 1.0)
    gamma = rng.uniform(2.0, 3.0)
    dark = reflect * illum**gamma
    noise = rng.uniform(0.03, 0.08) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(dark + noise, 0.0, 1.0).astype(np.float32)


def snow_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A [H, W] snow opacity mask in [0, 1]: flakes of two sizes drifting along one direction."""
    h, w = shape
    mask = np.zeros((h, w), np.float32)
    angle = rng.uniform(-30.0, 30.0)
    for density, blur, length in ((rng.uniform(0.002, 0.006), 0.8, 3), (rng.uniform(0.0005, 0.0015), 1.6, 5)):
        flakes = (rng.random((h, w)) < density).astype(np.float32)
        flakes = ndimage.gaussian_filter(flakes, blur)
        kernel = line_kernel(length, angle)
        flakes = signal.fftconvolve(flakes, kernel / kernel.sum(), mode="same")
        peak = flakes.max()
        mask = np.maximum(mask, flakes / peak if peak > 0 else flakes)
    return np.clip(mask * rng.uniform(0.8, 1.0), 0.0, 1.0).astype(np.float32)


def add_snow(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blend a snow mask in: I (1 - S) + S (white flakes occlude the scene)."""
    img = _as_float(image)
    s = snow_mask(img.shape[:2], rng)[..., None]
    return (img * (1.0 - s) + s).astype(np.float32)


def composite(image: np.ndarray, category: str, depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A CDD-11-style composite (``"low_haze_rain"`` ...), applied low -> rain/snow -> haze."""
    parts = category.split("_")
    unknown = [p for p in parts if p not in COMPOSITE_ORDER]
    if unknown or not parts:
        raise ValueError(f"unknown composite category {category!r}; parts must be among {COMPOSITE_ORDER}")
    out = _as_float(image)
    for part in COMPOSITE_ORDER:
        if part not in parts:
            continue
        if part == "low":
            out = low_light(out, rng)
        elif part == "rain":
            out = add_rain(out, rng)
        elif part == "snow":
            out = add_snow(out, rng)
        else:
            out = add_haze(out, depth, rng)
    return out


def apply(kind: str, clean: np.ndarray, depth: np.ndarray, rng: np.random.Generator,
          sigma: float = 25.0) -> np.ndarray:
    """Degrade a uint8 clean image by one named recipe; returns uint8 (what files would hold).

    ``kind`` is one of SINGLE or a CDD-11 category; ``sigma`` is used by "noise" only.
    """
    if clean.dtype != np.uint8:
        raise ValueError(f"apply expects a uint8 clean image, got {clean.dtype}")
    if kind == "noise":
        return add_uint8_noise(clean, sigma, rng)
    recipes: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "rain": lambda x: add_rain(x, rng),
        "haze": lambda x: add_haze(x, depth, rng),
        "blur": lambda x: motion_blur(x, rng),
        "low": lambda x: low_light(x, rng),
        "snow": lambda x: add_snow(x, rng),
    }
    if kind in recipes:
        out = recipes[kind](clean)
    elif kind in CDD11_CATEGORIES:
        out = composite(clean, kind, depth, rng)
    else:
        raise ValueError(f"unknown degradation {kind!r}; expected one of {SINGLE + CDD11_CATEGORIES}")
    return to_uint8(out)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with rounding (as saving to PNG would)."""
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def voronoi_regions(shape: tuple[int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    """An int label map [H, W] splitting the image into ``count`` sizeable Voronoi cells."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    # Redraw until every cell holds at least half its fair share of pixels, so no
    # degradation is a sliver that the metrics would barely see.
    while True:
        centres = rng.random((count, 2)) * np.array([h, w])
        dist = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
        labels = dist.argmin(axis=0)
        if np.bincount(labels.ravel(), minlength=count).min() >= 0.5 * h * w / count:
            return labels


def region_weights(labels: np.ndarray, count: int, feather: float = 0.0) -> np.ndarray:
    """Per-region blending weights [count, H, W] summing to 1 at every pixel.

    ``feather`` = 0 gives hard borders (the one-hot label map); > 0 blurs each region's
    mask with a Gaussian of that many pixels, so neighbouring degradations cross-fade.
    """
    masks = (labels[None] == np.arange(count)[:, None, None]).astype(np.float32)
    if feather <= 0:
        return masks
    masks = np.stack([ndimage.gaussian_filter(m, feather, mode="nearest") for m in masks])
    return masks / masks.sum(axis=0, keepdims=True)


def compose_regions(versions: Sequence[np.ndarray], labels: np.ndarray, feather: float = 0.0) -> np.ndarray:
    """Cut region k out of ``versions[k]`` (uint8 images of one scene) and join them, uint8."""
    weights = region_weights(labels, len(versions), feather)
    if feather <= 0:
        return np.choose(labels[..., None], versions).astype(np.uint8)
    blended = np.einsum("khw,khwc->hwc", weights, np.stack(versions).astype(np.float32))
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def spatially_mixed(clean: np.ndarray, kinds: Sequence[str], depth: np.ndarray, rng: np.random.Generator,
                    sigma: float = 25.0, feather: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Different regions of one image carry different degradations (the paper's hardest case).

    Returns the uint8 degraded image, the region label map (index into ``kinds``) and the
    fully degraded versions [K, H, W, 3] it was cut from. Each recipe is applied to the
    whole image and then cut out by its region, so every region is a valid
    single-degradation sample and the full versions give the mixing-penalty reference.
    """
    labels = voronoi_regions(clean.shape[:2], len(kinds), rng)
    full = np.stack([apply(kind, clean, depth, rng, sigma=sigma) for kind in kinds])
    return compose_regions(list(full), labels, feather), labels, full
