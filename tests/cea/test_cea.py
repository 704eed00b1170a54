"""CEA adapter: the folded computation equals the explicit rank-r form, and its knobs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cea_jax.configs import AdapterConfig
from cea_jax.models.cea import CEAAdapter, assemble


def _adapter(config: AdapterConfig, x: np.ndarray):
    module = CEAAdapter(config)
    variables = jax.jit(module.init)(jax.random.PRNGKey(0), x)
    return module, variables, jax.jit(module.apply)


def _layer_norm(x, scale, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * scale + bias


def _softmax(z, axis):
    z = z - z.max(axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis, keepdims=True)


def _explicit(x, params, config):
    """CEA written out unfolded, per image, in float64: x + gamma * W_o (Q B^T D) / tau."""
    p = {k: {n: np.asarray(a, np.float64) for n, a in v.items()} if isinstance(v, dict) else np.asarray(v, np.float64)
         for k, v in params.items()}
    out, maps = [], []
    heads, stride = config.probe_heads, config.probe_stride
    for image in np.asarray(x, np.float64):
        h, w, c = image.shape
        normed = _layer_norm(image, p["norm"]["scale"], p["norm"]["bias"])
        pooled = normed.reshape(h // stride, stride, w // stride, stride, c).mean((1, 3)).reshape(-1, c)
        probe = p["probe"]
        keys, values = pooled @ probe["key"], pooled @ probe["value"]
        width = keys.shape[1]
        dh = width // heads
        summary = np.zeros_like(probe["probes"])
        for head in range(heads):
            cols = slice(head * dh, (head + 1) * dh)
            attn = _softmax(probe["probes"][:, cols] @ keys[:, cols].T / math.sqrt(dh), axis=1)
            summary[:, cols] = attn @ values[:, cols]
        summary = summary + probe["probes"]
        if "mix" in probe:
            summary = probe["mix"] @ summary
        bases, directions = summary @ probe["bases"], summary @ probe["directions"]
        tau = math.exp(p["log_tau"])
        tokens = normed.reshape(-1, c)
        queries = tokens @ p["query"]
        affinity = queries @ bases.T / tau
        update = (affinity @ directions) @ p["out"]
        out.append(image + p["gamma"] * update.reshape(h, w, c))
        maps.append(affinity.reshape(h, w, -1))
    return np.stack(out), np.stack(maps)


@pytest.mark.parametrize(
    "knobs",
    [dict(rank=4), dict(rank=4, probe_heads=2, probe_dim_ratio=0.5), dict(rank=3, probes=5, probe_stride=2)],
    ids=["default", "two_heads", "mixed_probes_strided"],
)
def test_adapter_equals_the_explicit_rank_r_form(knobs):
    config = AdapterConfig(gate_init=0.7, **knobs)
    x = np.random.RandomState(0).randn(2, 6, 4, 16).astype(np.float32)
    _, variables, apply = _adapter(config, x)
    y, aux = apply(variables, x)
    want, maps = _explicit(x, variables["params"], config)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(aux["map"]), maps, rtol=1e-4, atol=1e-4)


def test_signed_dense_assembly_is_linear_in_the_token_and_softmax_is_not():
    rng = np.random.RandomState(1)
    u, v = (jnp.asarray(rng.randn(1, 10, 12).astype(np.float32)) for _ in range(2))
    bases, directions = (jnp.asarray(rng.randn(1, 4, 12).astype(np.float32)) for _ in range(2))
    tau = jnp.float32(3.0)
    for affinity, linear in (("signed", True), ("softmax", False)):
        def f(t):
            return np.asarray(assemble(t, bases, directions, tau, affinity)[0])
        combined, separate = f(2.0 * u - 0.5 * v), 2.0 * f(u) - 0.5 * f(v)
        assert np.allclose(combined, separate, atol=1e-4) == linear, affinity


@pytest.mark.parametrize("affinity", ["signed", "softmax"])
def test_top_k_keeps_only_the_strongest_components(affinity):
    rng = np.random.RandomState(2)
    tokens = jnp.asarray(rng.randn(2, 9, 8).astype(np.float32))
    bases, directions = (jnp.asarray(rng.randn(2, 5, 8).astype(np.float32)) for _ in range(2))
    _, dense = assemble(tokens, bases, directions, jnp.float32(2.0), affinity)
    update, sparse = assemble(tokens, bases, directions, jnp.float32(2.0), affinity, top_k=2)
    dense, sparse = np.asarray(dense), np.asarray(sparse)
    assert ((sparse != 0).sum(-1) == 2).all()
    score = np.abs(dense) if affinity == "signed" else dense
    kept = np.argsort(-score, axis=-1)[..., :2]
    assert (np.take_along_axis(sparse, kept, -1) != 0).all()
    if affinity == "signed":
        np.testing.assert_allclose(np.take_along_axis(sparse, kept, -1), np.take_along_axis(dense, kept, -1), rtol=1e-6)
    else:
        np.testing.assert_allclose(sparse.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(update, np.einsum("bnr,brc->bnc", sparse, directions), rtol=1e-4, atol=1e-5)


def test_each_image_is_conditioned_on_itself_only():
    config = AdapterConfig(rank=4, gate_init=1.0)
    rng = np.random.RandomState(3)
    a, b, c = (rng.randn(1, 6, 6, 16).astype(np.float32) for _ in range(3))
    _, variables, apply = _adapter(config, np.concatenate([a, b]))
    y_ab, _ = apply(variables, np.concatenate([a, b]))
    y_ac, _ = apply(variables, np.concatenate([a, c]))
    y_a, _ = apply(variables, a)
    np.testing.assert_allclose(y_ab[0], y_ac[0], atol=1e-5)
    np.testing.assert_allclose(y_ab[0], y_a[0], atol=1e-5)


@pytest.mark.parametrize("bases, context_matters", [("instance", True), ("static", False)])
def test_the_same_pixel_is_routed_by_its_images_components(bases, context_matters):
    """Instance bases: one token in two different images gets two different updates;
    static bases: the update depends on the token alone."""
    config = AdapterConfig(rank=4, bases=bases, gate_init=1.0)
    rng = np.random.RandomState(4)
    x = rng.randn(2, 5, 5, 16).astype(np.float32)
    x[1, 0, 0] = x[0, 0, 0]
    _, variables, apply = _adapter(config, x)
    y, _ = apply(variables, x)
    same = np.allclose(y[0, 0, 0], y[1, 0, 0], atol=1e-5)
    assert same != context_matters


@pytest.mark.parametrize(
    "knobs",
    [dict(affinity="softmax", top_k=2), dict(normalize_bases=True), dict(learn_tau=False, tau_init=2.0),
     dict(bases="static", affinity="softmax")],
    ids=["softmax_top2", "normalized", "fixed_tau", "static_softmax"],
)
def test_every_knob_runs_and_trains_through_the_gate(knobs):
    config = AdapterConfig(rank=4, **knobs)
    x = np.random.RandomState(5).randn(2, 6, 6, 16).astype(np.float32)
    module, variables, apply = _adapter(config, x)
    params = variables["params"]
    assert ("log_tau" in params) == config.learn_tau
    assert ("probe" in params) == (config.bases == "instance")
    y, aux = apply(variables, x)
    np.testing.assert_array_equal(np.asarray(y), x)  # zero gate at init
    assert aux["map"].shape == (2, 6, 6, 4) and np.isfinite(np.asarray(aux["map"])).all()
    grad = jax.grad(lambda v: jnp.sum(module.apply(v, x)[0] ** 2))(variables)["params"]["gamma"]
    assert np.abs(np.asarray(grad)).max() > 0


def test_maps_are_returned_per_site_without_changing_the_output(tiny, helpers):
    model = tiny("cea")
    variables = helpers.set_gates(model.variables, 0.5)
    x = helpers.images(4)
    plain, aux_plain = model.forward(variables, x)
    restored, aux = model.forward(variables, x, return_maps=True)
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(restored))
    assert "maps" not in aux_plain
    scales = {"decoder_level3": 4, "decoder_level2": 2, "decoder_level1": 1}
    assert set(aux["maps"]) == {f"{stage}_block0" for stage in scales}
    for stage, scale in scales.items():
        want = (2, -(-x.shape[1] // scale), -(-x.shape[2] // scale), model.config.adapter.rank)
        assert aux["maps"][f"{stage}_block0"].shape == want
