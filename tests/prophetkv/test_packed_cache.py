"""16-bit caches on CPU go through the layer loop as uint16 bits: same results, no per-layer stack conversions."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prophetkv_jax.buckets import pad_rows
from prophetkv_jax.model import attention, llama, weights
from prophetkv_jax.model.config import tiny_config

CONFIG = tiny_config(num_layers=3, dtype="bfloat16")


@pytest.fixture(scope="module")
def params():
    return llama.init_params(CONFIG, jax.random.PRNGKey(3))


def filled_cache(config, capacity: int = 128, filled: int = 96) -> llama.KVCache:
    cache = llama.KVCache.empty(config, capacity)
    noise = jax.random.normal(jax.random.PRNGKey(1), cache.k.shape).astype(cache.k.dtype)
    return dataclasses.replace(cache, k=noise, v=-noise, positions=jnp.arange(capacity, dtype=jnp.int32),
                               valid=jnp.arange(capacity) < filled)


def rows(tokens: int = 20):
    """Scattered context rows then a query tail, padded (slot -1) to 32 rows."""
    positions = np.concatenate([[3, 17, 40, 41, 77], np.arange(96, 96 + tokens - 5)])
    ids = np.random.default_rng(0).integers(0, CONFIG.vocab_size, len(positions))
    return pad_rows(ids, positions, positions, 128, minimum=32)


@pytest.mark.parametrize("method", ["forward", "scores"])
def test_packed_pass_equals_the_unpacked_one(params, method, monkeypatch):
    """Bit for bit: logits, Stage-I scores and every cache slot, with and without the packed carry."""
    tokens, positions, slots = rows()

    def run(config):
        last = np.array([19], np.int32)
        if method == "forward":
            logits, cache = llama.forward(params, tokens, positions, filled_cache(config), slots, config, last)
            return logits, None, cache
        weights = (slots >= 96).astype(np.float32)
        return llama.forward_with_scores(params, tokens, positions, filled_cache(config), slots, weights, config, last)

    packed = run(CONFIG)
    monkeypatch.setattr(attention, "packs_bits", lambda dtype: False)
    plain = run(dataclasses.replace(CONFIG, max_position_embeddings=CONFIG.max_position_embeddings + 1))  # own compile
    for a, b in zip(jax.tree.leaves(packed), jax.tree.leaves(plain)):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def _equations(jaxpr):
    """Every equation of a jaxpr and of the jaxprs nested in it."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


def test_the_layer_loop_scatters_into_bits_without_converting_the_stack(params):
    """XLA:CPU turned a bf16 stack into its bits and back around every layer's scatter (two full copies
    per layer and stack): the scan now carries the bits, and nothing inside it makes a stack of bits
    but the scatter (reading a layer through a bf16 view of the bits fuses into the reads)."""
    tokens, positions, slots = rows()
    cache = filled_cache(CONFIG)
    jaxpr = jax.make_jaxpr(lambda c: llama._forward(params, tokens, positions, c, slots, CONFIG, None, None))(cache)
    scans = [eqn for eqn in _equations(jaxpr.jaxpr) if eqn.primitive.name == "scan"]
    assert len(scans) == 1
    stack = cache.k.shape
    carried = [v.aval for v in scans[0].invars if getattr(v.aval, "shape", None) == stack]
    assert [a.dtype for a in carried] == [jnp.uint16, jnp.uint16]
    makers = {eqn.primitive.name for eqn in _equations(scans[0].params["jaxpr"].jaxpr)
              if any(getattr(v.aval, "shape", None) == stack and v.aval.dtype == jnp.uint16 for v in eqn.outvars)}
    assert makers == {"scatter"}


def test_bf16_weights_viewed_as_bits_are_multiplied_without_a_conversion_pass(params):
    """Stacked bf16 weights make XLA:CPU convert every stack to fp32 before the layer loop; their uint16
    view (shared memory, no copy) is sliced and multiplied as bf16, with the same results."""
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)  # as a bf16 checkpoint loads
    bits = weights.bits_view(params, CONFIG)
    for plain, viewed in zip(jax.tree.leaves(params), jax.tree.leaves(bits), strict=True):
        assert viewed.dtype == jnp.uint16 and viewed.unsafe_buffer_pointer() == plain.unsafe_buffer_pointer()
    tokens, positions, slots = rows()
    last = np.array([19], np.int32)
    args = (tokens, positions, filled_cache(CONFIG), slots, CONFIG, None, last)
    stacks = {f"f32[{CONFIG.num_layers},{','.join(map(str, x.shape[1:]))}]"
              for x in jax.tree.leaves(params["layers"]) if x.ndim == 3}
    compiled = llama._forward_jit.lower(bits, *args).compile().as_text()
    assert not [s for s in stacks if s in compiled], "a stacked weight is converted to fp32"
    got, want = llama._forward_jit(bits, *args), llama._forward_jit(params, *args)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-2, atol=2e-2)
    np.testing.assert_array_equal(np.asarray(got[1].valid), np.asarray(want[1].valid))
