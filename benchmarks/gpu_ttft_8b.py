"""ProphetKV's TTFT claim on an accelerator: Llama-3.1-8B shape, bf16, against transformers, one run.

The paper measures ProphetKV@0.2 about 4.2-4.7x faster than full prefill at 8K-16K tokens on an
H100 (512-token chunks). Per context this times, side by side in one process:

* transformers ``LlamaForCausalLM`` (sdpa) full prefill on the same shape and dtype (when torch
  with CUDA is installed; a note otherwise), last-row logits only, as the project computes;
* the project's full prefill (``Engine.prefill(..., "full")``);
* ProphetKV@0.2 with the chunk KVs resident in the store's device tier, and with them in the
  host-RAM tier, copied to the device inside TTFT;
* each request's phases (load, assembly, Stage I, top-k, recompute), each blocked on its own;
* the bf16 matmul peak of this device, measured in the same run, and each full prefill's share.

Timing does not depend on the weights, so they are random, drawn on the device. Every
configuration is warmed up once (compiles), then timed ``--repeats`` times; contexts that do not
fit the remaining ``--budget-s`` are skipped with a note. JSON plus a Markdown table:

    python -m benchmarks.gpu_ttft_8b --out benchmarks/results/gpu_ttft_8b.json

On CPU it refuses (an 8B prefill there takes many minutes); ``--allow-cpu --scale 0.02 --contexts 512
--matmul-sizes 256`` is the smoke test (layers, heads, FFN and vocabulary scaled down, head_dim 128 kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.llama_prefill import matmul_gflops, prefill_flops
from benchmarks.prophetkv_phases import one_request
from benchmarks.prophetkv_ttft import CompileCounter, make_prompt, time_requests
from prophetkv_jax.buckets import pad_rows
from prophetkv_jax.model import attention, mesh_flag, sharding
from prophetkv_jax.model.config import LlamaConfig, RopeScaling
from prophetkv_jax.model.weights import LOGICAL_AXES, Params, axis_sizes, expected_paths
from prophetkv_jax.pipeline import Engine
from prophetkv_jax.store import GIB, ChunkStore, model_fingerprint
from runkit.files import atomic_write

LLAMA_31_8B = LlamaConfig(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8,
    head_dim=128, rope_theta=500000.0, rope_scaling=RopeScaling(8.0, 1.0, 4.0, 8192), rms_norm_eps=1e-5,
    max_position_embeddings=131072, dtype="bfloat16",
)
PAPER_SPEEDUP = "4.2-4.7x at 8K-16K tokens on an H100 (p = 0.2)"
CPU_SCALE_LIMIT = 0.1  # on CPU only a model this small runs in seconds
PHASES = ("load_s", "assemble_s", "stage1_s", "topk_s", "recompute_s")


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


class TorchReference:
    """transformers' LlamaForCausalLM (sdpa) with random weights of the same shape and dtype, on CUDA."""

    def __init__(self, config: LlamaConfig) -> None:
        import torch
        import transformers

        hf = transformers.LlamaConfig(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads, head_dim=config.head_dim, rope_theta=config.rope_theta,
            rms_norm_eps=config.rms_norm_eps, max_position_embeddings=config.max_position_embeddings,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192},
            attn_implementation="sdpa", torch_dtype=torch.bfloat16,
        )
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda"):
            self.model = transformers.LlamaForCausalLM(hf).eval()
        torch.set_default_dtype(torch.float32)
        self.torch = torch

    def prefill_s(self, ids: np.ndarray) -> float:
        """Seconds of one full prefill (KV cache built, last row's logits), synchronised."""
        torch = self.torch
        batch = torch.tensor(ids[None], dtype=torch.long, device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            self.model(batch, use_cache=True, logits_to_keep=1)
        torch.cuda.synchronize()
        return time.perf_counter() - start


def torch_reference(config: LlamaConfig) -> tuple[TorchReference | None, str | None]:
    """The reference, or None and why it is skipped."""
    try:
        import torch
    except ImportError:
        return None, "transformers row skipped: torch is not installed"
    if not torch.cuda.is_available():
        return None, "transformers row skipped: torch has no CUDA device here"
    return TorchReference(config), None


def engines(params: Params, config: LlamaConfig, args: argparse.Namespace, fingerprint: str) -> dict[str, Engine]:
    """One engine per chunk-KV placement: the device tier, and host RAM only (copied inside TTFT).
    ``fingerprint``: the weights' ``model_fingerprint``, hashed once by the caller (8B: ~16 GB a hash)."""
    caps = {"device": (args.store_device_gib, args.store_host_gib), "host": (0, args.store_host_gib)}
    return {name: Engine(params, config, ChunkStore(max_device_bytes=int(d * GIB), max_host_bytes=int(h * GIB)),
                         max_new_tokens=16, fingerprint=fingerprint)
            for name, (d, h) in caps.items()}


def measure(params: Params, config: LlamaConfig, context: int, args: argparse.Namespace,
            reference: TorchReference | None, peak_tflops: float, fingerprint: str) -> list[dict]:
    """Every row for one context length (the same prompts for all)."""
    rng = np.random.default_rng(context)
    prompts = [make_prompt(rng, config.vocab_size, context, args.chunk_tokens, 40 + 4 * i)
               for i in range(args.repeats + 1)]
    by_tier = engines(params, config, args, fingerprint)
    for engine in by_tier.values():
        for prompt in prompts:
            engine.precompute(prompt)
    counter = CompileCounter()
    full_flops = prefill_flops(config, context, head_rows=1)
    rows = []
    if reference is not None:
        reference.prefill_s(by_tier["device"].layout(prompts[0]).tokens())  # warm-up
        times = [reference.prefill_s(by_tier["device"].layout(p).tokens()) for p in prompts[1:]]
        rows.append({"method": "transformers_full", "ttft_s": statistics.median(times), "ttft_all_s": times})
    full = time_requests(lambda: by_tier["device"], prompts, "full", 1.0, counter)
    rows.append({"method": "full", **full})
    for row in rows:
        row["share_of_matmul_peak"] = full_flops / row["ttft_s"] / 1e12 / peak_tflops
    for tier, engine in by_tier.items():
        row = time_requests(lambda engine=engine: engine, prompts, "prophetkv", args.ratio, counter)
        one_request(engine, prompts[0], args.ratio, with_full=False)  # warm-up of the phase-by-phase calls
        phases = [one_request(engine, p, args.ratio, with_full=False) for p in prompts[1:]]
        row["attended_pair_fraction"] = attended_pair_fraction(engine, prompts[-1], args.ratio)
        row.update(method=f"prophetkv_{tier}_tier", ratio=args.ratio,
                   phases_s={name: statistics.median(p[name] for p in phases) for name in PHASES},
                   recomputed_rows=phases[0]["recomputed_rows"])
        row["ttft_s"] += row["store_read_s"]  # what the request waits for: the store lookup too
        rows.append(row)
    fastest_full = min(r["ttft_s"] for r in rows if r["method"] in ("full", "transformers_full"))
    for row in rows:
        row.update(context=context, chunk_tokens=args.chunk_tokens,
                   speedup_vs_fastest_full=fastest_full / row["ttft_s"])
        if "phases_s" in row:
            row["assembly_share"] = row["phases_s"]["assemble_s"] / sum(row["phases_s"].values())
    return rows


def attended_pair_fraction(engine: Engine, prompt, ratio: float) -> float:
    """The share of the dense rows x slots pairs that the masked fused kernels visit (row groups over
    their slot prefixes) for this request's recompute rows, as the engine pads them."""
    result = engine.prefill(prompt, "prophetkv", ratio)
    engine.release(result)
    rows = np.concatenate([result.selected, np.arange(result.num_context, result.next_position)])
    _, positions, _ = pad_rows(rows, rows, rows, result.cache.capacity)
    slots = np.arange(result.cache.capacity, dtype=np.int32)
    groups = attention.row_groups(len(positions))
    return attention.attended_fraction(positions, slots, slots < result.next_position, groups)


def versions() -> dict[str, str | None]:
    """JAX, jaxlib and (on a CUDA backend) cuDNN versions, for the record."""
    import jaxlib

    cudnn = None
    try:
        from jax._src.lib import cuda_versions

        cudnn = str(cuda_versions.cudnn_get_version()) if cuda_versions is not None else None
    except (ImportError, AttributeError, RuntimeError):
        cudnn = None
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "cudnn": cudnn}


