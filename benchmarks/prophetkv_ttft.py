"""TTFT of full prefill and every reuse method, side by side in one run (JSON + Markdown).

For each (context, chunk size) the chunk KVs are precomputed into an on-disk store first;
each request then takes them from the store tier named by ``--tiers`` (reported as
``store_read_s``, outside TTFT), assembles, selects and recomputes: ``disk``, a fresh store
object per request (read from disk, copied to the device); ``host``, the host tier alone (the
backend's pinned host memory where it offers it: ``host_memory_kind``); ``device``, entries
resident on the device. ``copy_wait_s`` is the time a request still waited, inside TTFT, for
its chunk KVs' copies to the device (issued at lookup, waited for once before the first write).
Every configuration is warmed up on each of its prompts (compilation), then timed ``--repeats`` times
with query lengths that vary inside one shape bucket; XLA compilations during the timed requests are
counted (should be zero), and one more request counts its program launches and host synchronisations.

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
from prophetkv_jax.host_memory import default_host_kind
from prophetkv_jax.model.checkpoint import load_checkpoint
from prophetkv_jax.model.config import DTYPES
from prophetkv_jax.pipeline import Engine, RagPrompt
from prophetkv_jax.store import GIB, ChunkStore
from runkit.files import atomic_write

PREFIX_TOKENS = 32
NEW_TOKENS = 16
TIERS = ("disk", "host", "device")
HOLD_ALL = 64 * GIB  # a memory tier's cap for the host and device tiers: every entry of a run stays in it


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
    """Warm up on every prompt (the first twice: a new cache, then a recycled one), so every program of a
    timed request is compiled, queries of other lengths clearing other tails included; then time the
    prompts after the first. Each request uses a fresh store object and, as in serving, the memory of
    the request before it (``Engine.release``)."""
    for prompt in [prompts[0], *prompts]:  # from the second on, each recycles the cache before it
        engine = engine_for()  # and reads its store as a timed request does (the disk tier: a fresh one)
        engine.release(engine.prefill(prompt, method, ratio))
    before = counter.count
    ttft, read, select, wait = [], [], [], []
    for prompt in prompts[1:]:
        result = engine_for().prefill(prompt, method, ratio)
        cache_dtype = str(result.cache.k.dtype)
        engine.release(result)
        ttft.append(result.timings["ttft"])
        read.append(result.timings.get("store_read", 0.0))
        select.append(result.timings.get("select", 0.0))
        wait.append(result.timings.get("copy_wait", 0.0))
    recompiles = counter.count - before
    with dispatch_count.counting() as counts:  # one more request, counted (the counting is not timed)
        engine.release(engine_for().prefill(prompts[-1], method, ratio))
    return {
        "ttft_s": statistics.median(ttft), "ttft_all_s": ttft,
        "store_read_s": statistics.median(read), "select_s": statistics.median(select),
        "copy_wait_s": statistics.median(wait), "copy_wait_all_s": wait,
        "recompiles": recompiles, "kv_cache_dtype": cache_dtype,
        "program_launches": counts.launches, "host_syncs": counts.host_syncs,
    }


def store_for(tier: str, root: Path, engine: Engine, prompts: list[RagPrompt]):
    """A function giving each request its store: a fresh one on ``root`` (``disk``), or one whose host or
    device tier was filled from ``root`` with every prompt's chunk KVs beforehand."""
    if tier == "disk":
        return lambda: ChunkStore(root)
    store = ChunkStore(root, max_device_bytes=HOLD_ALL if tier == "device" else 0, max_host_bytes=HOLD_ALL)
    engine.store = store
    for prompt in prompts:
        engine.precompute(prompt)  # disk reads, kept in the tier
    return lambda: store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="HF Llama directory or .gguf (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--contexts", default="2048,4096")
    parser.add_argument("--chunks", default="256,512")
    parser.add_argument("--ratios", default="0.2,0.1")
    parser.add_argument("--methods", default=",".join(selectors.METHODS))
    parser.add_argument("--tiers", default="disk", help=f"store tiers the chunk KVs come from, of {','.join(TIERS)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed requests per configuration")
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="weights, activations and KV cache")
    parser.add_argument("--out", default="benchmarks/results/prophetkv_ttft.json")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    tiers = args.tiers.split(",")
    if not tiers or set(tiers) - set(TIERS):
        parser.error(f"--tiers takes a comma-separated subset of {','.join(TIERS)}, got {args.tiers!r}")

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
            engine = Engine(params, config, max_new_tokens=NEW_TOKENS, fingerprint=writer.fingerprint)
            del writer  # its device tier would hold every chunk KV beside the tiers measured

            # full prefill ignores the store: one row, with no tier
            runs = [(tier, [m for m in methods if m != "full"]) for tier in tiers]
            for tier, tier_methods in runs + [(None, ["full"])] * ("full" in methods):
                stores = store_for(tier or "disk", root, engine, prompts)

                def engine_for(stores=stores) -> Engine:
                    engine.store = stores()
                    return engine

                for method in tier_methods:
                    for ratio in ([1.0] if method in ("full", "naive") else ratios):
                        row = time_requests(engine_for, prompts, method, ratio, counter)
                        row.update(context=context, chunk_tokens=chunk, method=method, tier=tier,
                                   ratio=None if method in ("full", "naive") else ratio, precompute_s=precompute_s)
                        results.append(row)
                        tqdm.write(f"{context:5d} {chunk:4d} {method:10s} {tier!s:6s} {row['ratio']!s:5s} "
                                   f"ttft={row['ttft_s']:.3f}s copy_wait={row['copy_wait_s']:.4f}s")
                engine.store = ChunkStore()  # let the tier's entries go before the next one is filled

    for row in results:
        full = next(r for r in results if r["method"] == "full" and r["context"] == row["context"]
                    and r["chunk_tokens"] == row["chunk_tokens"])
        row["speedup_vs_full"] = full["ttft_s"] / row["ttft_s"]
        row["select_share"] = row["select_s"] / row["ttft_s"]
    payload = {
        "device": str(jax.devices()[0]), "platform": platform.platform(), "jax": jax.__version__,
        "model": args.model or "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)", "dtype": config.dtype,
        "host_memory_kind": default_host_kind(),
        "repeats": args.repeats, "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "results": results,
    }
    out = Path(args.out)
    atomic_write(out, json.dumps(payload, indent=2))
    print(markdown(results))
    print(f"wrote {out}")


def markdown(results: list[dict]) -> str:
    lines = ["| context | chunk | method | tier | p | TTFT (s) | speed-up vs full | select share | store read (s) "
             "| copy wait (s) | recompiles | launches | host syncs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['context']} | {r['chunk_tokens']} | {r['method']} | {r.get('tier') or '-'} "
            f"| {'-' if r['ratio'] is None else r['ratio']} "
            f"| {r['ttft_s']:.3f} | {r['speedup_vs_full']:.2f}x | {100 * r['select_share']:.1f}% "
            f"| {r['store_read_s']:.3f} | {r.get('copy_wait_s', 0.0):.4f} | {r['recompiles']} "
            f"| {r.get('program_launches', '-')} | {r.get('host_syncs', '-')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
