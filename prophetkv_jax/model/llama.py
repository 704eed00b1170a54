"""Llama in Flax Linen over an explicit, position-addressed KV-cache pytree.

Every row carries its own global position and the slot its K/V is written to, and
attention is masked by positions (key_pos <= query_pos and slot valid), not by row
order. That is what lets ProphetKV recompute an arbitrary, non-contiguous set of rows
against an assembled cache with the same kernel that does ordinary prefill and decode.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prophetkv_jax.model.config import LlamaConfig

Params = dict[str, Any]
Rope = tuple[jax.Array, jax.Array]
# Finite so a row that sees no valid key (a padding row) gets uniform weights, not NaN.
_MASKED = -1e30


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Keys (RoPE applied at their global positions) and values for every layer and slot."""

    k: jax.Array  # [L, S, KV, hd]
    v: jax.Array  # [L, S, KV, hd]
    positions: jax.Array  # [S] int32, global position of the token held in each slot
    valid: jax.Array  # [S] bool, slot holds a token

    @classmethod
    def empty(cls, config: LlamaConfig, capacity: int, dtype: Any = jnp.float32) -> "KVCache":
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


def apply_rope(x: jax.Array, rope: Rope) -> jax.Array:
    """Rotate x [T, heads, hd] by its rows' angles."""
    cos, sin = (t[:, None, :] for t in rope)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x.astype(jnp.float32) * cos + rotated.astype(jnp.float32) * sin).astype(x.dtype)


# ----------------------------------------------------------------------------- modules


class RMSNorm(nn.Module):
    eps: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return normed.astype(x.dtype) * scale.astype(x.dtype)


def _dense(features: int, config: LlamaConfig, name: str) -> nn.Dense:
    return nn.Dense(
        features, use_bias=False, dtype=jnp.dtype(config.dtype), param_dtype=jnp.float32,
        kernel_init=nn.initializers.normal(0.02), name=name,
    )


class Attention(nn.Module):
    config: LlamaConfig

    def setup(self) -> None:
        c = self.config
        self.q_proj = _dense(c.num_heads * c.head_dim, c, "q_proj")
        self.k_proj = _dense(c.num_kv_heads * c.head_dim, c, "k_proj")
        self.v_proj = _dense(c.num_kv_heads * c.head_dim, c, "v_proj")
        self.o_proj = _dense(c.hidden_size, c, "o_proj")

    def project(self, x: jax.Array, rope: Rope) -> tuple[jax.Array, jax.Array, jax.Array]:
        """q [T, H, hd] and k [T, KV, hd] rotated at the rows' positions; v [T, KV, hd]."""
        c, rows = self.config, x.shape[0]
        q = self.q_proj(x).reshape(rows, c.num_heads, c.head_dim)
        k = self.k_proj(x).reshape(rows, c.num_kv_heads, c.head_dim)
        v = self.v_proj(x).reshape(rows, c.num_kv_heads, c.head_dim)
        return apply_rope(q, rope), apply_rope(k, rope), v

    def output(self, attended: jax.Array) -> jax.Array:
        return self.o_proj(attended.reshape(attended.shape[0], -1))


