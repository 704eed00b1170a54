"""Restormer backbone: resampling layout, parameter count, shapes, residual (its ops: test_cpu_ops)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cea_jax.configs import get_config
from cea_jax.models import backbone, build_model
from cea_jax.summary import count_params


def test_pixel_unshuffle_uses_torch_channel_order_and_shuffle_inverts_it():
    x = np.random.RandomState(0).randn(2, 4, 6, 3).astype(np.float32)
    y = np.asarray(backbone.pixel_unshuffle(jnp.asarray(x)))
    assert y.shape == (2, 2, 3, 12)
    for c in range(3):
        for i in range(2):
            for j in range(2):
                np.testing.assert_array_equal(y[..., c * 4 + i * 2 + j], x[:, i::2, j::2, c])
    np.testing.assert_array_equal(np.asarray(backbone.pixel_shuffle(jnp.asarray(y))), x)


def test_paper_backbone_has_restormers_published_parameter_count():
    counts = count_params(get_config("paper", "none"))
    assert counts["adapter"] == 0
    assert abs(counts["total"] - 26.13e6) / 26.13e6 < 0.01, counts


def test_odd_sizes_come_back_at_their_size_in_float32(tiny, helpers):
    model = tiny("none")
    restored, aux = model.forward(model.variables, helpers.images(1))
    assert restored.shape == helpers.BATCH_SHAPE and restored.dtype == jnp.float32
    assert aux["aux_loss"].shape == () and float(aux["aux_loss"]) == 0.0
    assert np.isfinite(np.asarray(restored)).all()


def test_bfloat16_compute_keeps_float32_params_and_output(helpers):
    config = get_config("tiny", "cea", dtype="bfloat16")
    model = build_model(config)
    x = helpers.images(2, (1, 11, 13, 3))
    variables = jax.jit(model.init, compiler_options=helpers.FAST_COMPILE)(jax.random.PRNGKey(0), x)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    forward = jax.jit(model.apply, static_argnames="return_maps", compiler_options=helpers.FAST_COMPILE)
    restored, aux = forward(variables, x, return_maps=True)
    assert restored.shape == x.shape and restored.dtype == jnp.float32
    assert all(m.shape[0] == 1 and m.shape[-1] == config.adapter.rank for m in aux["maps"].values())


def test_global_residual_and_crop_return_the_input_when_the_output_conv_is_zero(tiny, helpers):
    model = tiny("none")
    variables = jax.tree_util.tree_map(lambda leaf: leaf, model.variables)
    kernel = variables["params"]["restormer"]["output"]["kernel"]
    variables["params"]["restormer"]["output"]["kernel"] = jnp.zeros_like(kernel)
    x = helpers.images(3)
    restored, _ = model.forward(variables, x)
    np.testing.assert_array_equal(np.asarray(restored), x)


def test_images_must_be_nhwc_rgb(tiny):
    model = tiny("none")
    with pytest.raises(ValueError, match=r"expected images \[B, H, W, 3\]"):
        model.model.apply(model.variables, np.zeros((1, 8, 8, 4), np.float32))
