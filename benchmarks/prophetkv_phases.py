"""Where one ProphetKV request's TTFT goes: assembly, Stage I (with its top-k), recompute, next to full prefill.

Each phase is timed on its own (``block_until_ready`` between them), after one warm-up
request, with the engine's own calls in the engine's order. Random tokens; the chunk KVs
are precomputed first (the store read is not a phase here).

    python -m benchmarks.prophetkv_phases --context 4096 --out benchmarks/results/prophetkv_phases.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import numpy as np

from benchmarks.prophetkv_ttft import NEW_TOKENS, PREFIX_TOKENS, make_prompt
from prophetkv_jax import assembly, recompute, selectors
from prophetkv_jax.model import llama
from prophetkv_jax.model.checkpoint import load_checkpoint
from prophetkv_jax.pipeline import Engine, RagPrompt
from runkit.files import atomic_write

QUERY = 50


def timed(fn):
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    return result, time.perf_counter() - start


def one_request(engine: Engine, prompt: RagPrompt, ratio: float, with_full: bool = True) -> dict[str, float]:
    """One ProphetKV request phase by phase: load (chunk KVs to the device: nothing to do for the
    device tier), assembly, Stage I with the top-k, recompute; and, ``with_full``, a full prefill."""
    params, config = engine.params, engine.config
    layout = engine.layout(prompt)
    tokens, c = layout.tokens(), layout.num_context
    stored = [engine.segment_kv(s) for s in layout.segments[:-1] if len(s)]
    # time the arrays themselves: a list of SegmentKV is no pytree, so block_until_ready would not wait on it
    arrays, load_s = timed(lambda: jax.device_put([(s.k, s.v) for s in stored]))
    segments = [dataclasses.replace(s, k=k, v=v) for s, (k, v) in zip(stored, arrays)]
    capacity = assembly.cache_capacity([s.length for s in segments], layout.total + NEW_TOKENS)
    cache, assemble_s = timed(lambda: assembly.assemble(config, segments, capacity))
    budget = selectors.budget(ratio, c)
    # Stage I and its top-k are one program (nothing read back): their time is stage1_s, topk_s is 0.
    (cache, rows, _, count), stage1_s = timed(
        lambda: recompute.stage_one_and_rows(params, config, cache, tokens, 0, c, budget))
    _, recompute_s = timed(lambda: recompute.recompute_padded(params, config, cache, rows, count)[0])
    phases = {"load_s": load_s, "assemble_s": assemble_s, "stage1_s": stage1_s, "topk_s": 0.0,
              "recompute_s": recompute_s, "recomputed_rows": count}
    if with_full:
        _, phases["full_prefill_s"] = timed(lambda: recompute.recompute_rows(
            params, config, llama.KVCache.empty(config, capacity), tokens, np.arange(len(tokens)),
            last_only=True, donate=True, causal_prefix=True)[0])
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--chunk-tokens", type=int, default=512)
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/prophetkv_phases.json")
    args = parser.parse_args()
    if args.context <= PREFIX_TOKENS + QUERY + NEW_TOKENS or min(args.chunk_tokens, args.repeats) < 1:
        parser.error(f"--context must exceed {PREFIX_TOKENS + QUERY + NEW_TOKENS}; --chunk-tokens and --repeats >= 1")
    params, config, _ = load_checkpoint()
    prompt = make_prompt(np.random.default_rng(0), config.vocab_size, args.context, args.chunk_tokens, QUERY)
    engine = Engine(params, config, max_new_tokens=NEW_TOKENS)
    engine.precompute(prompt)
    load = os.getloadavg()[0]
    one_request(engine, prompt, args.ratio)  # compile
    runs = [one_request(engine, prompt, args.ratio) for _ in range(args.repeats)]
    best = {key: min(run[key] for run in runs) for key in runs[0]}
    ttft = best["load_s"] + best["assemble_s"] + best["stage1_s"] + best["topk_s"] + best["recompute_s"]
    result = {"context": args.context, "chunk_tokens": args.chunk_tokens, "ratio": args.ratio, "runs": runs,
              "best": best, "stage1_share_of_best": best["stage1_s"] / ttft,
              "full_over_prophetkv": best["full_prefill_s"] / ttft,
              "load_average_1min": {"start": load, "end": os.getloadavg()[0]}}
    atomic_write(args.out, json.dumps(result, indent=2))
    print(json.dumps(result["best"]), f"Stage I share {result['stage1_share_of_best']:.1%}",
          f"full / ProphetKV {result['full_over_prophetkv']:.2f}x")


if __name__ == "__main__":
    main()
