"""Roofline of one request: FLOPs and bytes per phase, and the ideal time on a named accelerator.

A phase can go no faster than its FLOPs at the peak matmul rate or its bytes at the memory
bandwidth, whichever is slower. This counts both from the model shape, the context, the chunk size
and the recompute ratio, for ProphetKV (assembly, Stage I, recompute, first token) and for full
prefill, so a measured time reads at once as a distance from its limit. The recompute's attention
pairs are those the code's kernel visits: ``attention.group_key_lengths`` over the rows a
request recomputes (``groups=1`` gives the dense kernel of a single masked call), and full
prefill's FLOPs are ``benchmarks.llama_prefill.prefill_flops``.

    python -m benchmarks.roofline --gpu h100 --contexts 8192,16384,32768
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from benchmarks.gpu_ttft_8b import LLAMA_31_8B
from benchmarks.llama_prefill import prefill_flops
from prophetkv_jax import selectors
from prophetkv_jax.assembly import cache_capacity
from prophetkv_jax.buckets import bucket_size
from prophetkv_jax.chunks import segment_rows
from prophetkv_jax.model import attention
from prophetkv_jax.model.config import LlamaConfig
from runkit.files import atomic_write

# Dense bf16 tensor-core peak (FLOP/s) and HBM bandwidth (bytes/s), SXM parts, from the data sheets.
GPUS = {"h100": (989e12, 3.35e12), "h200": (989e12, 4.8e12)}
QUERY_TOKENS, NEW_TOKENS = 50, 16


@dataclasses.dataclass(frozen=True)
class Phase:
    flops: float
    bytes: float

    def ideal_s(self, peak_flops: float, bandwidth: float) -> float:
        return max(self.flops / peak_flops, self.bytes / bandwidth)


def linear_flops_per_row(c: LlamaConfig) -> float:
    """2 per multiply-add of q, k, v, o and the SwiGLU MLP for one row in one layer."""
    qkv = c.hidden_size * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim
    return 2 * (qkv + c.num_heads * c.head_dim * c.hidden_size + 3 * c.hidden_size * c.intermediate_size)


def layer_weight_bytes(c: LlamaConfig, itemsize: int) -> float:
    return linear_flops_per_row(c) / 2 * itemsize


def kv_bytes(c: LlamaConfig, slots: int, itemsize: int) -> float:
    """K and V of every layer for ``slots`` slots."""
    return 2 * c.num_layers * slots * c.num_kv_heads * c.head_dim * itemsize


def recompute_rows(context: int, ratio: float) -> tuple[np.ndarray, int]:
    """Positions of one ProphetKV recompute, padded as the engine pads them, and the cache capacity: the
    selected rows spread evenly over the context (a stand-in for a real top-k), then the query rows."""
    c = context - QUERY_TOKENS
    k = selectors.budget(ratio, c)
    rows = np.concatenate([np.linspace(0, c - 1, k).astype(np.int64), np.arange(c, context)])
    padded = bucket_size(len(rows), 64)
    return np.pad(rows, (0, padded - len(rows))).astype(np.int32), cache_capacity([], context + NEW_TOKENS)


def attention_pairs(row_positions: np.ndarray, capacity: int, context: int, groups: int) -> float:
    """(row, key) pairs the masked kernel visits with ``groups`` row groups (the code's own count)."""
    key_positions = np.arange(capacity, dtype=np.int32)
    fraction = attention.attended_fraction(row_positions, key_positions, key_positions < context, groups)
    return fraction * len(row_positions) * capacity


def phases(c: LlamaConfig, context: int, chunk: int, ratio: float, groups: int) -> dict[str, Phase]:
    """ProphetKV's phases and full prefill at ``context`` tokens (chunk KVs on the device, in the
    model's dtype); ``groups``: the recompute's row groups (1: one dense masked call)."""
    item = jnp.dtype(c.dtype).itemsize
    attention_per_pair = 4 * c.num_heads * c.head_dim * c.num_layers  # scores and weighted values
    weights = c.num_layers * layer_weight_bytes(c, item)
    rows, capacity = recompute_rows(context, ratio)
    pairs = attention_pairs(rows, capacity, context, groups)
    mask = c.num_layers * len(rows) * capacity * item  # the additive mask, read once per layer
    query_pairs = QUERY_TOKENS * (context - QUERY_TOKENS) + QUERY_TOKENS * (QUERY_TOKENS + 1) / 2
    body = context - QUERY_TOKENS  # chunk KVs travel padded to segment_rows, and are written so
    stored_rows = sum(segment_rows(min(chunk, body - start)) for start in range(0, body, chunk))
    head = Phase(2 * c.hidden_size * c.vocab_size, c.hidden_size * c.vocab_size * item)
    return {
        "assembly": Phase(3 * kv_bytes(c, body, 1) / 2, 2 * kv_bytes(c, stored_rows, item)),  # RoPE: 3 per key
        "stage1": Phase(QUERY_TOKENS * c.num_layers * linear_flops_per_row(c) + query_pairs * attention_per_pair,
                        weights + kv_bytes(c, capacity, item)),
        "recompute": Phase(len(rows) * c.num_layers * linear_flops_per_row(c) + pairs * attention_per_pair,
                           weights + kv_bytes(c, capacity, item) + mask),
        "first_token": head,
        "full_prefill": Phase(prefill_flops(c, context, head_rows=1), weights + kv_bytes(c, context, item)
                              + head.bytes),
    }


def estimate(c: LlamaConfig, context: int, chunk: int, ratio: float, gpu: str, groups: int) -> dict:
    peak, bandwidth = GPUS[gpu]
    table = phases(c, context, chunk, ratio, groups)
    ideal = {name: phase.ideal_s(peak, bandwidth) for name, phase in table.items()}
    prophetkv = sum(ideal[name] for name in ("assembly", "stage1", "recompute", "first_token"))
    rows, capacity = recompute_rows(context, ratio)
    return {
        "context": context, "row_groups": groups, "gpu": gpu,
        "flops": {name: phase.flops for name, phase in table.items()},
        "bytes": {name: phase.bytes for name, phase in table.items()},
        "ideal_s": ideal, "prophetkv_ideal_s": prophetkv, "speedup_vs_full": ideal["full_prefill"] / prophetkv,
        "attended_pair_fraction": attention_pairs(rows, capacity, context, groups) / (len(rows) * capacity),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", default="h100", choices=sorted(GPUS))
    parser.add_argument("--contexts", default="8192,16384,32768")
    parser.add_argument("--chunk-tokens", type=int, default=512)
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--out", default="benchmarks/results/prophetkv_roofline.json")
    args = parser.parse_args(argv)
    contexts = [int(x) for x in args.contexts.split(",")]
    if min(contexts) <= QUERY_TOKENS or args.chunk_tokens < 1 or not 0 < args.ratio <= 1:
        parser.error(f"--contexts must exceed {QUERY_TOKENS} tokens, --chunk-tokens >= 1, --ratio in (0, 1]")
    rows = [estimate(LLAMA_31_8B, context, args.chunk_tokens, args.ratio, args.gpu, groups)
            for context in contexts for groups in (1, attention.ROW_GROUPS)]
    payload = {"model": "Llama-3.1-8B shape, bf16", "kind": "estimate (roofline), not a measurement",
               "gpu": args.gpu, "peak_flops": GPUS[args.gpu][0], "bandwidth_bytes_s": GPUS[args.gpu][1],
               "chunk_tokens": args.chunk_tokens, "ratio": args.ratio, "results": rows}
    atomic_write(Path(args.out), json.dumps(payload, indent=2))
    for r in rows:
        print(f"{r['context']:6d} groups {r['row_groups']}: full {1000 * r['ideal_s']['full_prefill']:.1f} ms, "
              f"ProphetKV {1000 * r['prophetkv_ideal_s']:.1f} ms ({r['speedup_vs_full']:.2f}x), recompute "
              f"{1000 * r['ideal_s']['recompute']:.1f} ms, pairs {r['attended_pair_fraction']:.3f} of dense")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
