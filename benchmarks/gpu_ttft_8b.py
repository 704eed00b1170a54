"""TTFT of full prefill and ProphetKV@0.2 on a random-weights Llama-3.1-8B-shaped model in bf16 (accelerator check).

The paper measures ProphetKV about 4.2-4.7x faster than full prefill at 8K-16K tokens on an H100
(p = 0.2, 512-token chunks). Timing does not depend on the weights, so they are random, drawn on
the device in bf16 (no checkpoint, no fp32 copy). Chunk KVs are precomputed into an in-memory
store; each request then reads them (``store_read_s``, outside TTFT), copies them to the device
and assembles, selects and recomputes (inside TTFT). Both methods run side by side in one process,
warmed up once, then timed with ``prophetkv_ttft.time_requests``:

    python benchmarks/gpu_ttft_8b.py --out benchmarks/results/gpu_ttft_8b.json

On CPU it refuses (an 8B prefill there takes many minutes); ``--allow-cpu --scale 0.02 --contexts 512``
is the smoke test (layers, heads, FFN and vocabulary scaled down, head_dim 128 kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script's timing helpers
from prophetkv_ttft import CompileCounter, make_prompt, time_requests  # noqa: E402

from cea_jax.files import atomic_write  # noqa: E402
from prophetkv_jax.model import sharding  # noqa: E402
from prophetkv_jax.model.config import LlamaConfig, RopeScaling  # noqa: E402
from prophetkv_jax.model.weights import LOGICAL_AXES, Params, axis_sizes, expected_paths  # noqa: E402
from prophetkv_jax.pipeline import Engine  # noqa: E402
from prophetkv_jax.store import ChunkStore  # noqa: E402

LLAMA_31_8B = LlamaConfig(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8,
    head_dim=128, rope_theta=500000.0, rope_scaling=RopeScaling(8.0, 1.0, 4.0, 8192), rms_norm_eps=1e-5,
    max_position_embeddings=131072, dtype="bfloat16",
)
PAPER_SPEEDUP = "4.2-4.7x at 8K-16K tokens on an H100 (p = 0.2)"
CPU_SCALE_LIMIT = 0.1  # on CPU only a model this small runs in seconds


def scaled_config(scale: float) -> LlamaConfig:
    """The 8B shape with layers, KV heads (group of 4 kept), FFN and vocabulary times ``scale``; 1 = the real shape."""
    c = LLAMA_31_8B
    kv_heads = max(1, round(c.num_kv_heads * scale))
    heads = kv_heads * c.group_size
    return dataclasses.replace(
        c, num_layers=max(2, round(c.num_layers * scale)), num_kv_heads=kv_heads, num_heads=heads,
        hidden_size=heads * c.head_dim, intermediate_size=max(128, round(c.intermediate_size * scale / 128) * 128),
        vocab_size=max(1024, round(c.vocab_size * scale)),
    )


def random_params(config: LlamaConfig, seed: int = 0) -> Params:
    """N(0, 0.02) matrices and unit norm scales in the config's dtype, drawn leaf by leaf on the device."""
    sizes, dtype = axis_sizes(config), jnp.dtype(config.dtype)
    params: Params = {}
    for index, path in enumerate(expected_paths(config)):
        shape = tuple(sizes[axis] for axis in LOGICAL_AXES[path])
        if path.endswith("/scale"):
            leaf = jnp.ones(shape, dtype)
        else:
            draw = jax.jit(lambda key, shape=shape: (0.02 * jax.random.normal(key, shape)).astype(dtype))
            leaf = draw(jax.random.PRNGKey(seed * 1000 + index))
        *parents, name = path.split("/")
        node = params
        for parent in parents:
            node = node.setdefault(parent, {})
        node[name] = leaf
    return params


def measure(params: Params, config: LlamaConfig, context: int, args: argparse.Namespace) -> list[dict]:
    """Full prefill and ProphetKV rows for one context length (the same prompts for both)."""
    rng = np.random.default_rng(context)
    prompts = [make_prompt(rng, config.vocab_size, context, args.chunk_tokens, 40 + 4 * i)
               for i in range(args.repeats + 1)]
    engine = Engine(params, config, ChunkStore(), max_new_tokens=16)
    for prompt in prompts:
        engine.precompute(prompt)
    counter = CompileCounter()
    rows = []
    for method in ("full", "prophetkv"):
        row = time_requests(lambda: engine, prompts, method, args.ratio, counter)
        row.update(context=context, chunk_tokens=args.chunk_tokens, method=method,
                   ratio=None if method == "full" else args.ratio)
        rows.append(row)
    rows[1]["speedup_vs_full"] = rows[0]["ttft_s"] / rows[1]["ttft_s"]
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", default="8192,16384", help="comma-separated prompt lengths in tokens")
    parser.add_argument("--chunk-tokens", type=int, default=512)
    parser.add_argument("--ratio", type=float, default=0.2, help="ProphetKV's recompute ratio")
    parser.add_argument("--repeats", type=int, default=3, help="timed requests per method and context")
    parser.add_argument("--scale", type=float, default=1.0, help="model size relative to Llama-3.1-8B (smoke tests)")
    parser.add_argument("--mesh", default="auto", help=sharding.MESH_HELP)
    parser.add_argument("--allow-cpu", action="store_true", help=f"run on CPU (needs --scale <= {CPU_SCALE_LIMIT})")
    parser.add_argument("--out", default="benchmarks/results/gpu_ttft_8b.json")
    args = parser.parse_args(argv)
    try:
        args.contexts = [int(c) for c in args.contexts.split(",")]
        args.mesh = sharding.parse_mesh(args.mesh)
    except ValueError as err:
        parser.error(str(err).splitlines()[0])
    if not 0 < args.scale <= 1 or not 0 < args.ratio <= 1 or min(args.repeats, args.chunk_tokens, *args.contexts) < 1:
        parser.error("--scale and --ratio must lie in (0, 1]; --repeats, --chunk-tokens, --contexts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if jax.default_backend() == "cpu" and not (args.allow_cpu and args.scale <= CPU_SCALE_LIMIT):
        sys.stderr.write("gpu_ttft_8b.py: refusing to run on CPU: this checks accelerator TTFT (an 8B prefill "
                         f"takes many minutes here); smoke-test with --allow-cpu --scale {CPU_SCALE_LIMIT} or less\n")
        return 2
    config = scaled_config(args.scale)
    params = random_params(config)
    params = sharding.place_params(params, config, args.mesh)
    mesh = sharding.mesh_of(params)
    results = [row for context in args.contexts for row in measure(params, config, context, args)]
    payload = {
        "device": str(jax.devices()[0]), "devices_used": 1 if mesh is None else mesh.size,
        "backend": jax.default_backend(), "platform": platform.platform(), "jax": jax.__version__,
        "config": {**dataclasses.asdict(config), "scale": args.scale}, "paper": PAPER_SPEEDUP,
        "repeats": args.repeats, "results": results,
    }
    atomic_write(Path(args.out), json.dumps(payload, indent=2))
    for row in results:
        print(f"{row['context']:6d} {row['method']:10s} ttft={row['ttft_s']:.4f}s"
              + (f" speed-up {row['speedup_vs_full']:.2f}x" if "speedup_vs_full" in row else ""))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
