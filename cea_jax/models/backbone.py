"""Restormer / PromptIR U-Net in Flax Linen, NHWC, as their reference code builds it.

The U-Net exposes named *sites* (after every transformer block, and after the latent
and decoder levels 3 and 2) where a conditioning module can be inserted. Which module
goes where is decided by a factory passed in (``site_adapter``), so the backbone code is
shared verbatim by every variant and its parameter names do not depend on the variant:
a variant's parameters are the backbone's plus ``adapter_*`` entries.

Parameters are float32; ``config.dtype`` is the compute dtype. The restored image is
float32. Inputs of any size are reflect-padded to a multiple of 8 and cropped back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from cea_jax.configs import ModelConfig
from cea_jax.models.cpu_ops import dense_dot_general, depthwise_conv3x3, gelu

SiteAux = dict[str, jax.Array]
# Stages in forward order: (name, index into num_blocks/heads, channel multiple of dim, scale).
STAGES = (
    ("encoder_level1", 0, 1, 1),
    ("encoder_level2", 1, 2, 2),
    ("encoder_level3", 2, 4, 4),
    ("latent", 3, 8, 8),
    ("decoder_level3", 2, 4, 4),
    ("decoder_level2", 1, 2, 2),
    ("decoder_level1", 0, 2, 1),
    ("refinement", 0, 2, 1),
)
DECODER_STAGES = ("decoder_level3", "decoder_level2", "decoder_level1")
# Level outputs PromptIR conditions (its prompt3, prompt2, prompt1 in that order).
LEVEL_SITES = ("latent", "decoder_level3", "decoder_level2")
PAD_MULTIPLE = 8  # three 2x downsamplings


@dataclasses.dataclass(frozen=True)
class Site:
    """A place in the U-Net where a conditioning module may act.

    ``kind`` is "block" (after one transformer block of ``stage``) or "level" (after the
    whole ``stage``); ``channels`` and ``scale`` (downsampling factor) describe the
    features there.
    """

    name: str
    stage: str
    kind: str
    channels: int
    scale: int


class SiteModule(Protocol):
    """A conditioning module: features in, features and auxiliary outputs out."""

    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, SiteAux]: ...


# Returns the (unbound) Flax module for a site, which must behave as a SiteModule, or None.
SiteFactory = Callable[[Site], "SiteModule | None"]


def compute_dtype(name: str) -> Any:
    """The jnp dtype for a config's ``dtype`` string."""
    return jnp.dtype(name)


def pixel_unshuffle(x: jax.Array, factor: int = 2) -> jax.Array:
    """[B, H, W, C] -> [B, H/f, W/f, C*f*f], channel order (c, i, j) as PyTorch's."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // factor, factor, w // factor, factor, c)
    return x.transpose(0, 1, 3, 5, 2, 4).reshape(b, h // factor, w // factor, c * factor * factor)


def pixel_shuffle(x: jax.Array, factor: int = 2) -> jax.Array:
    """Inverse of :func:`pixel_unshuffle`: [B, H, W, C*f*f] -> [B, H*f, W*f, C]."""
    b, h, w, c = x.shape
    out = c // (factor * factor)
    x = x.reshape(b, h, w, out, factor, factor)
    return x.transpose(0, 1, 4, 2, 5, 3).reshape(b, h * factor, w * factor, out)


def pad_to_multiple(x: jax.Array, multiple: int = PAD_MULTIPLE) -> jax.Array:
    """Reflect-pad H and W at the bottom/right up to a multiple (as Restormer's test script)."""
    _, h, w, _ = x.shape
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="reflect")


def _l2_normalize(x: jax.Array, axis: int, eps: float = 1e-12) -> jax.Array:
    """As torch.nn.functional.normalize: x / max(||x||, eps)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / jnp.maximum(norm, eps)


# PyTorch's default Conv2d/Linear init (kaiming_uniform with a=sqrt(5): U(+-1/sqrt(fan_in))),
# which Restormer/PromptIR train from. Flax's lecun_normal has 3x the variance per layer and,
# compounded over the U-Net, starts the tiny model ~1.1 MAE away from its input.
TORCH_DEFAULT_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _conv(features: int, kernel: int, dtype: Any, name: str) -> nn.Module:
    """Bias-free "SAME" convolution; a 1x1 one is a Dense over channels (a plain matmul,
    which XLA:CPU runs several times faster than the equivalent convolution)."""
    if kernel == 1:
        return nn.Dense(features, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                        kernel_init=TORCH_DEFAULT_INIT, dot_general=dense_dot_general, name=name)
    return nn.Conv(
        features, (kernel, kernel), padding="SAME", use_bias=False, dtype=dtype,
        param_dtype=jnp.float32, kernel_init=TORCH_DEFAULT_INIT, name=name,
    )


class DepthwiseConv3x3(nn.Module):
    """Bias-free depthwise 3x3 convolution; kernel laid out as ``nn.Conv``'s ([3, 3, 1, C])."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param("kernel", TORCH_DEFAULT_INIT, (3, 3, 1, channels), jnp.float32)
        return depthwise_conv3x3(x.astype(self.dtype), kernel[:, :, 0].astype(self.dtype))


def layer_norm(dtype: Any, name: str | None = None) -> nn.LayerNorm:
    """Restormer's WithBias LayerNorm over channels (biased variance, eps 1e-5)."""
    return nn.LayerNorm(epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, name=name)


