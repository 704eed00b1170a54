"""Greedy decode throughput after a long prefill, through the public ``decode_from_cache``.

Only public calls that every version of the project has are used, so the same script times
an older checkout too (run it with that checkout first on PYTHONPATH) for a before/after
pair. The prompt is random tokens and no EOS is given, so every request decodes exactly
``--new-tokens`` tokens; decode time excludes the prefill and the compile (one warm-up).

    python -m benchmarks.llama_decode --context 2048 --label after --out benchmarks/results/llama_decode.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from prophetkv_jax import buckets, recompute
from prophetkv_jax.decode import decode_from_cache
from prophetkv_jax.model import llama
from prophetkv_jax.model.checkpoint import load_checkpoint

DTYPES = ("float32", "bfloat16")  # not imported: an older checkout has no model.config.DTYPES


def decode_seconds(params, config, context: int, new_tokens: int, repeats: int) -> tuple[list[float], str]:
    """Seconds to decode ``new_tokens`` after a ``context``-token prefill, per timed request, and the
    KV cache's dtype."""
    ids = np.random.RandomState(0).randint(100, config.vocab_size, context).astype(np.int32)
    cache = llama.KVCache.empty(config, buckets.bucket_size(context + new_tokens))
    logits, cache = recompute.recompute_rows(params, config, cache, ids, np.arange(context), last_only=True)
    last = np.asarray(logits[-1])
    decode_from_cache(params, config, cache, last, context, new_tokens)  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = decode_from_cache(params, config, cache, last, context, new_tokens)
        times.append(time.perf_counter() - start)
        assert len(out) == new_tokens
    return times, str(cache.k.dtype)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="HF Llama directory or .gguf (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="weights, activations and KV cache")
    parser.add_argument("--label", required=True, help="e.g. before / after; one JSON line per run")
    parser.add_argument("--code", default=None,
                        help="the commit (or any name) of the code timed, stored in the row as given")
    parser.add_argument("--out", default="benchmarks/results/llama_decode.jsonl")
    args = parser.parse_args(argv)
    if min(args.context, args.new_tokens, args.repeats) < 1:
        parser.error("--context, --new-tokens and --repeats must be >= 1")
    # dtype= only when asked: an older checkout's load_checkpoint has no such argument
    params, config, _ = load_checkpoint(args.model, **({} if args.dtype == "float32" else {"dtype": args.dtype}))
    load = os.getloadavg()[0]
    times, cache_dtype = decode_seconds(params, config, args.context, args.new_tokens, args.repeats)
    row = {
        "label": args.label, "code": args.code, "context": args.context, "new_tokens": args.new_tokens,
        "dtype": args.dtype, "kv_cache_dtype": cache_dtype,
        "seconds": times, "tokens_per_s_best": args.new_tokens / min(times),
        "load_average_1min": {"start": load, "end": os.getloadavg()[0]},
    }
    with open(args.out, "a", encoding="utf-8") as f:  # one complete line per run; a crash loses only its own
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
