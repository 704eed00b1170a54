"""CEA training speed on this CPU, against two anchors measured in the same run.

The step timed is train_lib's own jitted training step (forward, backward, AdamW update), on a batch
from the real training pipeline. Anchors: (a) this machine's measured float32 matmul peak, against
which the step's FLOPs (XLA's cost analysis of the compiled step) give a fraction of peak; (b) the
same network and step in PyTorch (Restormer's NCHW layout, the same weights, torch.optim.AdamW) on
the same threads. The data pipeline and the host-to-device copy are timed alone, and a profile of a
few steps splits the step's time by op family, so the JSON says where the time goes. Rounds alternate
the contenders, so load from other processes hits both alike; min and median are kept.

    python -m benchmarks.cea_train_throughput --preset tiny --variant cea --crop 64 --batch-size 8 \\
        --out benchmarks/results/cea_train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).parent / "results" / "cea_train_throughput.json"


def seconds(run: Callable[[], Any], rounds: int) -> list[float]:
    """Wall seconds of ``rounds`` calls of ``run`` (which blocks until its work is done)."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        out.append(time.perf_counter() - start)
    return out


def summary(times: list[float]) -> dict[str, Any]:
    return {"min_s": min(times), "median_s": statistics.median(times), "all_s": times}


def matmul_peak_gflops(size: int, rounds: int) -> float:
    """GFLOP/s of the fastest of ``rounds`` jitted float32 ``size``-square matmuls."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    matmul = jax.jit(jnp.dot)
    matmul(a, b).block_until_ready()
    return 2 * size**3 / min(seconds(lambda: matmul(a, b).block_until_ready(), rounds)) / 1e9


def machine_record(threads: int) -> dict[str, Any]:
    """The machine, as benchmarks.report's machine line reads it."""
    import jax

    model = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), model)
    return {"backend": jax.default_backend(), "cpu": f"{model}, {os.cpu_count()} cores", "cpu_count": os.cpu_count(),
            "threads": threads, "platform": platform.platform(), "jax_version": jax.__version__}


OP_FAMILIES = (  # (family, substring of XLA's op_name metadata), first match wins
    ("adapter", "/adapter_"), ("depthwise conv", "dwconv"), ("layer norm", "norm"),
    ("channel attention", "/attn/"), ("feed-forward", "/ffn/"), ("optimizer", "adam"),
)


def op_family(op_name: str) -> str:
    """The op family an XLA op belongs to, read from the Flax module path in its metadata."""
    family = next((name for name, key in OP_FAMILIES if key in op_name), "other")
    return f"{family} ({'backward' if 'transpose(' in op_name else 'forward'})" if family != "optimizer" else family


def profile_by_family(compiled: Any, run: Callable[[], Any], steps: int, folder: Path) -> dict[str, float]:
    """Milliseconds per step of each op family, summed over XLA's thunks on all threads (a jax.profiler trace)."""
    import re

    import jax

    names = {m.group(1): m.group(2) for m in re.finditer(r"%([\w.\-]+) = [^\n]*?metadata=\{op_name=\"([^\"]*)\"",
                                                        compiled.as_text())}
    with jax.profiler.trace(str(folder)):
        for _ in range(steps):
            run()
    trace = max(folder.rglob("*.xplane.pb"), key=lambda f: f.stat().st_mtime)
    totals: dict[str, float] = {}
    for plane in jax.profiler.ProfileData.from_file(str(trace)).planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in names:
                    family = op_family(names[event.name])
                    totals[family] = totals.get(family, 0.0) + event.duration_ns / 1e6 / steps
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def jax_step(model_config: Any, train_config: Any, batch: dict[str, Any], options: dict[str, str] | None):
    """(a blocking call of train_lib's jitted step, carrying its state; the compiled step; seconds to compile)."""
    import jax
    import jax.numpy as jnp

    from cea_jax import train_lib

    mesh = train_lib.make_mesh()
    _, create = train_lib.state_initializer(model_config, train_config, mesh)
    sharded = train_lib.shard_batch(batch, mesh)
    seed = jnp.asarray(train_config.seed + 1, jnp.uint32)
    carry = {"state": create(None)}
    start = time.perf_counter()
    lowered = train_lib.jitted_train_step(model_config, train_config, mesh).lower(carry["state"], sharded, seed)
    compiled = lowered.compile() if options is None else lowered.compile(compiler_options=options)
    compile_s = time.perf_counter() - start

    def run() -> float:
        carry["state"], out = compiled(carry["state"], sharded, seed)
        return float(jax.block_until_ready(out)["loss"])

    return run, compiled, compile_s


