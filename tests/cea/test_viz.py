"""Figures are written as real PNGs with one panel per image; empty input is a clear error."""

import numpy as np
import pytest
from PIL import Image

from cea_jax import viz


def test_save_panels_writes_one_wide_png(tmp_path):
    image = np.zeros((16, 16, 3), np.uint8)
    viz.save_panels(tmp_path / "row.png", [("a", image), ("b", image.astype(np.float32)), ("c", image)])
    with Image.open(tmp_path / "row.png") as png:
        width, height = png.size
    assert width > 2.5 * height  # three panels side by side
    with pytest.raises(ValueError, match="at least one panel"):
        viz.save_panels(tmp_path / "none.png", [])


def test_affinity_maps_need_maps(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    viz.save_affinity_maps(tmp_path / "maps.png", image, {"site": np.random.randn(1, 8, 8, 4)})
    assert (tmp_path / "maps.png").stat().st_size > 0
    with pytest.raises(ValueError, match="only the cea variant"):
        viz.save_affinity_maps(tmp_path / "none.png", image, {})
