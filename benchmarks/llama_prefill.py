"""Prefill throughput of the project's Llama vs transformers (PyTorch eager), and vs the matmul peak.

Prefill = one forward over T prompt tokens that writes the KV cache and returns the
logits of every row; both implementations do exactly that work. Throughput is the best
of ``--repeats`` timed rounds after one warm-up (JAX compile excluded, reported apart);
each round times every length with both implementations back to back, so load from other
processes hits both alike (the 1-min load average is recorded at start and end).
Achieved GFLOP/s counts the model's useful FLOPs (linear layers, causal attention, LM
head) and is compared with a measured ``jnp.matmul`` (in the same dtype) of a large square: the best
this machine's XLA backend does on the op that dominates a transformer (the best over a
few sizes, since cache effects make the rate size-dependent).

    python -m benchmarks.llama_prefill --lengths 512 1024 2048 4096
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prophetkv_jax import buckets
from prophetkv_jax.model import llama
from prophetkv_jax.model.checkpoint import default_model_path, load_checkpoint
from prophetkv_jax.model.config import DTYPES, LlamaConfig

DEFAULT_OUT = os.path.join("benchmarks", "results", "llama_prefill.json")


def prefill_flops(config: LlamaConfig, tokens: int, head_rows: int | None = None) -> float:
    """Useful FLOPs of a T-token prefill: 2 per multiply-add, causal attention counted once;
    the LM head on ``head_rows`` rows (default: every row)."""
    c = config
    linear_per_token = c.hidden_size * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim  # q, k, v
    linear_per_token += c.num_heads * c.head_dim * c.hidden_size  # o
    linear_per_token += 3 * c.hidden_size * c.intermediate_size  # gate, up, down
    causal_pairs = tokens * (tokens + 1) / 2
    attention = 2 * 2 * causal_pairs * c.num_heads * c.head_dim  # scores and weighted values
    head = 2 * (tokens if head_rows is None else head_rows) * c.hidden_size * c.vocab_size
    return c.num_layers * (2 * tokens * linear_per_token + attention) + head


def best_time(run: Callable[[], Any], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls (each call must block until done)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(size: int, repeats: int, dtype: str = "float32") -> float:
    """GFLOP/s of a jitted square ``jnp.matmul`` of side ``size`` in ``dtype``."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.dtype(dtype))
    b = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.dtype(dtype))
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    return 2 * size**3 / best_time(lambda: matmul(a, b).block_until_ready(), repeats) / 1e9


def project_prefill(params, config: LlamaConfig, ids: np.ndarray) -> Callable[[], None]:
    """One blocking prefill through ``llama.forward``, as the engine's full prefill runs it."""
    n = len(ids)
    capacity = buckets.bucket_size(n)
    tokens, positions, slots = buckets.pad_rows(ids, np.arange(n), np.arange(n), capacity)

    def run() -> None:  # a fresh cache per request, donated
        cache = llama.KVCache.empty(config, capacity)
        logits, new_cache = llama.forward(params, tokens, positions, cache, slots, config, donate=True,
                                          causal_prefix=True)
        jax.block_until_ready((logits, new_cache))

    return run


def timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def load_reference(model_path: str | None, threads: int, dtype: str = "float32"):
    """transformers' own load of the same checkpoint, eager attention, ``dtype``, ``threads`` threads."""
    try:
        import torch
        import transformers
    except ImportError as err:
        raise SystemExit(
            f"the transformers reference needs torch + transformers ({err}); "
            "install the test extra: pip install -e '.[test]'"
        ) from err
    torch.set_num_threads(threads)
    path = model_path or default_model_path()
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "attn_implementation": "eager"}
    if os.path.isfile(path):
        folder, name = os.path.split(path)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **kwargs)
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return model.eval(), torch


def reference_prefill(model, torch, ids: np.ndarray) -> Callable[[], None]:
    batch = torch.tensor(ids[None], dtype=torch.long)

    def run() -> None:
        with torch.inference_mode():
            model(batch, use_cache=True)

    return run


