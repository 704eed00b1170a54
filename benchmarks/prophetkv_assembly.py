"""Cache assembly against a plain host memcpy of the same bytes, side by side in one run.

Assembly lays the stored chunk KVs of one request out in a cache and rotates the keys at
their global positions: at best it costs a copy of those bytes. This times ``assemble`` on
an 8B-width KV layout (8 KV heads x head_dim 128, Llama-3.1-8B's) with the layers scaled
down, for chunk KVs held in the device tier and in the host tier, into a new cache and into
the previous request's (``recycle``, as ``Engine.release`` arranges), next to NumPy copying
the same segments into one array allocated once (the pair of the recycled cache) and per
request (the pair of the new one). Rounds alternate the contenders, so load from other
processes hits all alike; the best round of each is kept.

Each measurement runs twice, in two child processes: with glibc's default malloc, and with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, which makes malloc ask for transparent huge pages on
large blocks (as NumPy does for its own arrays). XLA:CPU allocates a new cache with malloc, so on a
kernel whose THP mode is ``madvise`` the default pays a page fault per 4 KiB of a fresh cache.

    python -m benchmarks.prophetkv_assembly --out benchmarks/results/prophetkv_assembly.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.gpu_ttft_8b import LLAMA_31_8B
from prophetkv_jax import assembly
from prophetkv_jax.store import SegmentKV
from runkit.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]  # the child runs as a module of this checkout's package


def segments_for(config, tokens: int, chunk: int, seed: int = 0) -> list[SegmentKV]:
    """Device-resident chunk KVs of ``tokens`` tokens in ``chunk``-token segments, as the engine stores them."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, tokens, chunk):
        n = min(chunk, tokens - start)
        shape = (config.num_layers, assembly.segment_rows(n), config.num_kv_heads, config.head_dim)
        k, v = (jnp.asarray(rng.standard_normal(shape, np.float32), config.dtype) for _ in range(2))
        out.append(SegmentKV(k, v, n))
    return out


def memcpy_baseline(segments: list[SegmentKV], capacity: int, fresh: bool) -> Callable[[], None]:
    """NumPy copying each host segment's rows into its place in one [2, L, S, KV, hd] array: allocated
    once (``fresh=False``: pages already mapped), or per request as a new cache must be (``fresh=True``:
    the copy pays the first touch of every page, as assembly does)."""
    host = [(np.asarray(s.k), np.asarray(s.v), s.length) for s in segments]
    shape, dtype = (2, host[0][0].shape[0], capacity, *host[0][0].shape[2:]), host[0][0].dtype
    reused = np.empty(shape, dtype)

    def run() -> None:
        target = np.empty(shape, dtype) if fresh else reused
        start = 0
        for k, v, n in host:
            target[0, :, start:start + n] = k[:, :n]
            target[1, :, start:start + n] = v[:, :n]
            start += n

    return run


