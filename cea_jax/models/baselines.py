"""The conditioning baselines CEA is compared against, at the same sites so only the module differs.

- ``PromptSite``: PromptIR's prompt generation + fusion (prompts chosen by a softmax
  over GAP features, resized, fused by concat + a transformer block + 1x1 reduction).
- ``ExpertsAdapter``: a MoCE-IR-like static bank of low-rank experts, one chosen per
  image by a noisy top-1 router with a Switch-style load-balance loss.
- ``DescriptorAdapter``: a global degradation descriptor (GAP -> MLP) that scales and
  shifts channels (FiLM), the compact global conditioning the paper argues against.

All share the site interface ``(x, train) -> (y, aux)``; the residual ones (experts,
descriptor) have a per-channel gate gamma (init ``gate_init``) like CEA, and the prompt's
"linear" fusion ends in a zero-initialised projection, so on a trained backbone every
module starts as the identity (as ControlNet's zero convolutions and LoRA's B = 0).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cea_jax.configs import AdapterConfig
from cea_jax.models.backbone import SiteAux, TransformerBlock, layer_norm


class PromptSite(nn.Module):
    """PromptIR's PromptGenBlock followed by its fusion block (noise_level + reduce).

    ``out_channels`` is the 1x1 reduction's width: PromptIR halves the channels at the
    latent site (its level-4 -> 3 upsampler then starts from 4*dim) and keeps them at
    the other two. ``fusion`` "linear" replaces the block and reduction by
    y = x + W [x; prompt], W zero-initialised (residual sites only: out_channels = C).
    """

    prompt_len: int
    prompt_dim: int
    prompt_size: int
    out_channels: int
    num_heads: int
    expansion: float
    dtype: Any = jnp.float32
    fusion: str = "block"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, SiteAux]:
        del train
        batch, height, width, channels = x.shape
        weights = jax.nn.softmax(
            nn.Dense(self.prompt_len, dtype=jnp.float32, name="linear")(jnp.mean(x.astype(jnp.float32), axis=(1, 2))),
            axis=-1,
        )
        shape = (self.prompt_len, self.prompt_size, self.prompt_size, self.prompt_dim)
        prompts = self.param("prompt", nn.initializers.uniform(1.0), shape, jnp.float32)
        prompt = jnp.einsum("bl,lhwd->bhwd", weights, prompts)
        # antialias=False matches torch's F.interpolate(mode="bilinear") in both directions.
        prompt = jax.image.resize(prompt, (batch, height, width, self.prompt_dim), "bilinear", antialias=False)
        conv = dict(use_bias=False, dtype=self.dtype, param_dtype=jnp.float32)
        prompt = nn.Conv(self.prompt_dim, (3, 3), padding="SAME", name="conv3x3", **conv)(prompt.astype(self.dtype))
        fused = jnp.concatenate([x, prompt], axis=-1)
        if self.fusion == "linear":
            if self.out_channels != channels:
                raise ValueError(f"prompt fusion 'linear' needs a residual site, got {channels} -> {self.out_channels}")
            project = nn.Dense(channels, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                               kernel_init=nn.initializers.zeros, name="project")
            return x + project(fused), {}
        fused = TransformerBlock(self.num_heads, self.expansion, self.dtype, name="fuse")(fused)
        return nn.Conv(self.out_channels, (1, 1), name="reduce", **conv)(fused), {}


class ExpertsAdapter(nn.Module):
    """E low-rank experts (C -> rank -> C, GELU) per site; one expert per image.

    The router reads the image's mean normalised features. While training (and with
    ``router_noise``) it adds Gaussian noise scaled by a learned softplus, drawn from
    the ``"router"`` rng stream. The chosen expert's output is weighted by its router
    probability so the router gets a gradient; ``aux["aux_loss"]`` is the Switch
    load-balance loss E * sum_e f_e * p_e times ``load_balance_weight``.
    """

    config: AdapterConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, SiteAux]:
        cfg = self.config
        channels, experts = x.shape[-1], cfg.num_experts
        normed = layer_norm(self.dtype, "norm")(x)
        pooled = jnp.mean(normed.astype(jnp.float32), axis=(1, 2))
        logits = nn.Dense(experts, name="router")(pooled)
        noise_scale = jax.nn.softplus(nn.Dense(experts, name="router_noise")(pooled))
        if train and cfg.router_noise:
            logits = logits + noise_scale * jax.random.normal(self.make_rng("router"), logits.shape)
        probs = jax.nn.softmax(logits, axis=-1)
        choice = jnp.argmax(logits, axis=-1)
        gate = jnp.take_along_axis(probs, choice[:, None], axis=-1)[:, 0]

        init = nn.initializers.lecun_normal(batch_axis=(0,))
        down = self.param("down", init, (experts, channels, cfg.experts_rank), jnp.float32)
        up = self.param("up", init, (experts, cfg.experts_rank, channels), jnp.float32)
        hidden = jax.nn.gelu(jnp.einsum("bhwc,bcr->bhwr", normed, down[choice].astype(self.dtype)), approximate=False)
        out = jnp.einsum("bhwr,brc->bhwc", hidden, up[choice].astype(self.dtype))
        gamma = self.param("gamma", nn.initializers.constant(cfg.gate_init), (channels,), jnp.float32)
        y = x + (gamma * gate[:, None, None, None]).astype(self.dtype) * out.astype(x.dtype)

        fraction = jnp.mean(jax.nn.one_hot(choice, experts), axis=0)
        balance = experts * jnp.sum(fraction * jnp.mean(probs, axis=0))
        return y, {"aux_loss": cfg.load_balance_weight * balance}


class DescriptorAdapter(nn.Module):
    """Global FiLM: GAP(LN(x)) -> MLP -> (scale, shift) applied to every pixel alike."""

    config: AdapterConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, SiteAux]:
        del train
        channels = x.shape[-1]
        hidden = max(1, round(channels * self.config.descriptor_hidden_ratio))
        normed = layer_norm(self.dtype, "norm")(x)
        descriptor = jnp.mean(normed.astype(jnp.float32), axis=(1, 2))
        descriptor = jax.nn.gelu(nn.Dense(hidden, name="hidden")(descriptor), approximate=False)
        scale, shift = jnp.split(nn.Dense(2 * channels, name="film")(descriptor), 2, axis=-1)
        gamma = self.param("gamma", nn.initializers.constant(self.config.gate_init), (channels,), jnp.float32)
        film = scale[:, None, None, :] * normed.astype(jnp.float32) + shift[:, None, None, :]
        return x + (gamma * film).astype(x.dtype), {}
