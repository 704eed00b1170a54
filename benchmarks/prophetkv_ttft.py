"""TTFT of full prefill and every reuse method, side by side in one run (JSON + Markdown).

For each (context, chunk size) the chunk KVs are precomputed into an on-disk store first;
each request then reads them from a fresh store object (reported as ``store_read_s``,
outside TTFT), assembles, selects and recomputes. Every configuration is warmed up once
(compilation), then timed ``--repeats`` times with query lengths that vary inside one
shape bucket; XLA compilations during the timed requests are counted (should be zero), and one
more request counts its program launches and host synchronisations.

    python -m benchmarks.prophetkv_ttft --out benchmarks/results/prophetkv_ttft.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from prophetkv_jax import dispatch_count, selectors
from prophetkv_jax.model.checkpoint import load_checkpoint
from prophetkv_jax.model.config import DTYPES
from prophetkv_jax.pipeline import Engine, RagPrompt
from prophetkv_jax.store import ChunkStore
from runkit.files import atomic_write

PREFIX_TOKENS = 32
NEW_TOKENS = 16


class CompileCounter:
    """Counts XLA backend compilations reported through jax.monitoring."""

    def __init__(self) -> None:
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


def make_prompt(rng: np.random.Generator, vocab: int, context: int, chunk: int, query: int) -> RagPrompt:
    """Random tokens (timing does not depend on content): prefix + chunks + query = ``context``
    tokens minus room for the first ``NEW_TOKENS`` answer tokens."""
    body = rng.integers(100, vocab, context - PREFIX_TOKENS - query - NEW_TOKENS)
    chunks = tuple(body[i : i + chunk] for i in range(0, len(body), chunk))
    return RagPrompt(prefix=rng.integers(100, vocab, PREFIX_TOKENS), chunks=chunks,
                     query=rng.integers(100, vocab, query))


def time_requests(engine_for, prompts, method, ratio, counter) -> dict:
    """Warm up on the first prompt (twice: a new cache, then a recycled one, so every program of a
    timed request is compiled), then time the others; each request uses a fresh store object and, as
    in serving, the memory of the request before it (``Engine.release``)."""
    engine = engine_for()
    for _ in range(2):  # the second warm-up recycles the first's cache, as every timed request will
        engine.release(engine.prefill(prompts[0], method, ratio))
    before = counter.count
    ttft, read, select = [], [], []
    for prompt in prompts[1:]:
        result = engine_for().prefill(prompt, method, ratio)
        cache_dtype = str(result.cache.k.dtype)
        engine.release(result)
        ttft.append(result.timings["ttft"])
        read.append(result.timings.get("store_read", 0.0))
        select.append(result.timings.get("select", 0.0))
    recompiles = counter.count - before
    with dispatch_count.counting() as counts:  # one more request, counted (the counting is not timed)
        engine.release(engine_for().prefill(prompts[-1], method, ratio))
    return {
        "ttft_s": statistics.median(ttft), "ttft_all_s": ttft,
        "store_read_s": statistics.median(read), "select_s": statistics.median(select),
        "recompiles": recompiles, "kv_cache_dtype": cache_dtype,
        "program_launches": counts.launches, "host_syncs": counts.host_syncs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="HF Llama directory or .gguf (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--contexts", default="2048,4096")
    parser.add_argument("--chunks", default="256,512")
    parser.add_argument("--ratios", default="0.2,0.1")
    parser.add_argument("--methods", default=",".join(selectors.METHODS))
    parser.add_argument("--repeats", type=int, default=3, help="timed requests per configuration")
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="weights, activations and KV cache")
    parser.add_argument("--out", default="benchmarks/results/prophetkv_ttft.json")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    params, config, _ = load_checkpoint(args.model, dtype=args.dtype)
    load_start = os.getloadavg()[0]  # other processes on the machine skew every timing
    counter = CompileCounter()
    rng = np.random.default_rng(0)
    results = []
    configurations = [(int(c), int(k)) for c in args.contexts.split(",") for k in args.chunks.split(",")]
    methods = args.methods.split(",")
    ratios = [float(r) for r in args.ratios.split(",")]
    with tempfile.TemporaryDirectory() as store_dir:
        for context, chunk in tqdm(configurations, desc="configurations"):
            # queries of 40..56 tokens: one shape bucket, different lengths
            prompts = [make_prompt(rng, config.vocab_size, context, chunk, 40 + 4 * i) for i in range(args.repeats + 1)]
            root = Path(store_dir) / f"{context}-{chunk}"
            writer = Engine(params, config, ChunkStore(root), max_new_tokens=NEW_TOKENS)
            clock = time.perf_counter()
            for prompt in prompts:
                writer.precompute(prompt)
            precompute_s = (time.perf_counter() - clock) / len(prompts)
            engine = Engine(params, config, max_new_tokens=NEW_TOKENS)

            def engine_for() -> Engine:
                engine.store = ChunkStore(root)  # a fresh store object: chunk KVs come from disk
                return engine

            for method in methods:
                for ratio in ([1.0] if method in ("full", "naive") else ratios):
                    row = time_requests(engine_for, prompts, method, ratio, counter)
                    row.update(context=context, chunk_tokens=chunk, method=method,
                               ratio=None if method in ("full", "naive") else ratio, precompute_s=precompute_s)
                    results.append(row)
                    tqdm.write(f"{context:5d} {chunk:4d} {method:10s} {row['ratio']!s:5s} ttft={row['ttft_s']:.3f}s")

    for row in results:
        full = next(r for r in results if r["method"] == "full" and r["context"] == row["context"]
                    and r["chunk_tokens"] == row["chunk_tokens"])
        row["speedup_vs_full"] = full["ttft_s"] / row["ttft_s"]
        row["select_share"] = row["select_s"] / row["ttft_s"]
    payload = {
        "device": str(jax.devices()[0]), "platform": platform.platform(), "jax": jax.__version__,
        "model": args.model or "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)", "dtype": config.dtype,
        "repeats": args.repeats, "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "results": results,
    }
    out = Path(args.out)
    atomic_write(out, json.dumps(payload, indent=2))
    print(markdown(results))
    print(f"wrote {out}")


def markdown(results: list[dict]) -> str:
    lines = ["| context | chunk | method | p | TTFT (s) | speed-up vs full | select share | store read (s) "
             "| recompiles | launches | host syncs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['context']} | {r['chunk_tokens']} | {r['method']} | {'-' if r['ratio'] is None else r['ratio']} "
            f"| {r['ttft_s']:.3f} | {r['speedup_vs_full']:.2f}x | {100 * r['select_share']:.1f}% "
            f"| {r['store_read_s']:.3f} | {r['recompiles']} | {r.get('program_launches', '-')} "
            f"| {r.get('host_syncs', '-')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