def best_of(runs: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Each contender once to warm up, then ``rounds`` interleaved rounds; all times kept."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def measure(dtype: str, layers: int, tokens: int, chunk: int, rounds: int) -> dict:
    config = dataclasses.replace(LLAMA_31_8B, num_layers=layers, dtype=dtype)
    device = segments_for(config, tokens, chunk)
    host = [SegmentKV(np.asarray(s.k), np.asarray(s.v), s.length) for s in device]
    capacity = assembly.cache_capacity([s.length for s in device], tokens + 64)
    def assemble(segments: list[SegmentKV], recycled: bool) -> Callable[[], None]:
        """A contender; ``recycled``: each run is built in the memory of the one before."""
        last = None

        def run() -> None:
            nonlocal last
            last = jax.block_until_ready(assembly.assemble(config, segments, capacity, last if recycled else None))
        return run

    runs = {
        "assemble_device_tier": assemble(device, recycled=False),
        "assemble_host_tier": assemble(host, recycled=False),
        "assemble_device_tier_recycled": assemble(device, recycled=True),
        "assemble_host_tier_recycled": assemble(host, recycled=True),
        "host_memcpy": memcpy_baseline(device, capacity, fresh=False),
        "host_memcpy_fresh": memcpy_baseline(device, capacity, fresh=True),
    }
    times = best_of(runs, rounds)
    best = {name: min(t) for name, t in times.items()}
    kv_bytes = 2 * layers * tokens * config.num_kv_heads * config.head_dim * jnp.dtype(dtype).itemsize
    return {
        "dtype": dtype, "layers": layers, "tokens": tokens, "chunk_tokens": chunk, "kv_bytes": kv_bytes,
        "seconds": times, "best_s": best,
        "recycled_device_tier_over_memcpy": best["assemble_device_tier_recycled"] / best["host_memcpy"],
        "recycled_host_tier_over_memcpy": best["assemble_host_tier_recycled"] / best["host_memcpy"],
        "device_tier_over_fresh_memcpy": best["assemble_device_tier"] / best["host_memcpy_fresh"],
        "host_tier_over_fresh_memcpy": best["assemble_host_tier"] / best["host_memcpy_fresh"],
    }


HUGETLB = "glibc.malloc.hugetlb=1"
ALLOCATORS = ("default", "hugetlb")


def allocator_env(allocator: str) -> dict[str, str]:
    """This process's environment with glibc's huge-page tunable set (``hugetlb``) or removed."""
    tunables = [t for t in os.environ.get("GLIBC_TUNABLES", "").split(":")
                if t and not t.startswith("glibc.malloc.hugetlb=")]
    return {**os.environ, "GLIBC_TUNABLES": ":".join(tunables + ([HUGETLB] if allocator == "hugetlb" else []))}


def transparent_huge_pages() -> str:
    """The kernel's THP mode (the bracketed word), or why it is unknown."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError as err:
        return f"unknown ({err.strerror})"
    return text[text.index("[") + 1:text.index("]")] if "[" in text else text.strip()


def run_child(allocator: str, argv: list[str]) -> list[dict]:
    """The measurements of a child process started under ``allocator``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        command = [sys.executable, "-m", "benchmarks.prophetkv_assembly", *argv, "--allocator", allocator,
                   "--out", str(out)]
        subprocess.run(command, env=allocator_env(allocator), check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        return [row | {"allocator": allocator} for row in json.loads(out.read_text())["results"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--chunk-tokens", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4, help="layers of the 8B KV layout kept (32 in the model)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--allocators", default=",".join(ALLOCATORS),
                        help="malloc settings to compare, in child processes")
    parser.add_argument("--allocator", choices=ALLOCATORS, help=argparse.SUPPRESS)  # set in a child process
    parser.add_argument("--out", default="benchmarks/results/prophetkv_assembly.json")
    args = parser.parse_args(argv)
    if min(args.tokens, args.chunk_tokens, args.layers, args.rounds) < 1:
        parser.error("--tokens, --chunk-tokens, --layers and --rounds must be positive")
    allocators = [a for a in args.allocators.split(",") if a]
    if not allocators or set(allocators) - set(ALLOCATORS):
        parser.error(f"--allocators takes a comma-separated subset of {','.join(ALLOCATORS)}")
    if args.allocator and os.environ.get("GLIBC_TUNABLES", "") != allocator_env(args.allocator)["GLIBC_TUNABLES"]:
        parser.error(f"--allocator {args.allocator} is for the child processes this script starts")
    load = os.getloadavg()[0]
    if args.allocator:  # a child: measure here, under the environment the parent set
        results = [measure(d, args.layers, args.tokens, args.chunk_tokens, args.rounds)
                   | {"glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")} for d in args.dtypes.split(",")]
    else:
        passed = ["--tokens", str(args.tokens), "--chunk-tokens", str(args.chunk_tokens), "--layers", str(args.layers),
                  "--dtypes", args.dtypes, "--rounds", str(args.rounds)]
        results = [row for allocator in allocators for row in run_child(allocator, passed)]
    payload = {"device": str(jax.devices()[0]), "platform": platform.platform(), "jax": jax.__version__,
               "transparent_huge_pages": transparent_huge_pages(),
               "load_average_1min": {"start": load, "end": os.getloadavg()[0]}, "results": results}
    atomic_write(Path(args.out), json.dumps(payload, indent=2))
    for r in results:
        b = r["best_s"]
        print(f"{r['dtype']:9s} {r['kv_bytes'] / 2**20:.0f} MiB, malloc {r.get('allocator', args.allocator)}: "
              f"memcpy {b['host_memcpy']:.3f}s; assemble into the previous request's cache from the device tier "
              f"{b['assemble_device_tier_recycled']:.3f}s ({r['recycled_device_tier_over_memcpy']:.2f}x), "
              f"from the host tier {b['assemble_host_tier_recycled']:.3f}s "
              f"({r['recycled_host_tier_over_memcpy']:.2f}x) | memcpy into "
              f"a new array {b['host_memcpy_fresh']:.3f}s; assemble into a new cache {b['assemble_device_tier']:.3f}s "
              f"({r['device_tier_over_fresh_memcpy']:.2f}x), {b['assemble_host_tier']:.3f}s "
              f"({r['host_tier_over_fresh_memcpy']:.2f}x)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
