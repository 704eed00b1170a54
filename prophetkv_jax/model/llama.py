"""Llama in Flax Linen, used whole through ``Llama(config).apply`` over one params pytree.

The KV cache is an explicit pytree argument. Every row carries its own global position
and the slot its K/V is written to, and attention is masked by positions (key_pos <=
query_pos and slot valid), not by row order. That is what lets ProphetKV recompute an
arbitrary, non-contiguous set of rows against an assembled cache with the same kernel
that does ordinary prefill and decode. The layers are one ``nn.scan`` whose carry holds
the hidden states and the whole stacked cache, so each layer scatters its rows' K/V in
place; the jitted entry points can donate the cache (``donate=True``) so no call copies it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prophetkv_jax.model import attention, weights
from prophetkv_jax.model.attention import (
    blocked_attention,
    choose_kernel,
    fused_attention,
    group_key_lengths,
    mask_bias,
    pack,
    row_groups,
    unpack,
    write_rows,
)
from prophetkv_jax.model.config import LlamaConfig
from prophetkv_jax.model.weights import Params

Rope = tuple[jax.Array, jax.Array]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Keys (RoPE applied at their global positions) and values for every layer and slot."""

    k: jax.Array  # [L, S, KV, hd]
    v: jax.Array  # [L, S, KV, hd]
    positions: jax.Array  # [S] int32, global position of the token held in each slot
    valid: jax.Array  # [S] bool, slot holds a token

    # Each field's logical axes, named as the weights' are (``weights.WEIGHTS``), so the sharding
    # rules that split the k/v projections by KV head split the cache the same way.
    LOGICAL_AXES: ClassVar[dict[str, tuple[str, ...]]] = {
        "k": ("layers", "slots", "kv_heads", "head_dim"),
        "v": ("layers", "slots", "kv_heads", "head_dim"),
        "positions": ("slots",),
        "valid": ("slots",),
    }

    @classmethod
    def empty(cls, config: LlamaConfig, capacity: int, dtype: Any = None) -> "KVCache":
        """Zeroed slots in ``dtype`` (default: the config's compute dtype, so bf16 models keep a bf16 cache)."""
        dtype = jnp.dtype(config.dtype) if dtype is None else dtype
        shape = (config.num_layers, capacity, config.num_kv_heads, config.head_dim)
        return cls(
            k=jnp.zeros(shape, dtype),
            v=jnp.zeros(shape, dtype),
            positions=jnp.zeros((capacity,), jnp.int32),
            valid=jnp.zeros((capacity,), bool),
        )

    @property
    def capacity(self) -> int:
        return self.positions.shape[0]


# ----------------------------------------------------------------------------- RoPE


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
    """Inverse frequencies, with Llama-3 frequency-dependent scaling when configured."""
    dim = config.head_dim
    exponents = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    inv_freq = (1.0 / np.power(np.float32(config.rope_theta), exponents)).astype(np.float32)
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    old_context = scaling.original_max_position_embeddings
    low_freq_wavelen = old_context / scaling.low_freq_factor
    high_freq_wavelen = old_context / scaling.high_freq_factor
    wavelen = 2 * np.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_context / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(is_medium, smoothed, scaled).astype(np.float32)


def rope_tables(positions: jax.Array, config: LlamaConfig) -> Rope:
    """cos/sin tables [T, hd] for HF's rotate-half layout, computed in fp32."""
    angles = positions.astype(jnp.float32)[:, None] * jnp.asarray(rope_inv_freq(config))[None, :]
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def rotate(x: jax.Array, rope: Rope, swapped: jax.Array | None = None) -> jax.Array:
    """Rotate fp32 x [T, heads, hd] by its rows' angles (HF's rotate-half), in fp32.

    The two halves are a size-2 axis, so rotate-half is a reversal of that axis with the sign
    folded into sin: the same products and sums as concatenating (-x2, x1), which XLA:CPU runs
    about twice as slowly. ``swapped`` (fp32 x with its halves exchanged) replaces the reversal
    when the caller computed it in a program of its own: fused into this arithmetic, XLA:CPU does
    not vectorise the reversal, which then costs several times the products for a large x.
    """
    rows, half = x.shape[0], x.shape[-1] // 2
    cos, sin = (t.reshape(rows, 1, 2, half) for t in rope)
    sin = sin * jnp.array([-1.0, 1.0], jnp.float32)[:, None]
    pairs = x.reshape(*x.shape[:-1], 2, half)
    partner = pairs[..., ::-1, :] if swapped is None else swapped.reshape(pairs.shape)
    return (pairs * cos + partner * sin).reshape(x.shape)


