"""Assembly's own bf16 conversions equal XLA's bit for bit, specials included."""

import jax.numpy as jnp
import numpy as np

from prophetkv_jax import assembly


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
