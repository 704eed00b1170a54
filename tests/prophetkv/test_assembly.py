"""Assembly's own bf16 conversions equal XLA's bit for bit, specials included; its CPU-only swap changes nothing."""

import jax.numpy as jnp
import numpy as np
import pytest

from prophetkv_jax import assembly
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import tiny_config


def test_bf16_widen_and_narrow_equal_xla_convert_bit_for_bit():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)  # every exponent, NaNs, infs
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0 + 2**-8, 1.0 + 3 * 2**-8,  # ties to even
                         np.finfo(np.float32).max, np.finfo(np.float32).tiny / 3], np.float32)
    x = jnp.asarray(np.concatenate([bits.view(np.float32), specials]))
    ours, xla = assembly._narrow(x, jnp.bfloat16), x.astype(jnp.bfloat16)
    same = np.asarray(assembly._as_bits(ours)) == np.asarray(assembly._as_bits(xla))
    nan = np.isnan(np.asarray(x))
    assert same[~nan].all() and np.isnan(np.asarray(ours, np.float32)[nan]).all()
    np.testing.assert_array_equal(np.asarray(assembly._widen(xla)), np.asarray(xla.astype(jnp.float32)))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_swap_apart_equals_the_fused_reversal(dtype):
    """CPU passes the keys' swapped halves to the write; other backends reverse inside it: same keys."""
    rng = np.random.default_rng(1)
    shape, capacity = (2, 64, 3, 16), 128
    segment_k, segment_v = (jnp.asarray(rng.standard_normal(shape), dtype) for _ in range(2))
    table = llama.rope_tables(jnp.arange(capacity), tiny_config())
    written = [assembly._write_segment(jnp.zeros((2, capacity, 3, 16), dtype), jnp.zeros((2, capacity, 3, 16), dtype),
                                       segment_k, swapped, segment_v, np.int32(37), table)[0]
               for swapped in (assembly._swapped_halves(segment_k), None)]
    apart, fused = (np.asarray(k, np.float32) for k in written)
    assert np.abs(apart[:, 37:101]).max() > 0.1  # the keys were written
    np.testing.assert_allclose(apart, fused, rtol=1e-6 if dtype == "float32" else 0, atol=0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_compiled_segment_write_updates_the_donated_cache_in_place(dtype):
    """K and V out alias K and V in, and no op copies a cache-sized buffer (a copy per segment would
    cost a cache's bytes each time)."""
    config = tiny_config(dtype=dtype)
    cache = llama.KVCache.empty(config, 256)
    segment = jnp.zeros((config.num_layers, 64, config.num_kv_heads, config.head_dim), dtype)
    text = assembly._write_segment.lower(cache.k, cache.v, segment, segment, segment, np.int32(0),
                                         assembly._rope_table(config, 256)).compile().as_text()
    assert "input_output_alias={ {0}: (0, {}, may-alias), {1}: (1, {}, may-alias) }" in text
    shape = f"[{config.num_layers},256,{config.num_kv_heads},{config.head_dim}]"
    assert not [line for line in text.splitlines() if " copy(" in line and shape in line]
