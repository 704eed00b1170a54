"""The embedded default dataset: scikit-image's bundled photos (no download).

Only images shipped inside the scikit-image wheel are used (``skimage.data`` fetches
others with pooch, which needs the network). Four colour photos of everyday scenes are
held out for testing (22 tiles of 128 px, 88 of 64 px), so train and test scenes are
disjoint; the motorcycle's bundled stereo disparity gives a real depth map for haze, the
other photos get a smooth synthetic depth.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from cea_jax.data.degrade import disparity_to_depth

# Training keeps the stereo pair (the only real depth map, for haze) and the three
# scientific photos; every other bundled colour photo is held out, so test scores are on
# scenes the model never saw.
TRAIN_PHOTOS = (
    "hubble_deep_field", "retina", "immunohistochemistry", "motorcycle_left", "motorcycle_right",
)
TEST_PHOTOS = ("chelsea", "rocket", "coffee", "astronaut")
TRAIN_SHORT_SIDE = 200  # training photos are downscaled so random crops see whole objects
TEST_SHORT_SIDE = 256
TEST_TILE = 128  # test photos are cut into TEST_TILE squares: more test samples, one shape
# The mixed set's tiles are the training crop size, so a tile's regions are as large as
# in training: 88 tiles from the four held-out photos, a quarter of the pixels per tile.
MIXED_TILE = 64


def _bundled(name: str) -> np.ndarray:
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(skimage.data, name)()


def _bundled_disparity() -> np.ndarray:
    path = Path(skimage.data.__file__).parent / "motorcycle_disp.npz"
    with np.load(path) as archive:
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
    """(uint8 photo [H, W, 3], depth [H, W] in [0, 1] or None) for every training photo."""
    out = []
    for name in TRAIN_PHOTOS:
        photo = _resize_short_side(_bundled(name), TRAIN_SHORT_SIDE)
        depth = None
        if name == "motorcycle_left":  # the bundled disparity belongs to the left view
            depth = _resize_depth(disparity_to_depth(_bundled_disparity()), photo.shape[:2])
        out.append((photo, depth))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def test_tiles(tile: int = TEST_TILE) -> tuple[np.ndarray, ...]:
    """Non-overlapping ``tile`` x ``tile`` uint8 squares of the held-out photos, in a fixed order."""
    tiles = []
    for name in TEST_PHOTOS:
        photo = _resize_short_side(_bundled(name), TEST_SHORT_SIDE)
        h, w = photo.shape[:2]
        oy, ox = (h % tile) // 2, (w % tile) // 2
        for y in range(oy, h - tile + 1, tile):
            for x in range(ox, w - tile + 1, tile):
                tiles.append(np.ascontiguousarray(photo[y : y + tile, x : x + tile]))
    return tuple(tiles)