def data_rates(train_config: Any, batches: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the real training pipeline's first batch, {first-batch seconds, batches/s over the first ``batches``}).

    The rate counts from a fresh iterator: grain reads ahead on threads, so batches timed only after the
    first would come from its buffer, not from the work of making them.
    """
    from cea_jax.data import catalog, pipeline

    c = train_config
    source = catalog.train_source(catalog.parse_data(c.data), c.protocol, seed=c.seed, crop=c.crop,
                                  mix_prob=c.mix_prob, mix_feather=c.mix_feather)
    iterator = iter(pipeline.train_dataset(source, seed=c.seed, crop=c.crop, batch_size=c.batch_size,
                                           workers=c.workers))
    start = time.perf_counter()
    first = next(iterator)
    first_s = time.perf_counter() - start
    for _ in range(batches - 1):
        next(iterator)
    rate = batches / (time.perf_counter() - start)
    iterator.close()
    return first, {"first_batch_s": first_s, "batches_per_s": rate, "batches": batches, "workers": c.workers}


def transfer_times(batch: dict[str, Any], rounds: int) -> list[float]:
    """Seconds to put one host batch on the devices as the training loop does (train_lib.shard_batch)."""
    import jax

    from cea_jax import train_lib

    mesh = train_lib.make_mesh()
    return seconds(lambda: jax.block_until_ready(train_lib.shard_batch(batch, mesh)), rounds)


def same_network_check(model_config: Any, params: Any, degraded: Any, torch_restored: Any) -> float:
    """Largest |JAX - PyTorch| over the batch's restored pixels at the starting weights (is it the same network?)."""
    import numpy as np

    from cea_jax.models import build_model

    ours, _ = build_model(model_config).apply(params, degraded.astype(np.float32) / 255.0)
    return float(np.max(np.abs(np.asarray(ours) - torch_restored)))


def interleaved(contenders: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each contender, one call each per round, so load changes hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            times[name] += seconds(run, 1)
    return times


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    import jax

    from cea_jax import train_lib
    from cea_jax.configs import get_config
    from cea_jax.train_config import TrainConfig

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    model_config = get_config(args.preset, args.variant)
    train_config = TrainConfig(crop=args.crop, batch_size=args.batch_size)
    batch, data = data_rates(train_config, args.data_batches)
    batch = {k: v for k, v in batch.items() if k in ("degraded", "clean")}
    transfer = summary(transfer_times(batch, max(args.rounds, 3)))
    peak = matmul_peak_gflops(args.matmul_size, max(args.rounds, 3))
    run, compiled, compile_s = jax_step(model_config, train_config, batch, None)
    contenders = {"jax": run}
    if not args.no_torch:
        import torch

        from benchmarks import cea_torch_step

        torch.set_num_threads(threads)
        _, create = train_lib.state_initializer(model_config, train_config, train_lib.make_mesh())
        params = jax.device_get(create(None)["params"])  # the JAX step's starting weights
        contenders["torch"], torch_forward = cea_torch_step.train_step(
            params, model_config, batch["degraded"], batch["clean"], train_config.lr, train_config.weight_decay)
        torch_diff = same_network_check(model_config, params, batch["degraded"], torch_forward())
    for warm in contenders.values():
        warm()
        warm()
    times = interleaved(contenders, args.rounds)
    analysis = compiled.cost_analysis()
    flops = float((analysis[0] if isinstance(analysis, list) else analysis)["flops"])
    step = summary(times["jax"])
    with tempfile.TemporaryDirectory() as folder:
        families = profile_by_family(compiled, run, args.profile_steps, Path(folder)) if args.profile_steps else {}
    report: dict[str, Any] = {
        **machine_record(threads),
        "torch_version": None if args.no_torch else __import__("torch").__version__,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "settings": {"preset": args.preset, "variant": args.variant, "crop": args.crop, "batch_size": args.batch_size,
                     "rounds": args.rounds, "matmul_size": args.matmul_size, "data": train_config.data,
                     "protocol": train_config.protocol},
        "step": {**step, "compile_s": compile_s, "images_per_s": args.batch_size / step["min_s"], "gflop": flops / 1e9,
                 "achieved_gflops": flops / step["min_s"] / 1e9},
        "anchors": {"matmul_peak_gflops": peak, "fraction_of_matmul_peak": flops / step["min_s"] / 1e9 / peak},
        "where_the_time_goes": {"step_s": step["min_s"], "data_batch_s": 1 / data["batches_per_s"],
                                "host_to_device_s": transfer["min_s"], "op_families_ms_per_step": families},
        "data_pipeline": data,
        "host_to_device": transfer,
    }
    if "torch" in times:
        torch_step = summary(times["torch"])
        report["anchors"]["torch_step"] = torch_step
        report["anchors"]["torch_over_jax"] = torch_step["min_s"] / step["min_s"]
        report["anchors"]["torch_forward_max_abs_diff"] = torch_diff
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--variant", default="cea", choices=("none", "cea"))
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of every contender")
    parser.add_argument("--data-batches", type=int, default=30, help="batches timed from the data pipeline")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--profile-steps", type=int, default=3, help="steps profiled by op family (0: none)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch anchor")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if min(args.crop, args.batch_size, args.rounds, args.data_batches, args.matmul_size) < 1 or args.crop % 8:
        parser.error("sizes and counts must be positive and --crop a multiple of 8")
    report = run_benchmark(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from runkit.files import atomic_write

    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k in ("step", "anchors", "where_the_time_goes")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
