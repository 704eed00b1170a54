"""The embedded default dataset: the photos inside the scikit-image wheel (no download).

Files are read straight from the wheel's ``skimage/data`` folder (never through pooch,
which would need the network). Four colour photos of everyday scenes are held out for
testing (22 tiles of 128 px, 88 of 64 px), so train and test scenes are disjoint; every
other bundled photo trains, greyscale ones as three equal channels. The motorcycle's
bundled stereo disparity gives the only real depth map (for haze, left view); the other
photos get a smooth synthetic depth.

Training photos are stored at the held-out photos' scale (short side 256) and each
training window is then downscaled by a random factor in SCALE_RANGE (never upscaled:
an upscaled photo is a blurred clean target), which spreads a few photos over more
texture scales.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
from PIL import Image

from cea_jax.data.degrade import disparity_to_depth

BUNDLED_DIR = Path(skimage.data.__file__).parent
# Every photograph the wheel ships, by the name of its ``skimage.data`` loader.
BUNDLED_PHOTOS = {
    "astronaut": "astronaut.png", "chelsea": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg", "immunohistochemistry": "ihc.png", "retina": "retina.jpg",
    "motorcycle_left": "motorcycle_left.png", "motorcycle_right": "motorcycle_right.png",
    "brick": "brick.png", "camera": "camera.png", "cell": "cell.png", "coins": "coins.png", "grass": "grass.png",
    "gravel": "gravel.png", "moon": "moon.png",
    "clock": "clock_motion.png", "microaneurysms": "microaneurysms.png", "page": "page.png", "text": "text.png",
}
TEST_PHOTOS = ("chelsea", "rocket", "coffee", "astronaut")
# Bundled photos that are not clean targets at the training scale.
EXCLUDED_PHOTOS = {
    "clock": "motion-blurred by the camera: a degraded photo, not a clean target",
    "microaneurysms": "102 px short side: reaching the training scale would upscale (blur) it",
    "page": "191 px short side: reaching the training scale would upscale (blur) it",
    "text": "172 px short side: reaching the training scale would upscale (blur) it",
}
TRAIN_PHOTOS = (
    "hubble_deep_field", "immunohistochemistry", "retina", "motorcycle_left", "motorcycle_right",  # colour
    "brick", "camera", "cell", "coins", "grass", "gravel", "moon",  # greyscale
)
DEPTH_PHOTO = "motorcycle_left"  # the bundled disparity belongs to the left view
TEST_SHORT_SIDE = 256
TRAIN_SHORT_SIDE = TEST_SHORT_SIDE  # train on content at the scale it is tested at
SCALE_RANGE = (0.5, 1.0)  # random downscale of each training window (see the module docstring)
# Test photos are cut into TEST_TILE squares: more test samples, one shape. Training crops
# (--crop, 48 by default) are smaller; data/README.md measures that this does not change
# the whole-tile scores.
TEST_TILE = 128
# The mixed set's tiles are a training crop's size, so a tile's regions are as large as
# in training: 88 tiles from the four held-out photos, a quarter of the pixels per tile.
MIXED_TILE = 64


@dataclasses.dataclass(frozen=True)
class TrainingSize:
    """How much the embedded training set holds (logged when a run builds its source)."""

    photos: int
    pixels: int


def _bundled(name: str) -> np.ndarray:
    """A bundled photo as uint8 RGB (greyscale repeated over three channels)."""
    image = np.asarray(Image.open(BUNDLED_DIR / BUNDLED_PHOTOS[name]))
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


def _bundled_disparity() -> np.ndarray:
    with np.load(BUNDLED_DIR / "motorcycle_disp.npz") as archive:
        return archive["arr_0"]


def _resize_short_side(image: np.ndarray, short: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = short / min(h, w)
    size = (max(short, round(w * scale)), max(short, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def _resize_depth(depth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    resized = Image.fromarray(depth.astype(np.float32)).resize(shape[::-1], Image.Resampling.BILINEAR)
    return np.asarray(resized, np.float32)


@functools.lru_cache(maxsize=None)
def train_photos() -> tuple[tuple[np.ndarray, np.ndarray | None], ...]:
    """(uint8 photo [H, W, 3], depth [H, W] in [0, 1] or None) for every training photo, in TRAIN_PHOTOS order."""
    out = []
    for name in TRAIN_PHOTOS:
        photo = _resize_short_side(_bundled(name), TRAIN_SHORT_SIDE)
        depth = None
        if name == DEPTH_PHOTO:
            depth = _resize_depth(disparity_to_depth(_bundled_disparity()), photo.shape[:2])
        out.append((photo, depth))
    return tuple(out)


def split_identity() -> dict[str, Any]:
    """Which photos, at which scale, a model trained or scored on the embedded data saw.

    Part of every run's settings, so a run resumed (or a record reused) after the split
    changes is refused instead of silently mixing two datasets.
    """
    return {"train_photos": list(TRAIN_PHOTOS), "train_short_side": TRAIN_SHORT_SIDE,
            "scale_range": list(SCALE_RANGE), "test_photos": list(TEST_PHOTOS),
            "test_short_side": TEST_SHORT_SIDE, "test_tile": TEST_TILE, "mixed_tile": MIXED_TILE}


def training_size() -> TrainingSize:
    """The number of training photos and their pixels (per channel) at the training scale."""
    photos = train_photos()
    return TrainingSize(len(photos), sum(photo.shape[0] * photo.shape[1] for photo, _ in photos))


def test_photo(name: str) -> np.ndarray:
    """A held-out photo as uint8 RGB at the test scale (the one its tiles are cut from)."""
    if name not in TEST_PHOTOS:
        raise ValueError(f"{name!r} is not a held-out photo; held out: {', '.join(TEST_PHOTOS)}")
    return _resize_short_side(_bundled(name), TEST_SHORT_SIDE)


@functools.lru_cache(maxsize=None)
def _labelled_test_tiles(tile: int) -> tuple[tuple[str, np.ndarray], ...]:
    tiles = []
    for name in TEST_PHOTOS:
        photo = test_photo(name)
        h, w = photo.shape[:2]
        oy, ox = (h % tile) // 2, (w % tile) // 2
        for y in range(oy, h - tile + 1, tile):
            for x in range(ox, w - tile + 1, tile):
                tiles.append((name, np.ascontiguousarray(photo[y : y + tile, x : x + tile])))
    return tuple(tiles)


def test_tiles(tile: int = TEST_TILE) -> tuple[np.ndarray, ...]:
    """Non-overlapping ``tile`` x ``tile`` uint8 squares of the held-out photos, in a fixed order."""
    return tuple(array for _, array in _labelled_test_tiles(tile))


def test_tile_photos(tile: int = TEST_TILE) -> tuple[str, ...]:
    """The held-out photo each of :func:`test_tiles` comes from: tiles of one photo are not independent samples."""
    return tuple(name for name, _ in _labelled_test_tiles(tile))