def markdown_table(report: dict[str, Any]) -> str:
    peak = report["matmul_peak_gflops"]
    lines = [
        f"Prefill, {report['model']} {report['dtype']}, {report['threads']} threads "
        f"({report['cpu']}, 1-min load average {report['load_average_1min']['start']:.1f} at start); "
        f"matmul peak {peak:.1f} GFLOP/s",
        "",
        "| tokens | project tok/s | transformers tok/s | speedup | project GFLOP/s | % of matmul peak |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        lines.append(
            f"| {row['tokens']} | {row['project_tokens_per_s']:.0f} | "
            f"{row['transformers_tokens_per_s']:.0f} | {row['speedup']:.2f}x | "
            f"{row['project_gflops']:.1f} | {100 * row['fraction_of_matmul_peak']:.0f}% |"
        )
    return "\n".join(lines)


def run_benchmark(
    model_path: str | None, lengths: Sequence[int], repeats: int, matmul_sizes: Sequence[int],
    dtype: str = "float32",
) -> dict[str, Any]:
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = os.getloadavg()[0]  # other processes on the machine skew every timing
    params, config, _ = load_checkpoint(model_path, dtype=dtype)
    too_long = [n for n in lengths if n > config.max_position_embeddings]
    if too_long:
        raise SystemExit(
            f"--lengths {too_long} exceed the model's context of {config.max_position_embeddings} tokens"
        )
    reference, torch = load_reference(model_path, threads, dtype)
    matmul = {size: matmul_gflops(size, max(repeats, 5), dtype) for size in matmul_sizes}
    peak = max(matmul.values())
    rng = np.random.RandomState(0)
    runs = {}
    for n in lengths:  # warm-up (compile) first, then rounds that alternate the two implementations
        ids = rng.randint(0, config.vocab_size, n).astype(np.int32)
        runs[n] = (project_prefill(params, config, ids), reference_prefill(reference, torch, ids))
        first_call = timed(runs[n][0])
        runs[n][1]()
        runs[n] += (first_call,)
    times = {n: ([], []) for n in lengths}
    for _ in range(repeats):
        for n in lengths:
            for kind in (0, 1):
                times[n][kind].append(timed(runs[n][kind]))
    results = []
    for n in lengths:
        ours, theirs = min(times[n][0]), min(times[n][1])
        gflops = prefill_flops(config, n) / ours / 1e9
        results.append({
            "tokens": n,
            "project_seconds": ours,
            "project_seconds_all": times[n][0],
            "project_first_call_seconds": runs[n][2],
            "transformers_seconds": theirs,
            "transformers_seconds_all": times[n][1],
            "project_tokens_per_s": n / ours,
            "transformers_tokens_per_s": n / theirs,
            "speedup": theirs / ours,
            "gflop": prefill_flops(config, n) / 1e9,
            "project_gflops": gflops,
            "transformers_gflops": prefill_flops(config, n) / theirs / 1e9,
            "fraction_of_matmul_peak": gflops / peak,
        })
        print(f"{n} tokens: project {n / ours:.0f} tok/s, transformers {n / theirs:.0f} tok/s", flush=True)
    return {
        "model": os.path.basename(model_path or default_model_path()),
        "dtype": config.dtype,
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "torch_version": torch.__version__,
        "repeats": repeats,
        "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
        "matmul_gflops_by_size": matmul,
        "matmul_peak_gflops": peak,
        "results": results,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help=".gguf file or HF dir (default: SmolLM2-135M GGUF)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul-sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--dtype", default="float32", choices=DTYPES,
                        help="weights, activations and KV cache (transformers runs in the same dtype)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON path; the Markdown table goes next to it")
    args = parser.parse_args(argv)
    if min(args.lengths + args.matmul_sizes) <= 0 or args.repeats <= 0:
        parser.error("--lengths, --matmul-sizes and --repeats must be positive")
    report = run_benchmark(args.model, args.lengths, args.repeats, args.matmul_sizes, args.dtype)
    table = markdown_table(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    with open(os.path.splitext(args.out)[0] + ".md", "w", encoding="utf-8") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