class MLP(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        gate = _dense(c.intermediate_size, c, "gate_proj")(x)
        up = _dense(c.intermediate_size, c, "up_proj")(x)
        return _dense(c.hidden_size, c, "down_proj")(nn.silu(gate) * up)


def attend(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, score_rows: jax.Array | None = None
) -> tuple[jax.Array, jax.Array | None]:
    """Grouped-query attention of rows q [T, H, hd] over slots k, v [S, KV, hd].

    With ``score_rows`` [T] (weights per row), also returns the head-averaged attention
    probabilities summed over those rows, per slot [S]: ProphetKV's Stage-I score.
    """
    rows, heads, head_dim = q.shape
    kv_heads = k.shape[1]
    group = heads // kv_heads
    # Batch (KV head) axis leading on every operand: XLA:CPU then emits library matmuls
    # instead of a naive loop, which halves prefill time at 2K tokens.
    grouped = q.reshape(rows, kv_heads, group, head_dim).transpose(1, 2, 0, 3)
    grouped = grouped.reshape(kv_heads, group * rows, head_dim)
    logits = jnp.einsum(
        "kmd,ksd->kms", grouped, k.transpose(1, 0, 2), preferred_element_type=jnp.float32
    ).reshape(kv_heads, group, rows, -1)
    logits = jnp.where(mask[None, None], logits * head_dim**-0.5, _MASKED)
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum(
        "kms,ksd->kmd", probs.astype(v.dtype).reshape(kv_heads, group * rows, -1), v.transpose(1, 0, 2)
    )
    out = out.reshape(kv_heads, group, rows, head_dim).transpose(2, 0, 1, 3).reshape(rows, heads, head_dim)
    scores = None
    if score_rows is not None:
        scores = jnp.einsum("kgts,t->s", probs, score_rows.astype(jnp.float32)) / heads
    return out, scores


class DecoderLayer(nn.Module):
    config: LlamaConfig

    def setup(self) -> None:
        self.attn_norm = RMSNorm(self.config.rms_norm_eps)
        self.attn = Attention(self.config)
        self.mlp_norm = RMSNorm(self.config.rms_norm_eps)
        self.mlp = MLP(self.config)

    def __call__(
        self, h: jax.Array, rope: Rope, layer_k: jax.Array, layer_v: jax.Array,
        write_slots: jax.Array, mask: jax.Array, score_rows: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None]:
        """Compute the rows' K/V, scatter them into this layer's cache, attend over it."""
        q, k, v = self.qkv(h, rope)
        layer_k = scatter_rows(layer_k, write_slots, k)
        layer_v = scatter_rows(layer_v, write_slots, v)
        attended, scores = attend(q, layer_k, layer_v, mask, score_rows)
        h = h + self.attn.output(attended)
        h = h + self.mlp(self.mlp_norm(h))
        return h, layer_k, layer_v, scores

    def qkv(self, h: jax.Array, rope: Rope) -> tuple[jax.Array, jax.Array, jax.Array]:
        return self.attn.project(self.attn_norm(h), rope)


# ----------------------------------------------------------------------------- functional API


def scatter_rows(slots_array: jax.Array, write_slots: jax.Array, rows: jax.Array) -> jax.Array:
    """Masked scatter: row i goes to slot write_slots[i]; negative slots (padding) are dropped."""
    capacity = slots_array.shape[0]
    target = jnp.where(write_slots < 0, capacity, write_slots)
    return slots_array.at[target].set(rows.astype(slots_array.dtype), mode="drop")


def embed(params: Params, tokens: jax.Array, config: LlamaConfig) -> jax.Array:
    return params["embed"]["embedding"][tokens].astype(jnp.dtype(config.dtype))


def unembed(params: Params, h: jax.Array, config: LlamaConfig) -> jax.Array:
    """Final norm and LM head; logits in fp32."""
    h = RMSNorm(config.rms_norm_eps).apply({"params": params["final_norm"]}, h)
    if config.tie_word_embeddings:
        head = params["embed"]["embedding"].T
    else:
        head = params["lm_head"]["kernel"]
    return jnp.dot(h, head.astype(h.dtype), preferred_element_type=jnp.float32)


def register_rows(cache: KVCache, positions: jax.Array, write_slots: jax.Array) -> KVCache:
    """Record the rows' global positions in their slots and mark the slots valid."""
    return dataclasses.replace(
        cache,
        positions=scatter_rows(cache.positions, write_slots, positions.astype(jnp.int32)),
        valid=scatter_rows(cache.valid, write_slots, jnp.ones_like(write_slots, bool)),
    )


def attention_mask(cache: KVCache, positions: jax.Array) -> jax.Array:
    """[T, S]: a row sees every valid slot at or before its own global position."""
    return (cache.positions[None, :] <= positions[:, None]) & cache.valid[None, :]


def run_layers(
    layer_params: Params, h: jax.Array, rope: Rope, k: jax.Array, v: jax.Array,
    write_slots: jax.Array, mask: jax.Array, config: LlamaConfig,
    score_rows: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None]:
    """Scan the rows through a stack of layers (params and cache both stacked on axis 0).

    Returns the hidden states, the updated K/V stacks and, with ``score_rows``, the
    per-layer Stage-I scores [L, S].
    """
    layer = DecoderLayer(config)

    def step(carry, xs):
        p, layer_k, layer_v = xs
        out, layer_k, layer_v, scores = layer.apply(
            {"params": p}, carry, rope, layer_k, layer_v, write_slots, mask, score_rows
        )
        return out, (layer_k, layer_v, scores)

    h, (k, v, scores) = jax.lax.scan(step, h, (layer_params, k, v))
    return h, k, v, scores


def layer_qkv(
    layer_params: Params, h: jax.Array, rope: Rope, config: LlamaConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One layer's fresh q, k (rotated) and v for rows h, without touching any cache."""
    return DecoderLayer(config).apply({"params": layer_params}, h, rope, method=DecoderLayer.qkv)


def _forward(params, tokens, positions, cache, write_slots, config, score_rows, logits_rows):
    cache = register_rows(cache, positions, write_slots)
    rope = rope_tables(positions, config)
    mask = attention_mask(cache, positions)
    h, k, v, scores = run_layers(
        params["layers"], embed(params, tokens, config), rope, cache.k, cache.v,
        write_slots, mask, config, score_rows,
    )
    if logits_rows is not None:
        h = h[logits_rows]
    return unembed(params, h, config), dataclasses.replace(cache, k=k, v=v), scores


@functools.partial(jax.jit, static_argnames=("config",))
def forward(
    params: Params, tokens: jax.Array, positions: jax.Array, cache: KVCache,
    write_slots: jax.Array, config: LlamaConfig, logits_rows: jax.Array | None = None,
) -> tuple[jax.Array, KVCache]:
    """Run rows (tokens at global positions) through the model, writing their K/V into the cache.

    Prefill, decode and selective recomputation are all this one call; rows with a
    negative write slot are padding and leave the cache untouched. ``logits_rows``
    (row indices) limits the LM head to the rows whose logits are wanted: for a 49K
    vocabulary the head costs a fifth of a prefill when applied to every row.
    """
    logits, cache, _ = _forward(params, tokens, positions, cache, write_slots, config, None, logits_rows)
    return logits, cache


@functools.partial(jax.jit, static_argnames=("config",))
def forward_with_scores(
    params: Params, tokens: jax.Array, positions: jax.Array, cache: KVCache,
    write_slots: jax.Array, score_rows: jax.Array, config: LlamaConfig,
    logits_rows: jax.Array | None = None,
) -> tuple[jax.Array, KVCache, jax.Array]:
    """``forward`` that also returns, per layer, the attention the ``score_rows`` pay to each slot.

    scores[l, s] = sum over rows r (weighted by score_rows[r]) of the head-averaged
    attention probability of r on slot s at layer l: ProphetKV's Stage-I signal when the
    rows are the query against the assembled cache, and the oracle when run in full prefill.
    """
    return _forward(params, tokens, positions, cache, write_slots, config, score_rows, logits_rows)


def init_params(config: LlamaConfig, rng: jax.Array) -> Params:
    """Random parameters in the layout the checkpoint loaders produce."""
    embed_rng, layers_rng, head_rng = jax.random.split(rng, 3)
    c = config
    dummy_h = jnp.zeros((1, c.hidden_size), jnp.dtype(c.dtype))
    dummy_cache = jnp.zeros((1, c.num_kv_heads, c.head_dim), jnp.float32)
    rope = rope_tables(jnp.zeros((1,), jnp.int32), c)

    def init_layer(key):
        return DecoderLayer(c).init(
            key, dummy_h, rope, dummy_cache, dummy_cache, jnp.zeros((1,), jnp.int32),
            jnp.ones((1, 1), bool),
        )["params"]

    params: Params = {
        "embed": {
            "embedding": 0.02 * jax.random.normal(embed_rng, (c.vocab_size, c.hidden_size))
        },
        "layers": jax.vmap(init_layer)(jax.random.split(layers_rng, c.num_layers)),
        "final_norm": {"scale": jnp.ones((c.hidden_size,), jnp.float32)},
    }
    if not c.tie_word_embeddings:
        params["lm_head"] = {
            "kernel": 0.02 * jax.random.normal(head_rng, (c.hidden_size, c.vocab_size))
        }
    return params


# ----------------------------------------------------------------------------- shapes


POWER_OF_TWO_LIMIT, BUCKET_STEP = 1024, 256


def bucket_size(n: int, minimum: int = 64) -> int:
    """Padded length for n rows or slots: lengths within a bucket share one compile.

    Powers of two up to 1024, then multiples of 256: padding rows cost as much as real
    ones, so a 2.1K-token prompt pads to 2304, not 4096 (at most 1/8 extra work above 2K).
    """
    if n < 0:
        raise ValueError(f"length must be >= 0, got {n}")
    if n > POWER_OF_TWO_LIMIT:
        return max(minimum, -(-n // BUCKET_STEP) * BUCKET_STEP)
    return max(minimum, 1 << max(0, n - 1).bit_length())


def pad_rows(
    tokens: np.ndarray, positions: np.ndarray, write_slots: np.ndarray, capacity: int,
    minimum: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad a batch of rows to its bucket (padding rows get slot -1) after bounds-checking slots.

    Scatter silently drops out-of-range writes, so a bad slot is refused here instead.
    """
    tokens, positions, write_slots = (np.asarray(a, np.int32) for a in (tokens, positions, write_slots))
    if not (tokens.shape == positions.shape == write_slots.shape and tokens.ndim == 1):
        raise ValueError(
            f"tokens, positions and write_slots must be equal-length vectors, got shapes "
            f"{tokens.shape}, {positions.shape}, {write_slots.shape}"
        )
    if write_slots.size and (write_slots.min() < 0 or write_slots.max() >= capacity):
        raise ValueError(
            f"write slots must lie in [0, {capacity}) (the cache capacity), got "
            f"[{write_slots.min()}, {write_slots.max()}]"
        )
    padded = bucket_size(tokens.size, minimum)
    extra = padded - tokens.size
    return (
        np.pad(tokens, (0, extra)),
        np.pad(positions, (0, extra)),
        np.pad(write_slots, (0, extra), constant_values=-1),
    )
