"""Text generation with the explicit KV cache: greedy or temperature/top-p sampling.

``decode_from_cache`` continues from any filled cache (an ordinary prefill or a ProphetKV
blended one); ``generate`` prefills a prompt first. CLI:

    python -m prophetkv_jax.generate "What is the capital of France?" --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from cea_jax.cli import ArgumentParser, one_line_errors
from prophetkv_jax import recompute
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import LlamaConfig


@functools.partial(jax.jit, static_argnames=("temperature", "top_p"))
def _sample(logits: jax.Array, key: jax.Array, temperature: float, top_p: float) -> jax.Array:
    """One token from fp32 logits [V]: nucleus sampling at a temperature."""
    logits = logits / temperature
    order = jnp.argsort(-logits)
    probs = jax.nn.softmax(logits[order])
    keep = jnp.cumsum(probs) - probs < top_p  # the smallest prefix reaching top_p (always >= 1 token)
    filtered = jnp.where(keep, logits[order], -jnp.inf)
    return order[jax.random.categorical(key, filtered)]


def pick_token(logits: np.ndarray, temperature: float, top_p: float, key: jax.Array) -> int:
    if temperature <= 0.0:
        return int(np.argmax(logits))
    return int(_sample(jnp.asarray(logits, jnp.float32), key, float(temperature), float(top_p)))


def check_sampling(temperature: float, top_p: float) -> None:
    if temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")


def decode_from_cache(
    params: llama.Params, config: LlamaConfig, cache: llama.KVCache, last_logits: np.ndarray,
    next_position: int, max_new_tokens: int, eos_ids: Iterable[int] = (), *,
    temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
) -> list[int]:
    """Tokens following a prefilled cache, one cached step each; stops after an EOS token."""
    check_sampling(temperature, top_p)
    if next_position + max_new_tokens > cache.capacity:
        raise ValueError(
            f"{max_new_tokens} new tokens after position {next_position} exceed the cache capacity {cache.capacity}"
        )
    eos = set(eos_ids)
    key = jax.random.PRNGKey(seed)
    key, sub = jax.random.split(key)
    out = [pick_token(last_logits, temperature, top_p, sub)]
    position = next_position
    while len(out) < max_new_tokens and out[-1] not in eos:
        logits, cache = recompute.recompute_rows(
            params, config, cache, np.array([out[-1]]), np.array([position]), min_rows=1, last_only=True
        )
        key, sub = jax.random.split(key)
        out.append(pick_token(np.asarray(logits[-1]), temperature, top_p, sub))
        position += 1
    return out


@functools.partial(jax.jit, static_argnames=("config",), donate_argnames=("caches",))
def _greedy_step_batch(params, tokens, positions, caches, config):
    """One greedy step for B independent caches at once (the weights are read once, not B times)."""
    step = lambda t, p, c: llama.forward(params, t[None], p[None], c, p[None], config)  # noqa: E731
    logits, caches = jax.vmap(step)(tokens, positions, caches)
    return jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32), caches


def greedy_decode_batch(
    params: llama.Params, config: LlamaConfig, caches: list[llama.KVCache], last_logits: list[np.ndarray],
    next_positions: list[int], max_new_tokens: int, eos_ids: Iterable[int] = (),
) -> list[list[int]]:
    """Greedy continuations of several prefilled caches (e.g. one per reuse method), decoded together.

    Equal to ``decode_from_cache`` on each cache; the caches must share one capacity.
    """
    if len({c.capacity for c in caches}) != 1:
        raise ValueError("caches decoded together must have the same capacity")
    if max(next_positions) + max_new_tokens > caches[0].capacity:
        raise ValueError(f"{max_new_tokens} new tokens exceed the cache capacity {caches[0].capacity}")
    eos = set(eos_ids)
    outs = [[int(np.argmax(logits))] for logits in last_logits]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *caches)
    positions = np.asarray(next_positions, np.int32)
    for step in range(max_new_tokens - 1):
        if all(out[-1] in eos for out in outs):
            break
        tokens, stacked = _greedy_step_batch(
            params, jnp.asarray([out[-1] for out in outs], jnp.int32), jnp.asarray(positions + step), stacked, config
        )
        for out, token in zip(outs, np.asarray(tokens).tolist()):
            if out[-1] not in eos:
                out.append(int(token))
    return outs


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
    cache = llama.KVCache.empty(config, llama.bucket_size(n + max_new_tokens))
    logits, cache = recompute.recompute_rows(
        params, config, cache, np.asarray(prompt_ids), np.arange(n), last_only=True
    )
    return decode_from_cache(params, config, cache, np.asarray(logits[-1]), n, max_new_tokens, eos_ids,
                             temperature=temperature, top_p=top_p, seed=seed)


@one_line_errors("python -m prophetkv_jax.generate")
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m prophetkv_jax.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt")
    parser.add_argument("--model", default=None, help="HF Llama directory or .gguf (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-chat", action="store_true", help="feed the prompt as raw text")
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1:
        parser.error(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    check_sampling(args.temperature, args.top_p)
    from prophetkv_jax.model.checkpoint import load_checkpoint

    params, config, tokenizer = load_checkpoint(args.model)
    text = args.prompt if args.no_chat else tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}])
    ids = generate(params, config, tokenizer.encode(text), args.max_new_tokens, tokenizer.eos_ids,
                   temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    print(tokenizer.decode(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