def apply_rope(x: jax.Array, rope: Rope) -> jax.Array:
    """``rotate`` for x of any float dtype: fp32 math, the result back in x's dtype."""
    return rotate(x.astype(jnp.float32), rope).astype(x.dtype)


# ----------------------------------------------------------------------------- modules
# One idiom throughout: ``setup`` declares the parameters from the weight table (``weights.create``:
# names, shapes and initialisers live there) and the submodules that several methods share
# (``project``/``output``, ``encode``/``logits``).


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last axis, statistics in fp32."""

    config: LlamaConfig
    weight: str  # the scale's path in the weight table

    def setup(self) -> None:
        self.scale = weights.create(self, self.weight, self.config)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.config.rms_norm_eps)
        return normed.astype(x.dtype) * weights.compute_view(self.scale, self.config).astype(x.dtype)


class Linear(nn.Module):
    """x @ kernel (+ bias where the table has one for this config), in the compute dtype.

    The product accumulates in fp32 and is rounded once, as a bf16 matmul does on every backend;
    asked for a bf16 result instead, XLA:CPU converts both operands to fp32 first."""

    config: LlamaConfig
    weight: str  # path of the kernel's (and bias's) module in the weight table, e.g. "layers/attn/q_proj"

    def setup(self) -> None:
        self.kernel = weights.create(self, f"{self.weight}/kernel", self.config)
        bias = f"{self.weight}/bias"
        self.bias = weights.create(self, bias, self.config) if weights.has(bias, self.config) else None

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = jnp.dtype(self.config.dtype)
        x, kernel = jnp.asarray(x, dtype), jnp.asarray(weights.compute_view(self.kernel, self.config), dtype)
        y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())),
                                preferred_element_type=jnp.float32).astype(dtype)
        if self.bias is not None:
            bias = jnp.asarray(weights.compute_view(self.bias, self.config), dtype)
            y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
        return y


class Embedding(nn.Module):
    """Token embedding; its [V, D] table also serves as the LM head of tied models."""

    config: LlamaConfig

    def setup(self) -> None:
        self.embedding = weights.create(self, "embed/embedding", self.config)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        table = weights.compute_view(self.embedding, self.config)
        return jnp.take(jnp.asarray(table, jnp.dtype(self.config.dtype)), tokens, axis=0)


class LMHead(nn.Module):
    """An untied head: hidden states to fp32 logits."""

    config: LlamaConfig

    def setup(self) -> None:
        self.kernel = weights.create(self, "lm_head/kernel", self.config)

    def __call__(self, h: jax.Array) -> jax.Array:
        kernel = weights.compute_view(self.kernel, self.config)
        return jnp.dot(h, kernel.astype(h.dtype), preferred_element_type=jnp.float32)


class Attention(nn.Module):
    """Llama attention's projections; Qwen2's q/k/v biases and Qwen3's per-head q/k norms come from the table."""

    config: LlamaConfig

    def setup(self) -> None:
        c = self.config
        self.q_proj = Linear(c, "layers/attn/q_proj")
        self.k_proj = Linear(c, "layers/attn/k_proj")
        self.v_proj = Linear(c, "layers/attn/v_proj")
        self.o_proj = Linear(c, "layers/attn/o_proj")
        self.qk_norm = weights.has("layers/attn/q_norm/scale", c)
        if self.qk_norm:
            self.q_norm = RMSNorm(c, "layers/attn/q_norm/scale")
            self.k_norm = RMSNorm(c, "layers/attn/k_norm/scale")

    def project(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """q [T, H, hd], k [T, KV, hd] before RoPE, and v [T, KV, hd]."""
        c, rows = self.config, x.shape[0]
        q = self.q_proj(x).reshape(rows, c.num_heads, c.head_dim)
        k = self.k_proj(x).reshape(rows, c.num_kv_heads, c.head_dim)
        v = self.v_proj(x).reshape(rows, c.num_kv_heads, c.head_dim)
        if self.qk_norm:  # over head_dim, per head, before RoPE
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    def output(self, attended: jax.Array) -> jax.Array:
        return self.o_proj(attended.reshape(attended.shape[0], -1))


class MLP(nn.Module):
    """SwiGLU feed-forward."""

    config: LlamaConfig

    def setup(self) -> None:
        self.gate_proj = Linear(self.config, "layers/mlp/gate_proj")
        self.up_proj = Linear(self.config, "layers/mlp/up_proj")
        self.down_proj = Linear(self.config, "layers/mlp/down_proj")

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(nn.silu(self.gate_proj(x)) * self.up_proj(x))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rows:
    """What every layer needs about the rows in flight and the slots they may see."""

    rope: Rope
    positions: jax.Array  # [T] global position of each row
    targets: jax.Array  # [T] slot each row's K/V goes to; capacity (dropped) for padding rows
    key_positions: jax.Array  # [S] the cache's slot positions, these rows registered
    key_valid: jax.Array  # [S]
    score_rows: jax.Array | None  # [T] Stage-I weight per row, or None
    bias: jax.Array | None  # [1, 1, T, S] additive mask for the masked fused kernels, else None
    key_lengths: jax.Array | None  # [groups] slot prefix per row group for the masked fused kernels, else None
    kernel: str = dataclasses.field(metadata={"static": True})  # attention.choose_kernel's choice
    cache_dtype: str = dataclasses.field(metadata={"static": True})  # the stacks' dtype (the layers carry them packed)
    raw_keys: bool = dataclasses.field(default=False, metadata={"static": True})  # hand back pre-RoPE K


def prepare_rows(
    cache: KVCache, positions: jax.Array, write_slots: jax.Array, config: LlamaConfig,
    score_rows: jax.Array | None = None, causal_prefix: bool = False, raw_keys: bool = False,
) -> tuple[KVCache, Rows]:
    """Register the rows' positions in their slots (negative slots, padding, write nothing) and
    choose the attention kernel; ``causal_prefix``: the rows are positions 0..T-1 in slots 0..T-1."""
    targets = jnp.where(write_slots < 0, cache.capacity, write_slots)
    cache = dataclasses.replace(
        cache,
        positions=cache.positions.at[targets].set(positions.astype(jnp.int32), mode="drop"),
        valid=cache.valid.at[targets].set(True, mode="drop"),
    )
    kernel = choose_kernel(
        attention.platform(), str(cache.k.dtype), config.head_dim, wants_scores=score_rows is not None,
        causal_prefix=causal_prefix and positions.shape[0] <= cache.capacity, rows=positions.shape[0],
        slots=cache.capacity, heads=config.num_heads, kv_heads=config.num_kv_heads,
    )
    bias = key_lengths = None
    if kernel.endswith("masked"):
        bias = mask_bias(positions, cache.positions, cache.valid, cache.k.dtype)
        key_lengths = group_key_lengths(positions, cache.positions, cache.valid, row_groups(positions.shape[0]))
    rows = Rows(rope_tables(positions, config), positions, targets, cache.positions, cache.valid, score_rows,
                bias, key_lengths, kernel, str(cache.k.dtype), raw_keys)
    return cache, rows


class DecoderLayer(nn.Module):
    """One layer as the body of the layer scan: carry (h, K stack, V stack), input the layer index."""

    config: LlamaConfig

    def setup(self) -> None:
        self.attn_norm = RMSNorm(self.config, "layers/attn_norm/scale")
        self.attn = Attention(self.config)
        self.mlp_norm = RMSNorm(self.config, "layers/mlp_norm/scale")
        self.mlp = MLP(self.config)

    def __call__(
        self, carry: tuple[jax.Array, jax.Array, jax.Array], layer: jax.Array, rows: Rows
    ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], dict[str, jax.Array | None]]:
        """Write the rows' K/V into slice ``layer`` of the stacks in place, attend over it; per layer,
        the Stage-I scores and the keys before RoPE when ``rows`` asks for them."""
        h, k_stack, v_stack = carry
        q, raw_k, v = self.attn.project(self.attn_norm(h))
        q, k = apply_rope(q, rows.rope), apply_rope(raw_k, rows.rope)
        k_stack = write_rows(k_stack, layer, rows.targets, k.astype(rows.cache_dtype))
        v_stack = write_rows(v_stack, layer, rows.targets, v.astype(rows.cache_dtype))
        keys, values = unpack(k_stack, rows.cache_dtype), unpack(v_stack, rows.cache_dtype)
        if rows.kernel == "blocked":
            attended, scores = blocked_attention(
                q, keys, values, layer, rows.positions, rows.key_positions, rows.key_valid, rows.score_rows,
            )
        else:
            attended = fused_attention(q, keys[layer], values[layer], rows.kernel, rows.bias, rows.key_lengths)
            scores = None
        h = h + self.attn.output(attended)
        h = h + self.mlp(self.mlp_norm(h))
        per_layer = {"scores": scores, "raw_keys": raw_k if rows.raw_keys else None}
        return (h, k_stack, v_stack), per_layer

    def qkv(self, h: jax.Array, rope: Rope) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Fresh q, k rotated by ``rope``, and v, without touching a cache (CacheBlend's check layer)."""
        q, k, v = self.attn.project(self.attn_norm(h))
        return apply_rope(q, rope), apply_rope(k, rope), v


class Llama(nn.Module):
    """The whole model; params {embed, layers (stacked on axis 0), final_norm, lm_head?}.

    With ``unrolled`` the layers run as a Python loop over params {layers_0, layers_1, ...}
    (``weights.unstack_layers``): the decode loop on CPU, where XLA copies a layer's slice of
    the stacked weights before every matmul, i.e. reads the weights three times per token.
    """

    config: LlamaConfig
    unrolled: bool = False

    def setup(self) -> None:
        c = self.config
        self.embed = Embedding(c)
        if self.unrolled:
            self.layers = [DecoderLayer(c) for _ in range(c.num_layers)]
        else:
            # Scan length comes from the layer indices passed in: a slice of the stacked params
            # runs a sub-range of layers against the full cache (CacheBlend/KVShare's layer split).
            self.layers = nn.scan(
                DecoderLayer, variable_axes={"params": 0}, split_rngs={"params": True},
                in_axes=(0, nn.broadcast),
            )(c)
        self.final_norm = RMSNorm(c, "final_norm/scale")
        self.tied = not weights.has("lm_head/kernel", c)
        if not self.tied:
            self.lm_head = LMHead(c)

    def __call__(
        self, tokens: jax.Array, positions: jax.Array, cache: KVCache, write_slots: jax.Array,
        score_rows: jax.Array | None = None, logits_rows: jax.Array | None = None, causal_prefix: bool = False,
    ) -> tuple[jax.Array, KVCache, jax.Array | None]:
        cache, rows = prepare_rows(cache, positions, write_slots, self.config, score_rows, causal_prefix)
        layers = jnp.arange(self.config.num_layers)
        h, cache, per_layer = self.run_layers(self.embed(tokens), cache, rows, layers)
        if logits_rows is not None:
            h = h[logits_rows]
        return self.logits(h), cache, per_layer["scores"]

    def encode(self, tokens: jax.Array, cache: KVCache) -> tuple[KVCache, jax.Array]:
        """Rows 0..T-1 of one segment alone: its cache and its keys before RoPE [L, T, KV, hd]."""
        positions = jnp.arange(tokens.shape[0], dtype=jnp.int32)
        cache, rows = prepare_rows(cache, positions, positions, self.config, causal_prefix=True, raw_keys=True)
        _, cache, per_layer = self.run_layers(self.embed(tokens), cache, rows, jnp.arange(self.config.num_layers))
        return cache, per_layer["raw_keys"]

    def run_layers(
        self, h: jax.Array, cache: KVCache, rows: Rows, layers: jax.Array
    ) -> tuple[jax.Array, KVCache, dict[str, jax.Array | None]]:
        """Carry rows through the cache layers ``layers``; per layer [len, ...]: the Stage-I scores
        (with ``rows.score_rows``) and the keys before RoPE (with ``rows.raw_keys``), else None."""
        carry = (h, pack(cache.k), pack(cache.v))  # packed once per pass, not around every layer's scatter
        if self.unrolled:  # every layer, in order (the decode loop)
            for index, layer in enumerate(self.layers):
                carry, _ = layer(carry, jnp.int32(index), rows)
            (h, k, v), per_layer = carry, {"scores": None, "raw_keys": None}
        else:
            (h, k, v), per_layer = self.layers(carry, layers, rows)
        return h, dataclasses.replace(cache, k=unpack(k, cache.k.dtype), v=unpack(v, cache.v.dtype)), per_layer

    def embed_tokens(self, tokens: jax.Array) -> jax.Array:
        return self.embed(tokens)

    def logits(self, h: jax.Array) -> jax.Array:
        """Final norm and LM head; logits in fp32."""
        h = self.final_norm(h)
        if self.tied:  # contract with [V, D] as stored: no transposed copy per call
            embedding = self.embed.embedding.astype(h.dtype)
            return jnp.einsum("td,vd->tv", h, embedding, preferred_element_type=jnp.float32)
        return self.lm_head(h)


# ----------------------------------------------------------------------------- functional API


def layer_qkv(
    layer_params: Params, h: jax.Array, rope: Rope, config: LlamaConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One layer's fresh q, k (rotated) and v for rows h, without touching any cache."""
    return DecoderLayer(config).apply({"params": layer_params}, h, rope, method=DecoderLayer.qkv)


def _forward(params, tokens, positions, cache, write_slots, config, score_rows, logits_rows, causal_prefix=False):
    return Llama(config).apply(
        {"params": params}, tokens, positions, cache, write_slots, score_rows, logits_rows, causal_prefix)


_STATIC = ("config", "causal_prefix")
_forward_jit = jax.jit(_forward, static_argnames=_STATIC)
_forward_donating = jax.jit(_forward, static_argnames=_STATIC, donate_argnames=("cache",))


def forward(
    params: Params, tokens: jax.Array, positions: jax.Array, cache: KVCache,
    write_slots: jax.Array, config: LlamaConfig, logits_rows: jax.Array | None = None,
    donate: bool = False, causal_prefix: bool = False,
) -> tuple[jax.Array, KVCache]:
    """Run rows (tokens at global positions) through the model, writing their K/V into the cache.

    Prefill, decode and selective recomputation are all this one call; rows with a
    negative write slot are padding and leave the cache untouched. ``logits_rows``
    (row indices) limits the LM head to the rows whose logits are wanted: for a 49K
    vocabulary the head costs a fifth of a prefill when applied to every row. With
    ``donate`` the caller hands over ``cache`` (it must not be used again) and the update
    happens in its buffers instead of a copy. ``causal_prefix`` promises that the rows are
    positions 0..T-1 written to slots 0..T-1 (a full prefill): accelerators then use a plain
    causal fused kernel instead of a position mask.
    """
    run = _forward_donating if donate else _forward_jit
    logits, cache, _ = run(params, tokens, positions, cache, write_slots, config, None, logits_rows, causal_prefix)
    return logits, cache


@functools.partial(jax.jit, static_argnames=("config",), donate_argnames=("cache",))
def encode(params: Params, tokens: jax.Array, cache: KVCache, config: LlamaConfig) -> tuple[KVCache, jax.Array]:
    """``Llama.encode``: a segment prefilled alone into ``cache`` (donated), with its pre-RoPE keys."""
    return Llama(config).apply({"params": params}, tokens, cache, method="encode")


def forward_with_scores(
    params: Params, tokens: jax.Array, positions: jax.Array, cache: KVCache,
    write_slots: jax.Array, score_rows: jax.Array, config: LlamaConfig,
    logits_rows: jax.Array | None = None, donate: bool = False,
) -> tuple[jax.Array, KVCache, jax.Array]:
    """``forward`` that also returns, per layer, the attention the ``score_rows`` pay to each slot.

    scores[l, s] = sum over rows r (weighted by score_rows[r]) of the head-averaged
    attention probability of r on slot s at layer l: ProphetKV's Stage-I signal when the
    rows are the query against the assembled cache, and the oracle when run in full prefill.
    """
    run = _forward_donating if donate else _forward_jit
    return run(params, tokens, positions, cache, write_slots, config, score_rows, logits_rows)


def init_params(config: LlamaConfig, rng: jax.Array) -> Params:
    """Random parameters in the layout the checkpoint loaders produce."""
    one = jnp.zeros((1,), jnp.int32)
    return Llama(config).init(rng, one, one, KVCache.empty(config, 1), one)["params"]
