"""Baselines at the same sites: PromptIR's prompt block, the expert bank, the global FiLM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from cea_jax.configs import AdapterConfig, get_config
from cea_jax.models.baselines import DescriptorAdapter, ExpertsAdapter
from cea_jax.summary import count_params


def _layer_norm(x, p):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def _gelu(x):
    return np.asarray(jax.nn.gelu(jnp.asarray(x), approximate=False))


def _dense(x, p):
    return x @ np.asarray(p["kernel"]) + np.asarray(p["bias"])


def test_prompt_variant_matches_promptirs_published_parameter_count():
    counts = count_params(get_config("paper", "prompt"))
    # PromptIR reports 35.59 M, ~0.2 M of which are modules its forward never calls.
    assert abs(counts["total"] - 35.6e6) / 35.6e6 < 0.02, counts


@pytest.mark.parametrize("size", [23, 7])
def test_prompt_resize_matches_torch_bilinear(size):
    prompt = np.random.RandomState(0).rand(1, 16, 16, 5).astype(np.float32)
    ours = jax.image.resize(prompt, (1, size, size, 5), "bilinear", antialias=False)
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(prompt).permute(0, 3, 1, 2), (size, size), mode="bilinear"
    ).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-5)


def _run_adapter(module, x):
    """(output, aux, params, the layer-normed input the reference formulas start from) of a fresh module."""
    variables = module.init(jax.random.PRNGKey(0), x)
    y, aux = jax.jit(module.apply)(variables, x)
    p = variables["params"]
    return y, aux, p, _layer_norm(x, p["norm"])


def test_experts_route_each_image_to_one_low_rank_expert():
    x = np.random.RandomState(1).randn(3, 5, 4, 8).astype(np.float32)
    y, aux, p, normed = _run_adapter(ExpertsAdapter(AdapterConfig(rank=3, num_experts=4, gate_init=0.8)), x)
    logits = _dense(normed.mean((1, 2)), p["router"])
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    choice = logits.argmax(-1)
    for i, e in enumerate(choice):
        hidden = _gelu(normed[i] @ np.asarray(p["down"][e]))
        want = x[i] + np.asarray(p["gamma"]) * probs[i, e] * (hidden @ np.asarray(p["up"][e]))
        np.testing.assert_allclose(np.asarray(y[i]), want, rtol=1e-4, atol=1e-5)
    fraction = np.bincount(choice, minlength=4) / len(choice)
    balance = 4 * np.sum(fraction * probs.mean(0))
    np.testing.assert_allclose(float(aux["aux_loss"]), 0.01 * balance, rtol=1e-5)


def test_router_noise_is_drawn_only_in_training():
    config = AdapterConfig(rank=2, num_experts=4, gate_init=1.0)
    x = np.random.RandomState(2).randn(8, 4, 4, 8).astype(np.float32)
    module = ExpertsAdapter(config)
    variables = module.init(jax.random.PRNGKey(0), x)
    evaluation = [module.apply(variables, x)[1]["aux_loss"] for _ in range(2)]
    assert float(evaluation[0]) == float(evaluation[1])
    noisy = {float(module.apply(variables, x, train=True, rngs={"router": jax.random.PRNGKey(k)})[1]["aux_loss"])
             for k in range(4)}
    assert len(noisy) > 1
    with pytest.raises(Exception, match="router"):
        module.apply(variables, x, train=True)


def test_descriptor_is_one_global_film_per_image():
    x = np.random.RandomState(3).randn(2, 4, 6, 16).astype(np.float32)
    y, _, p, normed = _run_adapter(DescriptorAdapter(AdapterConfig(gate_init=0.6)), x)
    film = _dense(_gelu(_dense(normed.mean((1, 2)), p["hidden"])), p["film"])
    scale, shift = film[:, None, None, :16], film[:, None, None, 16:]
    want = x + np.asarray(p["gamma"]) * (scale * normed + shift)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-4, atol=1e-5)
