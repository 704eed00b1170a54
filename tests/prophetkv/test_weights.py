"""The weights pytree: Linen's own init and the loaders agree on one layout, checked weight by weight."""

import dataclasses

import jax
import jax.numpy as jnp

from prophetkv_jax.model import llama, weights
from prophetkv_jax.model.config import tiny_config


def abstract_params(config):
    return jax.eval_shape(lambda: llama.init_params(config, jax.random.PRNGKey(0)))


def test_random_init_has_the_layout_the_loaders_check():
    for config in (tiny_config(num_layers=3), tiny_config(tie_word_embeddings=True)):
        assert weights.shape_mismatches(abstract_params(config), config) == []


def test_every_wrong_missing_or_extra_weight_is_named():
    config = tiny_config(num_layers=3)
    params = abstract_params(config)
    params["layers"]["attn"]["k_proj"]["kernel"] = jax.ShapeDtypeStruct((3, 64, 99), jnp.float32)
    del params["final_norm"]
    params["extra"] = {"bias": jax.ShapeDtypeStruct((4,), jnp.float32)}
    assert sorted(weights.shape_mismatches(params, config)) == [
        "extra/bias is unexpected",
        "final_norm/scale is missing",
        "layers/attn/k_proj/kernel has shape (3, 64, 99), config implies (3, 64, 32)",
    ]


def test_each_family_switch_creates_exactly_its_rows():
    """Qwen2's q/k/v biases and Qwen3's q/k norms come from the table's presence rules."""
    for config in (tiny_config(qkv_bias=True), tiny_config(qk_norm=True)):
        assert weights.shape_mismatches(abstract_params(config), config) == []


def test_the_cache_names_a_logical_axis_for_every_dimension():
    cache = llama.KVCache.empty(tiny_config(), 8)
    assert set(llama.KVCache.LOGICAL_AXES) == {field.name for field in dataclasses.fields(cache)}
    for field, axes in llama.KVCache.LOGICAL_AXES.items():
        assert len(axes) == getattr(cache, field).ndim
