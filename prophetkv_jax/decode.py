"""Text generation with the explicit KV cache: greedy or temperature/top-p sampling.

``decode_from_cache`` continues from any filled cache (an ordinary prefill or a ProphetKV
blended one); ``generate`` prefills a prompt first. The command line is
:mod:`prophetkv_jax.generate`.
"""

from __future__ import annotations

import functools
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from prophetkv_jax import recompute
from prophetkv_jax.buckets import bucket_size
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import LlamaConfig
from prophetkv_jax.model.weights import unstack_layers
from prophetkv_jax.sampling import check_sampling


@jax.jit
def _sample(logits: jax.Array, key: jax.Array, temperature: jax.Array, top_p: jax.Array) -> jax.Array:
    """One token from fp32 logits [V]: nucleus sampling at a temperature (traced: one compile)."""
    logits = logits / temperature
    order = jnp.argsort(-logits)
    probs = jax.nn.softmax(logits[order])
    keep = jnp.cumsum(probs) - probs < top_p  # the smallest prefix reaching top_p (always >= 1 token)
    filtered = jnp.where(keep, logits[order], -jnp.inf)
    return order[jax.random.categorical(key, filtered)]


def pick_token(logits: np.ndarray, temperature: float, top_p: float, key: jax.Array) -> int:
    if temperature <= 0.0:
        return int(np.argmax(logits))
    return int(_sample(jnp.asarray(logits, jnp.float32), key, jnp.float32(temperature), jnp.float32(top_p)))


def check_finite_logits(logits: np.ndarray) -> None:
    """Non-finite logits decode as token 0 over and over: an answer that looks like one. Refuse instead."""
    if not np.isfinite(logits).all():
        raise FloatingPointError("the model's logits are not finite (NaN/inf) for this prompt; its weights or "
                                 "--dtype overflow make every answer meaningless")


def _next_token(logits: jax.Array, key: jax.Array, greedy: bool, temperature: jax.Array, top_p: jax.Array) -> jax.Array:
    if greedy:
        return jnp.argmax(logits).astype(jnp.int32)
    return _sample(logits, key, temperature, top_p).astype(jnp.int32)


def _decode_steps(params, cache, first_token, position, limit, eos, key, config, buffer, greedy, temperature, top_p):
    """Tokens [buffer], their count and the final cache: a ``lax.while_loop`` that stops at
    ``limit`` or an EOS token.

    Token i (i >= 1) comes from feeding token i-1 at position ``position + i - 1``; the
    cache is the loop's carry, so each step writes one slot per layer in place. On CPU the
    layers run unrolled over per-layer weights split off once, before the loop (a transient
    copy of the layer weights): a scanned stack is re-sliced, i.e. copied, every step.
    """
    unrolled = jax.default_backend() == "cpu"
    model = llama.Llama(config, unrolled=unrolled)
    params = unstack_layers(params) if unrolled else params

    def running(state):
        step, _, _, _, done = state
        return (step < limit) & ~done

    def step_once(state):
        step, tokens, cache, key, _ = state
        at = (position + step - 1)[None]
        logits, cache, _ = model.apply({"params": params}, tokens[step - 1][None], at, cache, at)
        key, sub = jax.random.split(key)
        token = _next_token(logits[-1], sub, greedy, temperature, top_p)
        return step + 1, tokens.at[step].set(token), cache, key, jnp.isin(token, eos)

    tokens = jnp.zeros((buffer,), jnp.int32).at[0].set(first_token)
    state = (jnp.int32(1), tokens, cache, key, jnp.isin(first_token, eos))
    step, tokens, cache, _, _ = jax.lax.while_loop(running, step_once, state)
    return tokens, step, cache  # returning the cache lets the donated input buffers hold the carry


_STATIC = ("config", "buffer", "greedy")
_decode_loop = jax.jit(_decode_steps, static_argnames=_STATIC, donate_argnames=("cache",))