class MDTA(nn.Module):
    """Multi-Dconv-head Transposed Attention: attention across channels, not pixels.

    Cost is linear in the number of pixels, which is what lets Restormer run on full
    resolution images. q and k are L2-normalised over the spatial axis and the C/h x C/h
    logits are scaled by a learned per-head temperature (init 1).
    """

    num_heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        heads = self.num_heads
        qkv = _conv(3 * c, 1, self.dtype, "qkv")(x)
        qkv = DepthwiseConv3x3(self.dtype, name="qkv_dwconv")(qkv)
        q, k, v = jnp.split(qkv.reshape(b, h * w, 3 * c), 3, axis=-1)
        q, k, v = (t.reshape(b, h * w, heads, c // heads) for t in (q, k, v))
        q = _l2_normalize(q.astype(jnp.float32), axis=1)
        k = _l2_normalize(k.astype(jnp.float32), axis=1)
        temperature = self.param("temperature", nn.initializers.ones, (heads,), jnp.float32)
        logits = jnp.einsum("bnhc,bnhd->bhcd", q, k) * temperature[None, :, None, None]
        attn = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhcd,bnhd->bnhc", attn, v).reshape(b, h, w, c)
        return _conv(c, 1, self.dtype, "project_out")(out)


class GDFN(nn.Module):
    """Gated-Dconv Feed-Forward Network: gelu(x1) * x2 after a depthwise 3x3."""

    expansion: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        hidden = int(c * self.expansion)
        y = _conv(2 * hidden, 1, self.dtype, "project_in")(x)
        y = DepthwiseConv3x3(self.dtype, name="dwconv")(y)
        y1, y2 = jnp.split(y, 2, axis=-1)
        y = gelu(y1) * y2
        return _conv(c, 1, self.dtype, "project_out")(y)


class TransformerBlock(nn.Module):
    """Pre-norm MDTA and GDFN, each with a residual connection."""

    num_heads: int
    expansion: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + MDTA(self.num_heads, self.dtype, name="attn")(layer_norm(self.dtype, "norm1")(x))
        return x + GDFN(self.expansion, self.dtype, name="ffn")(layer_norm(self.dtype, "norm2")(x))


class Downsample(nn.Module):
    """conv3x3 C -> C/2, then PixelUnshuffle(2): half resolution, twice the channels."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return pixel_unshuffle(_conv(x.shape[-1] // 2, 3, self.dtype, "conv")(x))


class Upsample(nn.Module):
    """conv3x3 C -> 2C, then PixelShuffle(2): twice the resolution, half the channels."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return pixel_shuffle(_conv(2 * x.shape[-1], 3, self.dtype, "conv")(x))


class Restormer(nn.Module):
    """The Restormer U-Net with optional conditioning modules at its sites.

    ``site_adapter(site)`` returns the module for a site (created inside this module's
    scope so its parameters live here as ``adapter_<site name>``) or None to leave it
    empty. Calling returns ``(restored, site_aux)``: restored [B, H, W, 3] float32 and,
    for every occupied site, the auxiliary dict its module produced.
    """

    config: ModelConfig
    site_adapter: SiteFactory | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, SiteAux]]:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected images [B, H, W, 3], got an array of shape {tuple(x.shape)}")
        cfg = self.config
        dtype = compute_dtype(cfg.dtype)
        height, width = x.shape[1:3]
        padded = pad_to_multiple(x.astype(jnp.float32))
        collected: dict[str, SiteAux] = {}
        stages = {name: (level, mult, scale) for name, level, mult, scale in STAGES}

        def site(x: jax.Array, name: str, stage: str, kind: str) -> jax.Array:
            _, mult, scale = stages[stage]
            spec = Site(name, stage, kind, cfg.dim * mult, scale)
            module = self.site_adapter(spec) if self.site_adapter is not None else None
            if module is None:
                return x
            x, aux = module(x, train)
            if "map" in aux:  # routing maps are cropped back to the unpadded image's extent
                aux = dict(aux, map=aux["map"][:, : -(-height // scale), : -(-width // scale)])
            collected[name] = aux
            return x

        def stage(x: jax.Array, name: str) -> jax.Array:
            level, _, _ = stages[name]
            count = cfg.num_refinement_blocks if name == "refinement" else cfg.num_blocks[level]
            for i in range(count):
                x = TransformerBlock(cfg.heads[level], cfg.ffn_expansion, dtype, name=f"{name}_{i}")(x)
                x = site(x, f"{name}_block{i}", name, "block")
            if name in LEVEL_SITES:
                x = site(x, f"{name}_out", name, "level")
            return x

        def reduce(x: jax.Array, channels: int, name: str) -> jax.Array:
            return _conv(channels, 1, dtype, name)(x)

        enc1 = stage(_conv(cfg.dim, 3, dtype, "patch_embed")(padded.astype(dtype)), "encoder_level1")
        enc2 = stage(Downsample(dtype, name="down1_2")(enc1), "encoder_level2")
        enc3 = stage(Downsample(dtype, name="down2_3")(enc2), "encoder_level3")
        latent = stage(Downsample(dtype, name="down3_4")(enc3), "latent")
        dec3 = jnp.concatenate([Upsample(dtype, name="up4_3")(latent), enc3], axis=-1)
        dec3 = stage(reduce(dec3, 4 * cfg.dim, "reduce_chan_level3"), "decoder_level3")
        dec2 = jnp.concatenate([Upsample(dtype, name="up3_2")(dec3), enc2], axis=-1)
        dec2 = stage(reduce(dec2, 2 * cfg.dim, "reduce_chan_level2"), "decoder_level2")
        # Level 1 keeps the 2*dim channels of the concatenation (no 1x1 reduction).
        dec1 = jnp.concatenate([Upsample(dtype, name="up2_1")(dec2), enc1], axis=-1)
        refined = stage(stage(dec1, "decoder_level1"), "refinement")
        out = _conv(3, 3, dtype, "output")(refined).astype(jnp.float32) + padded
        return out[:, :height, :width, :], collected
