"""Store read + TTFT of reuse with few query rows over a long cache, against a NumPy copy of its KV bytes.

Naive reuse reads the stored chunk KVs once and runs a few query rows over them: at best it costs
about a copy of those bytes. This times ``Engine.prefill`` end to end (store read + TTFT, chunk KVs
in the device tier) for naive reuse and ProphetKV@0.2, in fp32 and bf16, on an 8B-width KV layout
(8 KV heads x head_dim 128, 32 query heads) with the layers scaled down and a narrow hidden/FFN
(the projections of 16 rows are not what is measured), next to NumPy copying the same KV bytes,
in the same process. Each request's process CPU time is recorded too: on a shared machine wall
times swing with the load (a 3.4x gap between two checkouts once came from that alone), CPU time much
less. With ``--before DIR`` the same measurement also runs on the checkout in DIR
(an older commit), in a child process right after, so both land in one JSON.

    python -m benchmarks.prophetkv_few_rows --before /tmp/before --out benchmarks/results/prophetkv_few_rows.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from runkit.files import atomic_write


def measure(layers: int, tokens: int, rounds: int, query: int) -> list[dict]:
    """Rows of (dtype, method): best store read + TTFT, and the best NumPy copy of the request's KV bytes."""
    from benchmarks.gpu_ttft_8b import LLAMA_31_8B, random_params
    from benchmarks.prophetkv_ttft import make_prompt
    from prophetkv_jax.pipeline import Engine
    from prophetkv_jax.store import ChunkStore

    out = []
    for dtype in ("float32", "bfloat16"):
        config = dataclasses.replace(LLAMA_31_8B, num_layers=layers, hidden_size=512, intermediate_size=512,
                                     vocab_size=1024, dtype=dtype)
        engine = Engine(random_params(config), config, ChunkStore(max_device_bytes=16 << 30), max_new_tokens=16)
        rng = np.random.default_rng(0)
        prompts = [make_prompt(rng, config.vocab_size, tokens, 512, query) for _ in range(rounds + 1)]
        for prompt in prompts:
            engine.precompute(prompt)
        layout = engine.layout(prompts[0])
        stored = [engine.segment_kv(s) for s in layout.segments[:-1] if len(s)]
        host = [(np.asarray(s.k), np.asarray(s.v)) for s in stored]
        kv_bytes = sum(k.nbytes + v.nbytes for k, v in host)
        target = np.empty(kv_bytes, np.uint8)

        def copy() -> float:
            start, at = time.perf_counter(), 0
            for k, v in host:
                for x in (k, v):
                    target[at:at + x.nbytes] = x.reshape(-1).view(np.uint8)
                    at += x.nbytes
            return time.perf_counter() - start

        for method in ("naive", "prophetkv"):
            engine.release(engine.prefill(prompts[0], method, 0.2))  # compiles
            times, copies, cpu = [], [], []
            for prompt in prompts[1:]:
                copies.append(copy())
                clock = time.process_time()
                result = engine.prefill(prompt, method, 0.2)
                cpu.append(time.process_time() - clock)
                times.append(result.timings["store_read"] + result.timings["ttft"])
                engine.release(result)
            out.append({"dtype": dtype, "method": method, "kv_bytes": kv_bytes, "read_plus_ttft_s": min(times),
                        "numpy_copy_s": min(copies), "ratio_to_copy": min(times) / min(copies),
                        "all_s": times, "cpu_s": cpu, "min_cpu_s": min(cpu)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--query-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default=None, help="an older checkout to measure the same way, in a child")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="benchmarks/results/prophetkv_few_rows.json")
    args = parser.parse_args(argv)
    if min(args.layers, args.rounds, args.query_tokens) < 1 or args.tokens <= args.query_tokens + 64:
        parser.error("--layers, --rounds, --query-tokens must be >= 1 and --tokens > query + 64")
    if args.child:
        print(json.dumps(measure(args.layers, args.tokens, args.rounds, args.query_tokens)))
        return 0
    load = os.getloadavg()[0]
    payload = {"layers": args.layers, "tokens": args.tokens, "query_tokens": args.query_tokens,
               "chunk_tokens": 512, "kv_layout": "8 KV heads x 128, 32 query heads, hidden/FFN 512",
               "after": measure(args.layers, args.tokens, args.rounds, args.query_tokens)}
    if args.before:
        # This file runs as a script (the old checkout may lack it) against the old checkout's package.
        argv_child = [sys.executable, str(Path(__file__).resolve()), "--child", "--layers", str(args.layers),
                      "--tokens", str(args.tokens), "--rounds", str(args.rounds),
                      "--query-tokens", str(args.query_tokens)]
        env = {**os.environ, "PYTHONPATH": str(Path(args.before).resolve())}
        done = subprocess.run(argv_child, cwd=args.before, env=env, capture_output=True, text=True, check=True)
        payload["before"] = json.loads(done.stdout.strip().splitlines()[-1])
        payload["before_checkout"] = args.before
    payload["load_average_1min"] = {"start": load, "end": os.getloadavg()[0]}
    atomic_write(Path(args.out), json.dumps(payload, indent=2))
    for side in ("before", "after"):
        for r in payload.get(side, []):
            print(f"{side:6s} {r['dtype']:8s} {r['method']:9s} read+TTFT {r['read_plus_ttft_s']:.3f} s, "
                  f"copy {r['numpy_copy_s']:.4f} s, {r['ratio_to_copy']:.1f}x, CPU {r['min_cpu_s']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
