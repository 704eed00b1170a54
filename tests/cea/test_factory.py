"""build_model: site placement, identity at init, per-image conditioning, trainability."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cea_jax.configs import VARIANTS, get_config
from cea_jax.models import build_model
from cea_jax.summary import abstract_params

RESIDUAL = ("cea", "experts", "descriptor")


def _adapter_sites(**overrides):
    params = abstract_params(get_config("tiny", "cea", num_blocks=(2, 1, 1, 1), **overrides))["params"]["restormer"]
    return {name.removeprefix("adapter_") for name in params if name.startswith("adapter_")}


def test_site_placements():
    decoder = {"decoder_level3_block0", "decoder_level2_block0", "decoder_level1_block0", "decoder_level1_block1"}
    assert _adapter_sites() == decoder
    assert _adapter_sites(sites="promptir_sites") == {"latent_out", "decoder_level3_out", "decoder_level2_out"}
    everything = _adapter_sites(sites="all_blocks")
    assert decoder < everything and len(everything) == 2 + 1 + 1 + 1 + 1 + 1 + 2 + 1


@pytest.mark.parametrize("variant", RESIDUAL)
def test_zero_gates_leave_the_backbone_output_unchanged(tiny, helpers, variant):
    model, backbone = tiny(variant), tiny("none")
    stripped = helpers.without_adapters(model.variables)
    assert stripped != model.variables  # the variant really has adapters
    x = helpers.images(5)
    restored, _ = model.forward(model.variables, x)
    reference, _ = backbone.forward(stripped, x)
    np.testing.assert_allclose(np.asarray(restored), np.asarray(reference), atol=1e-6)
    opened, _ = model.forward(helpers.set_gates(model.variables, 1.0), x)
    assert np.abs(np.asarray(opened) - np.asarray(reference)).max() > 1e-4


# prompt is left out only to save a compilation: its conditioning is a per-image GAP.
@pytest.mark.parametrize("variant", ("none",) + RESIDUAL)
def test_images_in_a_batch_do_not_leak_into_each_other(tiny, helpers, variant):
    model = tiny(variant)
    variables = helpers.set_gates(model.variables, 1.0)
    a, b = helpers.images(6), helpers.images(7)
    mixed = np.concatenate([a[:1], b[1:]])
    first, _ = model.forward(variables, a)
    second, _ = model.forward(variables, mixed)
    np.testing.assert_allclose(np.asarray(first[0]), np.asarray(second[0]), atol=1e-5)
    assert np.abs(np.asarray(first[1]) - np.asarray(second[1])).max() > 1e-3


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_few_steps_on_one_batch_lower_the_l1_loss(tiny, helpers, variant):
    model = tiny(variant)
    clean = helpers.images(8)
    noisy = np.clip(clean + np.random.RandomState(9).normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    optimizer = optax.adam(1e-3)

    @functools.partial(jax.jit, compiler_options=helpers.FAST_COMPILE)
    def step(variables, state, key):
        def loss(variables):
            restored, aux = model.model.apply(variables, noisy, train=True, rngs={"router": key})
            l1 = jnp.mean(jnp.abs(restored - clean))
            return l1 + aux["aux_loss"], l1
        (_, l1), grads = jax.value_and_grad(loss, has_aux=True)(variables)
        updates, state = optimizer.update(grads, state, variables)
        return optax.apply_updates(variables, updates), state, l1

    variables, state = model.variables, optimizer.init(model.variables)
    losses = []
    for i in range(5):
        variables, state, l1 = step(variables, state, jax.random.PRNGKey(i))
        losses.append(float(l1))
    assert losses[-1] < 0.9 * losses[0], losses


def test_aux_outputs(tiny, helpers):
    x = helpers.images(10)
    _, aux = tiny("experts").forward(tiny("experts").variables, x, train=True, rngs={"router": jax.random.PRNGKey(0)})
    assert aux["aux_loss"].shape == () and float(aux["aux_loss"]) > 0


def test_build_model_rejects_non_configs():
    with pytest.raises(ValueError, match="ModelConfig"):
        build_model({"variant": "cea"})
