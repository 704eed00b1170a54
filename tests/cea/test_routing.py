"""Gated routing maps: the size of each component's update, zero where the gate is closed."""

import jax
import numpy as np
import pytest

from cea_jax.configs import get_config
from cea_jax.inference import restore_batch
from cea_jax.models import build_model
from cea_jax.routing import gated_maps


@pytest.fixture(scope="module")
def model_and_params():
    config = get_config("tiny", "cea")
    params = build_model(config).init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3), np.float32))
    return config, params


def _images(count: int = 2, size: int = 24) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_an_untrained_network_routes_nothing_after_its_closed_gate(model_and_params):
    config, params = model_and_params
    images = _images()
    _, raw = restore_batch(config, params, images, return_maps=True)
    gated = gated_maps(config, params, images)
    assert set(gated) == set(raw)
    for site in raw:
        assert np.abs(raw[site]).max() > 0  # the raw maps are structured all the same
        assert gated[site].shape == raw[site].shape and not gated[site].any()


def test_gated_maps_scale_each_component_by_its_gated_direction(model_and_params):
    config, params = model_and_params
    site = "decoder_level1_block0"
    opened = jax.tree_util.tree_map(lambda a: a, params)
    adapter = opened["params"]["restormer"][f"adapter_{site}"]
    gamma = np.linspace(0.5, 2.0, adapter["gamma"].shape[0]).astype(np.float32)
    adapter["gamma"] = gamma
    images = _images(1)
    _, raw = restore_batch(config, opened, images, return_maps=True)
    gated = gated_maps(config, opened, images)
    r, g = raw[site][0].reshape(-1, raw[site].shape[-1]), gated[site][0].reshape(-1, raw[site].shape[-1])
    factors = (r * g).sum(axis=0) / (r * r).sum(axis=0)  # one factor per component
    assert np.all(factors > 0) and np.allclose(g, r * factors, atol=1e-4 * np.abs(g).max())
    doubled = jax.tree_util.tree_map(lambda a: a, opened)
    doubled["params"]["restormer"][f"adapter_{site}"]["gamma"] = 2 * gamma
    assert np.allclose(gated_maps(config, doubled, images)[site], 2 * gated[site], rtol=1e-5)
