"""The weights pytree: Linen's own init and the loaders agree on one layout, checked weight by weight."""

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
