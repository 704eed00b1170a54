"""The Continuous Expert Assembly (CEA) adapter.

Per image, M probe queries attend over the layer-normalised tokens and their summaries
Z generate r routing bases B and r residual directions D. Every token then assembles
its own update from its affinities to the bases:

    y_i = x_i + gamma * W_o sum_k a_ik d_k,   a_ik = <W_q x~_i, b_k> / tau

i.e. y = x + gamma * W_o (Q B^T D) / tau, a rank-r weight update generated per image
(linear attention with r generated key/value slots).

Everything is computed in the folded order that keeps the cost O(N r C) instead of
O(N C^2): W_q and W_o are applied to the r bases / directions once per image
(<W_q x, b> = <x, W_q^T b>), and the probe keys/values are never materialised per token
(P K^T = (P W_k^T) X~^T, A V = (A X~) W_v). The result is the same function.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cea_jax.configs import AdapterConfig
from cea_jax.models.backbone import SiteAux, layer_norm


def probe_width(channels: int, config: AdapterConfig) -> int:
    """Ch: round(C * probe_dim_ratio), rounded to a positive multiple of the probe heads."""
    heads = config.probe_heads
    return heads * max(1, round(channels * config.probe_dim_ratio / heads))


def topk_mask(scores: jax.Array, k: int) -> jax.Array:
    """True where a score is among the k largest along the last axis (ties may keep more)."""
    kth = jax.lax.top_k(scores, k)[0][..., -1:]
    return scores >= kth


def assemble(
    tokens: jax.Array,
    bases_q: jax.Array,
    directions_o: jax.Array,
    tau: jax.Array,
    affinity: str = "signed",
    top_k: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Each token's update from its affinities to the r components.

    tokens [B, N, C] (normalised features), bases_q [B, r, C] (bases with W_q folded
    in), directions_o [B, r, C] (directions with W_o folded in), tau a scalar. Returns
    (update [B, N, C], affinities [B, N, r]). With affinity "signed" and top_k 0 the
    update is linear in each token; "softmax" normalises over the r components and
    top_k keeps the k strongest per token (by magnitude when signed).
    """
    logits = jnp.einsum("bnc,brc->bnr", tokens, bases_q).astype(jnp.float32) / tau
    if affinity == "signed":
        weights = logits if top_k == 0 else jnp.where(topk_mask(jnp.abs(logits), top_k), logits, 0.0)
    elif affinity == "softmax":
        if top_k:
            logits = jnp.where(topk_mask(logits, top_k), logits, -jnp.inf)
        weights = jax.nn.softmax(logits, axis=-1)
    else:
        raise ValueError(f"affinity must be 'signed' or 'softmax', got {affinity!r}")
    update = jnp.einsum("bnr,brc->bnc", weights.astype(directions_o.dtype), directions_o)
    return update, weights


class ProbeGenerator(nn.Module):
    """Cross-attention hyper-adapter: M probe queries read the image, emit B and D.

    Returns (bases, directions), each [B, r, C]. When M != r a learned r x M mixing
    turns the M probe summaries into r components.
    """

    config: AdapterConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, normed: jax.Array) -> tuple[jax.Array, jax.Array]:
        cfg = self.config
        channels = normed.shape[-1]
        width = probe_width(channels, cfg)
        heads, head_dim, probes = cfg.probe_heads, width // cfg.probe_heads, cfg.num_probes
        stride = cfg.probe_stride
        if stride > 1:
            normed = nn.avg_pool(normed, (stride, stride), (stride, stride), "SAME", count_include_pad=False)
        tokens = normed.reshape(normed.shape[0], -1, channels)

        dense_init = nn.initializers.lecun_normal()
        # Unit-scale probes so the M queries attend differently from the start.
        queries = self.param("probes", nn.initializers.normal(1.0), (probes, width), jnp.float32)
        w_k = self.param("key", dense_init, (channels, width), jnp.float32)
        w_v = self.param("value", dense_init, (channels, width), jnp.float32)
        w_b = self.param("bases", dense_init, (width, channels), jnp.float32)
        w_d = self.param("directions", dense_init, (width, channels), jnp.float32)

        # Folded P K^T: the probes in token space, per head.
        probe_keys = jnp.einsum(
            "mhd,chd->mhc", queries.reshape(probes, heads, head_dim), w_k.reshape(channels, heads, head_dim)
        ).astype(self.dtype)
        logits = jnp.einsum("bnc,mhc->bmhn", tokens, probe_keys).astype(jnp.float32) / math.sqrt(head_dim)
        attn = jax.nn.softmax(logits, axis=-1).astype(self.dtype)  # over the image's tokens
        read = jnp.einsum("bmhn,bnc->bmhc", attn, tokens).astype(jnp.float32)
        summary = jnp.einsum("bmhc,chd->bmhd", read, w_v.reshape(channels, heads, head_dim))
        summary = summary.reshape(-1, probes, width) + queries
        if probes != cfg.rank:
            mix = self.param("mix", nn.initializers.lecun_normal(), (cfg.rank, probes), jnp.float32)
            summary = jnp.einsum("rm,bmd->brd", mix, summary)
        return summary @ w_b, summary @ w_d


class CEAAdapter(nn.Module):
    """CEA at one site: ``(x [B,H,W,C], train) -> (y, {"map": affinities [B,H,W,r]})``.

    The affinity maps are returned on every call (they are needed for the output
    anyway; unused ones are dropped by XLA under jit), so asking for them cannot change
    the restoration.
    """

    config: AdapterConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, SiteAux]:
        del train  # CEA behaves identically in training and inference
        cfg = self.config
        batch, height, width, channels = x.shape
        normed = layer_norm(self.dtype, "norm")(x)
        if cfg.bases == "instance":
            bases, directions = ProbeGenerator(cfg, self.dtype, name="probe")(normed)
        else:
            init = nn.initializers.normal(1.0)
            shape = (cfg.rank, channels)
            bases = jnp.broadcast_to(self.param("static_bases", init, shape, jnp.float32), (batch, *shape))
            directions = jnp.broadcast_to(self.param("static_directions", init, shape, jnp.float32), (batch, *shape))
        if cfg.normalize_bases:
            bases = bases / jnp.maximum(jnp.linalg.norm(bases, axis=-1, keepdims=True), 1e-6)
        w_q = self.param("query", nn.initializers.lecun_normal(), (channels, channels), jnp.float32)
        w_o = self.param("out", nn.initializers.lecun_normal(), (channels, channels), jnp.float32)
        tau_init = math.sqrt(channels) if cfg.tau_init is None else cfg.tau_init
        if cfg.learn_tau:
            tau = jnp.exp(self.param("log_tau", nn.initializers.constant(math.log(tau_init)), (), jnp.float32))
        else:
            tau = jnp.asarray(tau_init, jnp.float32)
        gamma = self.param("gamma", nn.initializers.constant(cfg.gate_init), (channels,), jnp.float32)

        bases_q = jnp.einsum("bkd,cd->bkc", bases, w_q).astype(self.dtype)  # rows W_q^T b_k
        directions_o = (directions @ w_o).astype(self.dtype)  # rows W_o d_k
        update, weights = assemble(
            normed.reshape(batch, -1, channels), bases_q, directions_o, tau, cfg.affinity, cfg.top_k
        )
        y = x + gamma.astype(self.dtype) * update.reshape(x.shape).astype(x.dtype)
        return y, {"map": weights.reshape(batch, height, width, cfg.rank)}
