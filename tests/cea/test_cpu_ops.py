"""cpu_ops computes the textbook ops: XLA's grouped convolution and Flax Dense's contraction, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cea_jax.models import backbone, cpu_ops

TOL = dict(rtol=1e-5, atol=1e-5)


def grouped_conv(x, kernel):
    """The depthwise 3x3 as XLA's own grouped convolution (one group per channel)."""
    return lax.conv_general_dilated(x, kernel[:, :, None, :], (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])


def assert_same_function(ours, reference, *args, seed=0):
    """Equal values, and equal vector-Jacobian products for a random cotangent, in float32."""
    got, got_vjp = jax.vjp(ours, *args)
    want, want_vjp = jax.vjp(reference, *args)
    np.testing.assert_allclose(got, want, **TOL)
    cotangent = jnp.asarray(np.random.RandomState(seed).randn(*want.shape).astype(np.float32))
    for got_grad, want_grad in zip(got_vjp(cotangent), want_vjp(cotangent), strict=True):
        assert got_grad.shape == want_grad.shape and got_grad.dtype == want_grad.dtype
        np.testing.assert_allclose(got_grad, want_grad, **TOL)


# Heights divisible by 8, 4, 2 and by none of them: every row-group size of the kernel gradient.
@pytest.mark.parametrize("shape", [(2, 16, 9, 5), (3, 12, 7, 4), (1, 6, 6, 3), (2, 5, 11, 6), (1, 1, 1, 2)])
def test_depthwise_conv_equals_the_grouped_convolution_in_value_and_gradients(shape):
    rng = np.random.RandomState(sum(shape))
    x = jnp.asarray(rng.randn(*shape).astype(np.float32))
    kernel = jnp.asarray(rng.randn(3, 3, shape[-1]).astype(np.float32))
    assert_same_function(cpu_ops.depthwise_conv3x3, grouped_conv, x, kernel)
    assert_same_function(jax.jit(cpu_ops.depthwise_conv3x3), grouped_conv, x, kernel)


def test_channel_matmul_equals_dense_contraction_in_value_and_gradients():
    rng = np.random.RandomState(3)
    x = jnp.asarray(rng.randn(2, 5, 7, 6).astype(np.float32))
    kernel = jnp.asarray(rng.randn(6, 10).astype(np.float32))
    dense = lambda x, k: lax.dot_general(x, k, (((3,), (0,)), ((), ())))  # noqa: E731 (as flax.linen.Dense)
    assert_same_function(cpu_ops.channel_matmul, dense, x, kernel)
    assert_same_function(jax.jit(cpu_ops.channel_matmul), dense, x, kernel)


def test_dense_hook_refuses_a_contraction_it_does_not_compute():
    x, kernel = jnp.ones((2, 3)), jnp.ones((2, 4))
    with pytest.raises(ValueError, match="only contracts the last axis"):
        cpu_ops.dense_dot_general(x, kernel, (((0,), (0,)), ((), ())))


def test_the_backbone_uses_the_cpu_ops():
    assert backbone.depthwise_conv3x3 is cpu_ops.depthwise_conv3x3
    assert backbone.dense_dot_general is cpu_ops.dense_dot_general


def test_the_kernel_gradient_reduces_its_nine_taps_in_one_pass():
    """One reduction over the input and the gradient, not one per tap (nine passes over both, 2-4x slower)."""
    x = jnp.ones((2, 16, 8, 5), jnp.float32)
    hlo = jax.jit(cpu_ops._kernel_grad).lower(x, x).as_text()
    assert hlo.count("stablehlo.reduce(") == 1, hlo


def test_gelu_is_the_exact_gelu_in_value_and_gradient():
    x = jnp.linspace(-6.0, 6.0, 97, dtype=jnp.float32)
    assert_same_function(cpu_ops.gelu, lambda x: jax.nn.gelu(x, approximate=False), x)
    assert backbone.gelu is cpu_ops.gelu
