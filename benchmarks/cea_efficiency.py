"""CEA efficiency, side by side with the backbone and the baselines.

For the ``paper`` preset of every variant: parameters, FLOPs (XLA cost analysis of the
compiled forward) and inference latency on one image per size; for the ``tiny`` preset:
training throughput (images/s of a jitted AdamW step on ``--train-batch`` crops).
Timings are interleaved (one call per variant per round) so a change in machine load
hits every variant alike; the median over rounds is reported.

    python -m benchmarks.cea_efficiency                        # 256 and 512, 5 rounds
    python -m benchmarks.cea_efficiency --sizes 256 --repeats 3
    python -m benchmarks.cea_efficiency --quick                # small sizes, smoke run

Writes JSON to ``--out`` and prints a Markdown table; the ``targets`` entry checks the
claims: CEA adds <= 5% params and FLOPs and <= 10% latency over the backbone, and costs
less than prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cea_jax.configs import VARIANTS, get_config
from cea_jax.models import build_model
from cea_jax.summary import count_params
from runkit.files import atomic_write

DEFAULT_OUT = Path(__file__).parent / "results" / "cea_efficiency.json"


def _compile_forward(preset: str, variant: str, size: int) -> tuple[Callable[[], Any], float]:
    """A no-argument callable running the compiled forward on one image, and its FLOPs."""
    model = build_model(get_config(preset, variant))
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3), jnp.float32))
    image = jnp.asarray(np.random.RandomState(0).rand(1, size, size, 3).astype(np.float32))
    compiled = jax.jit(lambda v, x: model.apply(v, x)[0]).lower(variables, image).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return (lambda: compiled(variables, image)), float(analysis["flops"])


def _compile_train_step(variant: str, batch: int, size: int) -> Callable[[], Any]:
    """A no-argument callable running one AdamW step of the tiny preset (state carried)."""
    model = build_model(get_config("tiny", variant))
    rng = np.random.RandomState(1)
    clean = jnp.asarray(rng.rand(batch, size, size, 3).astype(np.float32))
    noisy = jnp.clip(clean + 0.1 * jnp.asarray(rng.randn(*clean.shape).astype(np.float32)), 0, 1)
    optimizer = optax.adamw(2e-4, weight_decay=0.01)

    @jax.jit
    def step(variables, state, key):
        def loss(variables):
            restored, aux = model.apply(variables, noisy, train=True, rngs={"router": key})
            return jnp.mean(jnp.abs(restored - clean)) + aux["aux_loss"]
        value, grads = jax.value_and_grad(loss)(variables)
        updates, state = optimizer.update(grads, state, variables)
        return optax.apply_updates(variables, updates), state, value

    variables = jax.jit(model.init)(jax.random.PRNGKey(0), clean[:1])
    carry = {"variables": variables, "state": optimizer.init(variables), "step": 0}

    def run() -> Any:
        carry["variables"], carry["state"], value = step(
            carry["variables"], carry["state"], jax.random.PRNGKey(carry["step"]))
        carry["step"] += 1
        return value

    return run


def _interleaved_seconds(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Wall seconds of each call, ``repeats`` rounds, one call per name per round."""
    for call in calls.values():
        for _ in range(warmup):
            jax.block_until_ready(call())
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - start)
    return times


def _pct(value: float, base: float) -> float:
    return 100.0 * (value - base) / base