@functools.partial(jax.jit, static_argnames=("config", "buffer"), donate_argnames=("caches",))
def _greedy_loops(params, caches, first_tokens, positions, limit, eos, config, buffer):
    """``_decode_steps`` vmapped over stacked caches: the weights are read once per step, not B times."""
    key = jax.random.PRNGKey(0)  # unused by greedy decoding

    def one(cache, first_token, position):
        return _decode_steps(params, cache, first_token, position, limit, eos, key, config, buffer, True, 0.0, 1.0)

    return jax.vmap(one)(caches, first_tokens, positions)


def _eos_array(eos_ids: Iterable[int]) -> np.ndarray:
    """EOS ids as a device-comparable vector (-1 matches no token when there are none)."""
    return np.asarray(sorted(set(eos_ids)) or [-1], np.int32)


def _check_room(next_positions: Iterable[int], max_new_tokens: int, capacity: int) -> None:
    if max(next_positions) + max_new_tokens > capacity:
        raise ValueError(f"{max_new_tokens} new tokens exceed the cache capacity {capacity}")


def decode_from_cache(
    params: llama.Params, config: LlamaConfig, cache: llama.KVCache, last_logits: np.ndarray,
    next_position: int, max_new_tokens: int, eos_ids: Iterable[int] = (), *,
    temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, donate: bool = False,
) -> list[int]:
    """Tokens following a prefilled cache, decoded on the device; stops after an EOS token.

    The caller's cache stays intact (the loop runs on a copy) unless ``donate`` hands it over.
    """
    check_sampling(temperature, top_p)
    check_finite_logits(last_logits)
    _check_room([next_position], max_new_tokens, cache.capacity)
    key, sub = jax.random.split(jax.random.PRNGKey(seed))
    first = pick_token(last_logits, temperature, top_p, sub)
    working = cache if donate else jax.tree.map(jnp.copy, cache)
    tokens, count, _ = _decode_loop(
        params, working, first, next_position, max_new_tokens, _eos_array(eos_ids), key, config,
        bucket_size(max_new_tokens, minimum=64), temperature <= 0.0, jnp.float32(temperature), jnp.float32(top_p),
    )
    tokens, count = jax.device_get((tokens, count))
    return tokens[:count].tolist()


def greedy_decode_batch(
    params: llama.Params, config: LlamaConfig, caches: list[llama.KVCache], last_logits: list[np.ndarray],
    next_positions: list[int], max_new_tokens: int, eos_ids: Iterable[int] = (),
) -> list[list[int]]:
    """Greedy continuations of several prefilled caches (e.g. one per reuse method), decoded together.

    Equal to ``decode_from_cache`` on each cache; the caches must share one capacity. The
    loop runs over a stacked copy, so the caller's caches stay intact.
    """
    if len({c.capacity for c in caches}) != 1:
        raise ValueError("caches decoded together must have the same capacity")
    _check_room(next_positions, max_new_tokens, caches[0].capacity)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *caches)
    first = np.asarray([np.argmax(logits) for logits in last_logits], np.int32)
    tokens, counts, _ = _greedy_loops(
        params, stacked, first, np.asarray(next_positions, np.int32), max_new_tokens, _eos_array(eos_ids),
        config, bucket_size(max_new_tokens, minimum=64),
    )
    tokens, counts = jax.device_get((tokens, counts))
    return [row[:count].tolist() for row, count in zip(tokens, counts)]


def generate(
    params: llama.Params, config: LlamaConfig, prompt_ids: list[int], max_new_tokens: int,
    eos_ids: Iterable[int] = (), *, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
) -> list[int]:
    """Prefill ``prompt_ids`` and decode up to ``max_new_tokens`` (EOS included when produced)."""
    n = len(prompt_ids)
    if n == 0:
        raise ValueError("the prompt is empty")
    limit = config.max_position_embeddings
    if n + max_new_tokens > limit:
        raise ValueError(f"prompt of {n} tokens + {max_new_tokens} new tokens exceeds the model's context of {limit}")
    cache = llama.KVCache.empty(config, bucket_size(n + max_new_tokens))
    logits, cache = recompute.recompute_rows(
        params, config, cache, np.asarray(prompt_ids), np.arange(n), last_only=True, donate=True
    )
    return decode_from_cache(params, config, cache, np.asarray(logits[-1]), n, max_new_tokens, eos_ids,
                             temperature=temperature, top_p=top_p, seed=seed, donate=True)
