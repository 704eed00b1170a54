"""The backbone's per-pixel workhorses, written in forms XLA:CPU runs well.

The first two compute exactly the textbook function (a "SAME" depthwise 3x3 convolution, a 1x1
convolution as a matmul over channels); only their gradients are hand-written, because
what autodiff emits for them is slow on XLA:CPU:

* the depthwise kernel gradient as nine products of a zero-padded, shifted copy of the
  input with the incoming gradient, each reduced over the whole batch, makes XLA
  materialise nine padded copies and reduce each in a separate pass. Summing the
  products over groups of rows first (strided row slices added in one loop) gives the
  reductions arrays several times smaller, and reducing the nine together (one variadic
  reduction) reads the input and the gradient once instead of nine times;
* the 1x1 convolution's weight gradient x^T g lets XLA pick a transposed layout for g,
  which it then builds by re-running g's producer (the depthwise input gradient) with
  transposed writes, a second, slow copy of the same work. Stating the product as
  (x^T) g, with x transposed, leaves g in its natural layout.

The third, the exact GELU, is stated through ``erf`` (as PyTorch computes it) rather than
``jax.nn.gelu``'s ``erfc``, whose exponential and selects XLA:CPU runs 2-3x slower, forward
and backward; the two agree to float rounding.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

ROW_GROUPS = (8, 4, 2, 1)  # row-group sizes tried, largest first; the first that divides the height is used


def shifted_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """sum_ij pad(x)[i:i+H, j:j+W] * kernel[i, j]: a "SAME" depthwise 3x3 (cross-correlation)."""
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = padded[:, :height, :width] * kernel[0, 0]
    for i in range(3):
        for j in range(3):
            if i or j:
                out = out + padded[:, i : i + height, j : j + width] * kernel[i, j]
    return out


def _kernel_grad(x: jax.Array, grad: jax.Array) -> jax.Array:
    """d loss / d kernel[i, j, c] = sum over pixels of pad(x)[i:i+H, j:j+W, c] * grad[..., c], float32.

    Each tap's products are first added over ``rows`` row-strided slices (one loop, an
    array ``rows`` times smaller); the nine taps are then reduced together, by one variadic
    reduction, so x and the gradient are read in one pass rather than nine.
    """
    height, width = x.shape[1:3]
    rows = next(r for r in ROW_GROUPS if height % r == 0)
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    taps = []
    for i in range(3):
        for j in range(3):
            partial = padded[:, i : i + height : rows, j : j + width] * grad[:, ::rows]
            for r in range(1, rows):
                partial = partial + padded[:, i + r : i + r + height : rows, j : j + width] * grad[:, r::rows]
            taps.append(partial.astype(jnp.float32))
    zeros = (jnp.zeros((), jnp.float32),) * len(taps)
    sums = lax.reduce(tuple(taps), zeros, lambda a, b: tuple(p + q for p, q in zip(a, b)), (0, 1, 2))
    return jnp.stack(sums).reshape(3, 3, -1)


@jax.custom_vjp
def depthwise_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Depthwise 3x3 "SAME" convolution of x [B, H, W, C] with kernel [3, 3, C].

    Nine shifted multiply-adds (XLA:CPU's grouped convolution is several times slower);
    the input gradient is the same operation with the flipped kernel.
    """
    return shifted_taps(x, kernel)


def _depthwise_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return shifted_taps(x, kernel), (x, kernel)


def _depthwise_bwd(residuals: tuple[jax.Array, jax.Array], grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    return shifted_taps(grad, kernel[::-1, ::-1]), _kernel_grad(x, grad).astype(kernel.dtype)


depthwise_conv3x3.defvjp(_depthwise_fwd, _depthwise_bwd)


def _contract_channels(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


@jax.custom_vjp
def channel_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [..., Cin] @ kernel [Cin, Cout]: a 1x1 convolution, computed as flax.linen.Dense does."""
    return _contract_channels(x, kernel)


def _matmul_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _contract_channels(x, kernel), (x, kernel)


def _matmul_bwd(residuals: tuple[jax.Array, jax.Array], grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    grad_x = lax.dot_general(grad, kernel, (((grad.ndim - 1,), (1,)), ((), ())))
    rows_x = x.reshape(-1, x.shape[-1])
    return grad_x, jnp.transpose(rows_x) @ grad.reshape(-1, grad.shape[-1])


channel_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def dense_dot_general(x: jax.Array, kernel: jax.Array, dimension_numbers: Any, precision: Any = None,
                      **unused: Any) -> jax.Array:
    """``flax.linen.Dense(dot_general=...)`` hook: Dense's contraction, through :func:`channel_matmul`."""
    if dimension_numbers != (((x.ndim - 1,), (0,)), ((), ())) or precision is not None:
        raise ValueError(f"dense_dot_general only contracts the last axis with the kernel's first, "
                         f"got {dimension_numbers} at precision {precision}")
    return channel_matmul(x, kernel)


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU, x / 2 * (1 + erf(x / sqrt 2)), as ``torch.nn.functional.gelu`` computes it."""
    return x * 0.5 * (1.0 + lax.erf(x * (2.0 ** -0.5)).astype(x.dtype))