def run(args: argparse.Namespace) -> dict[str, Any]:
    variants = args.variants
    rows: dict[str, dict[str, Any]] = {}
    for variant in variants:
        counts = count_params(get_config("paper", variant))
        rows[variant] = {"variant": variant, "params": counts, "flops": {}, "latency_ms": {}}
    for size in args.sizes:
        calls = {}
        for variant in variants:
            calls[variant], rows[variant]["flops"][str(size)] = _compile_forward("paper", variant, size)
            print(f"compiled paper/{variant} at {size}x{size}", flush=True)
        for variant, seconds in _interleaved_seconds(calls, args.repeats, args.warmup).items():
            rows[variant]["latency_ms"][str(size)] = {
                "median": 1e3 * statistics.median(seconds), "min": 1e3 * min(seconds),
                "all": [1e3 * s for s in seconds],
            }
        del calls
    steps = {variant: _compile_train_step(variant, args.train_batch, args.train_size) for variant in variants}
    for variant, seconds in _interleaved_seconds(steps, args.train_steps, args.warmup).items():
        rows[variant]["train_images_per_s"] = args.train_batch / statistics.median(seconds)
    print("timed tiny training steps", flush=True)
    return {
        "device": {"platform": jax.default_backend(), "kind": jax.devices()[0].device_kind,
                   "cpu_count": os.cpu_count(), "machine": platform.machine(),
                   "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "jax_version": jax.__version__,
        "settings": {"sizes": args.sizes, "repeats": args.repeats, "warmup": args.warmup,
                     "train_batch": args.train_batch, "train_size": args.train_size,
                     "train_steps": args.train_steps},
        "variants": [rows[v] for v in variants],
        "targets": _targets(rows, args.sizes),
    }


def _targets(rows: dict[str, dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """The efficiency claims, checked on the measured numbers (None when a row is missing)."""
    if "cea" not in rows or "none" not in rows:
        return {}
    cea, none = rows["cea"], rows["none"]
    result: dict[str, Any] = {"cea_params_overhead_pct": _pct(cea["params"]["total"], none["params"]["total"])}
    for size in map(str, sizes):
        result[f"cea_flops_overhead_pct@{size}"] = _pct(cea["flops"][size], none["flops"][size])
        result[f"cea_latency_overhead_pct@{size}"] = _pct(
            cea["latency_ms"][size]["median"], none["latency_ms"][size]["median"])
    checks = {"params<=5%": result["cea_params_overhead_pct"] <= 5}
    for size in map(str, sizes):
        checks[f"flops<=5%@{size}"] = result[f"cea_flops_overhead_pct@{size}"] <= 5
        checks[f"latency<=10%@{size}"] = result[f"cea_latency_overhead_pct@{size}"] <= 10
    if "prompt" in rows:
        prompt = rows["prompt"]
        checks["cheaper_than_prompt"] = cea["params"]["total"] < prompt["params"]["total"] and all(
            cea["flops"][s] < prompt["flops"][s]
            and cea["latency_ms"][s]["median"] < prompt["latency_ms"][s]["median"]
            for s in map(str, sizes)
        )
    result["met"] = checks
    return result


def markdown(report: dict[str, Any]) -> str:
    sizes = [str(s) for s in report["settings"]["sizes"]]
    rows = {row["variant"]: row for row in report["variants"]}
    base = rows.get("none")
    header = ["variant", "params (M)"]
    header += [f"GFLOPs @{s}" for s in sizes] + [f"latency ms @{s}" for s in sizes] + ["tiny train img/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def delta(value: float, reference: float | None) -> str:
        return "" if reference is None or value == reference else f" ({_pct(value, reference):+.1f}%)"

    for name, row in rows.items():
        total = row["params"]["total"]
        cells = [name, f"{total / 1e6:.2f}" + delta(total, base and base["params"]["total"])]
        cells += [f"{row['flops'][s] / 1e9:.1f}" + delta(row["flops"][s], base and base["flops"][s]) for s in sizes]
        cells += [
            f"{row['latency_ms'][s]['median']:.0f}"
            + delta(row["latency_ms"][s]["median"], base and base["latency_ms"][s]["median"])
            for s in sizes
        ]
        cells.append(f"{row['train_images_per_s']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="square inference sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=5, help="timed training steps per variant")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64x64 inference, 2 rounds, 32x32 training")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.train_size, args.train_steps = [64], 2, 32, 2
    if min(args.sizes) < 1 or args.repeats < 1 or args.train_steps < 1 or args.warmup < 0:
        parser.error("--sizes, --repeats and --train-steps must be positive and --warmup non-negative")
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(json.dumps(report["targets"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
