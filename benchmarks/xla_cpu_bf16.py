"""What a bf16 few-rows pass pays on XLA:CPU for its dtype, next to a NumPy copy of the same bytes.

A naive-reuse request in bf16 reads its KV cache at about a fifth of the fp32 request's ratio to a copy
(benchmarks/prophetkv_few_rows.py). Two costs of the layer loop's forms, timed here side by side at that
benchmark's shapes (4 layers, 8B attention width: 32 query heads and 8 KV heads x 128, hidden 512,
a 4,096-slot cache), each against the form that avoids it:

* weights: a layer scan over stacked bf16 weights (what ``llama.Llama`` runs) makes XLA:CPU convert every
  stack to fp32 before the loop; the same scan over the same weights held as their uint16 bits, each
  layer's slice bitcast back inside the loop, multiplies bf16 directly (fp32 accumulation);
* the cache: a program that carries a bf16 cache through the loop as uint16 bits (so that scattering a
  layer's rows does not convert the stack) bitcasts it on the way in and out, and XLA:CPU copies the
  whole cache for each; a cache already held as bits skips both copies.

    python -m benchmarks.xla_cpu_bf16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import machine_record
from runkit.files import atomic_write

LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, SLOTS, ROWS = 4, 512, 32, 8, 128, 4096, 16


def best_ms(run: Callable[[], Any], rounds: int) -> float:
    """Milliseconds of the fastest of ``rounds`` calls (after one warm-up), each waited for."""
    import jax

    jax.block_until_ready(run())
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        jax.block_until_ready(run())
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def numpy_copy_ms(arrays: list[np.ndarray], rounds: int) -> float:
    """The fastest NumPy copy of these arrays' bytes into one preallocated buffer."""
    target = np.empty(sum(a.nbytes for a in arrays), np.uint8)
    best = float("inf")
    for _ in range(rounds):
        start, at = time.perf_counter(), 0
        for a in arrays:
            target[at:at + a.nbytes] = a.reshape(-1).view(np.uint8)
            at += a.nbytes
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def weight_forms(rounds: int) -> dict[str, Any]:
    """The q/o projections of ROWS rows through LAYERS layers: stacked bf16 weights against their bits."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(0), 2)
    q_proj = jax.random.normal(keys[0], (LAYERS, HIDDEN, HEADS * HEAD_DIM)).astype(jnp.bfloat16)
    o_proj = jax.random.normal(keys[1], (LAYERS, HEADS * HEAD_DIM, HIDDEN)).astype(jnp.bfloat16)
    rows = jnp.ones((ROWS, HIDDEN), jnp.bfloat16)

    def layer(h: jax.Array, q_w: jax.Array, o_w: jax.Array) -> jax.Array:
        q = jnp.dot(h, q_w, preferred_element_type=jnp.float32).astype(jnp.bfloat16)
        return jnp.dot(q, o_w, preferred_element_type=jnp.float32).astype(jnp.bfloat16)

    as_bf16 = lambda x: jax.lax.bitcast_convert_type(x, jnp.bfloat16)  # noqa: E731
    stacked = jax.jit(lambda h, q_w, o_w: jax.lax.scan(lambda c, w: (layer(c, *w), None), h, (q_w, o_w))[0])
    bits = jax.jit(lambda h, q_w, o_w: jax.lax.scan(
        lambda c, w: (layer(c, as_bf16(w[0]), as_bf16(w[1])), None), h, (q_w, o_w))[0])
    q_bits, o_bits = (jax.lax.bitcast_convert_type(w, jnp.uint16) for w in (q_proj, o_proj))
    np.testing.assert_array_equal(stacked(rows, q_proj, o_proj), bits(rows, q_bits, o_bits))
    converts = stacked.lower(rows, q_proj, o_proj).compile().as_text().count(" convert(")
    return {"bytes": int(q_proj.nbytes + o_proj.nbytes),
            "stacked_bf16_ms": best_ms(lambda: stacked(rows, q_proj, o_proj), rounds),
            "stacked_bits_ms": best_ms(lambda: bits(rows, q_bits, o_bits), rounds),
            "numpy_copy_ms": numpy_copy_ms([np.asarray(q_bits), np.asarray(o_bits)], rounds),
            "converts_in_stacked_bf16_program": converts}


def cache_forms(rounds: int) -> dict[str, Any]:
    """ROWS rows scattered into every layer of a donated cache: a bf16 cache packed to bits inside the
    program against a cache held as bits."""
    import functools

    import jax
    import jax.numpy as jnp

    shape = (LAYERS, SLOTS, KV_HEADS, HEAD_DIM)
    slots = jnp.arange(SLOTS - ROWS, SLOTS, dtype=jnp.int32)
    rows = jnp.ones((ROWS, KV_HEADS, HEAD_DIM), jnp.uint16)

    def scatter_layers(bits: jax.Array) -> jax.Array:
        return jax.lax.fori_loop(0, LAYERS, lambda i, c: c.at[i, slots].set(rows, mode="drop"), bits)

    @functools.partial(jax.jit, donate_argnums=0)
    def packed_inside(cache: jax.Array) -> jax.Array:
        bits = scatter_layers(jax.lax.bitcast_convert_type(cache, jnp.uint16))
        return jax.lax.bitcast_convert_type(bits, jnp.bfloat16)

    held_as_bits = jax.jit(scatter_layers, donate_argnums=0)
    state = {"bf16": jnp.zeros(shape, jnp.bfloat16), "bits": jnp.zeros(shape, jnp.uint16)}

    def run_packed() -> jax.Array:
        state["bf16"] = packed_inside(state["bf16"])
        return state["bf16"]

    def run_bits() -> jax.Array:
        state["bits"] = held_as_bits(state["bits"])
        return state["bits"]

    compiled = packed_inside.lower(state["bf16"]).compile().as_text()
    return {"bytes": int(state["bf16"].nbytes),
            "packed_inside_ms": best_ms(run_packed, rounds), "held_as_bits_ms": best_ms(run_bits, rounds),
            "numpy_copy_ms": numpy_copy_ms([np.asarray(state["bits"])], rounds),
            "bitcast_converts_in_packed_program": compiled.count("bitcast-convert(")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/xla_cpu_bf16.json")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    import jax

    if jax.default_backend() != "cpu":
        parser.error(f"this measures XLA:CPU; the default backend is {jax.default_backend()}")
    load = os.getloadavg()[0]
    payload = {**machine_record(os.cpu_count() or 1), "rounds": args.rounds,
               "shapes": f"{LAYERS} layers, {ROWS} rows, hidden {HIDDEN}, {HEADS} heads / {KV_HEADS} KV heads x "
                         f"{HEAD_DIM}, {SLOTS} slots",
               "weights": weight_forms(args.rounds), "cache": cache_forms(args.rounds)}
    payload["load_average_1min"] = {"start": load, "end": os.getloadavg()[0]}
    atomic_write(Path(args.out), json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
