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


def test_routing_draws_a_row_per_map_set_on_one_colour_scale_per_tile(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    trained = {"big": rng.normal(size=(16, 16, 3)), "small": rng.normal(size=(4, 4, 3))}
    untrained = {"big": np.zeros((16, 16, 3)), "small": np.zeros((4, 4, 3))}
    row = {"degraded": image, "labels": np.zeros((16, 16), np.int32), "kinds": ["noise"], "restored": image,
           "clean": image, "map_sets": [("trained", trained), ("untrained", untrained)]}
    viz.save_routing(tmp_path / "r.png", [row, row])
    with Image.open(tmp_path / "r.png") as drawn:
        width, height = drawn.size
    viz.save_routing(tmp_path / "one.png", [dict(row, map_sets=row["map_sets"][:1])])
    with Image.open(tmp_path / "one.png") as drawn:
        assert drawn.size[0] == width and drawn.size[1] < height / 2  # four figure rows against one
    with pytest.raises(ValueError, match="at least one row"):
        viz.save_routing(tmp_path / "none.png", [])