def markdown(payload: dict) -> str:
    lines = [f"{payload['device']}, {payload['config']['num_layers']} layers bf16, bf16 matmul peak "
             f"{payload['matmul_peak_tflops']:.3g} TFLOP/s; chunks of {payload['chunk_tokens']} tokens, p = "
             f"{payload['ratio']}; median of {payload['repeats']} requests",
             "", "| context | method | TTFT (s) | vs fastest full | % of matmul peak | load | assembly | Stage I | "
             "top-k | recompute (rows) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        p = r.get("phases_s")
        share = f"{100 * r['share_of_matmul_peak']:.0f}%" if "share_of_matmul_peak" in r else "-"
        phases = (f"{p['load_s']:.4f} | {p['assemble_s']:.4f} | {p['stage1_s']:.4f} | {p['topk_s']:.4f} | "
                  f"{p['recompute_s']:.4f} ({r['recomputed_rows']})") if p else "- | - | - | - | -"
        lines.append(f"| {r['context']} | {r['method']} | {r['ttft_s']:.4f} | {r['speedup_vs_fastest_full']:.2f}x | "
                     f"{share} | {phases} |")
    kernels = sorted({f"{k['rows']} rows x {k['slots']} slots{' (Stage I)' if k['stage_one'] else ''}: {k['kernel']}"
                      for k in payload.get("kernels", [])})
    lines += [f"\nkernels: {'; '.join(kernels)}"] if kernels else []
    lines += [f"\n{k['fallback']}" for k in payload.get("kernels", []) if k["fallback"]]
    lines += [f"\n{note}" for note in payload["notes"]]
    return "\n".join(lines)


def write(payload: dict, out: str, clock: float) -> str:
    """The JSON and its Markdown table, as they stand; the table."""
    payload["wall_s"] = time.perf_counter() - clock
    table = markdown(payload)
    atomic_write(Path(out), json.dumps(payload, indent=2))
    atomic_write(Path(out).with_suffix(".md"), table + "\n")
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", default="8192,16384,32768", help="comma-separated prompt lengths in tokens")
    parser.add_argument("--chunk-tokens", type=int, default=512)
    parser.add_argument("--ratio", type=float, default=0.2, help="ProphetKV's recompute ratio")
    parser.add_argument("--repeats", type=int, default=2, help="timed requests per method and context")
    parser.add_argument("--scale", type=float, default=1.0, help="model size relative to Llama-3.1-8B (smoke tests)")
    parser.add_argument("--mesh", default="auto", help=mesh_flag.MESH_HELP)
    parser.add_argument("--store-device-gib", type=float, default=48.0, help="chunk store's device tier cap")
    parser.add_argument("--store-host-gib", type=float, default=48.0, help="chunk store's host-RAM tier cap")
    parser.add_argument("--matmul-sizes", default="4096,8192", help="square bf16 matmuls timed for the peak")
    parser.add_argument("--budget-s", type=float, default=330.0, help="skip contexts once this much time is spent")
    parser.add_argument("--allow-cpu", action="store_true", help=f"run on CPU (needs --scale <= {CPU_SCALE_LIMIT})")
    parser.add_argument("--out", default="benchmarks/results/gpu_ttft_8b.json", help="JSON; the .md table beside it")
    args = parser.parse_args(argv)
    try:
        args.contexts = [int(c) for c in args.contexts.split(",")]
        args.matmul_sizes = [int(c) for c in args.matmul_sizes.split(",")]
        args.mesh = mesh_flag.parse_mesh(args.mesh)
    except ValueError as err:
        parser.error(str(err).splitlines()[0])
    sizes = (args.repeats, args.chunk_tokens, *args.contexts, *args.matmul_sizes)
    if not 0 < args.scale <= 1 or not 0 < args.ratio <= 1 or min(sizes) < 1:
        parser.error("--scale and --ratio must lie in (0, 1]; --repeats, --chunk-tokens, --contexts, "
                     "--matmul-sizes must be positive")
    if min(args.store_device_gib, args.store_host_gib, args.budget_s) < 0:
        parser.error("--store-device-gib, --store-host-gib and --budget-s must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    # Read when the backend starts (the next line), so set here rather than at import.
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")  # leave room for the torch reference
    args = parse_args(argv)
    if jax.default_backend() == "cpu" and not (args.allow_cpu and args.scale <= CPU_SCALE_LIMIT):
        sys.stderr.write("gpu_ttft_8b.py: refusing to run on CPU: this checks accelerator TTFT (an 8B prefill "
                         f"takes many minutes here); smoke-test with --allow-cpu --scale {CPU_SCALE_LIMIT} or less\n")
        return 2
    clock = time.perf_counter()
    config = scaled_config(args.scale)
    peak = max(matmul_gflops(size, 5, "bfloat16") for size in args.matmul_sizes) / 1000
    params = sharding.place_params(random_params(config), config, args.mesh)
    fingerprint = model_fingerprint(config, params)
    mesh = sharding.mesh_of(params)
    reference, note = torch_reference(config)
    notes = [note] if note else []
    results = []
    payload = {
        "device": str(jax.devices()[0]), "device_kind": jax.devices()[0].device_kind,
        "devices_used": 1 if mesh is None else mesh.size, "backend": jax.default_backend(),
        "platform": platform.platform(), **versions(),
        "config": {**dataclasses.asdict(config), "scale": args.scale}, "paper": PAPER_SPEEDUP,
        "chunk_tokens": args.chunk_tokens, "ratio": args.ratio, "repeats": args.repeats,
        "matmul_peak_tflops": peak, "notes": notes, "results": results,
    }
    for context in args.contexts:
        if time.perf_counter() - clock > args.budget_s:
            notes.append(f"context {context} skipped: the --budget-s {args.budget_s:.0f} s was spent")
            continue
        results += measure(params, config, context, args, reference, peak, fingerprint)
        payload["kernels"] = attention.chosen_kernels()  # each pass's kernel, and any cuDNN refusal
        print(f"{context}: done at {time.perf_counter() - clock:.0f} s", flush=True)
        write(payload, args.out, clock)  # after every context: a timeout keeps what finished
    table = write(payload, args.out, clock)
    print(table)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
