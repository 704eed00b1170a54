"""CEA training speed on this CPU, against two anchors measured in the same run.

The step timed is train_lib's own jitted training step (forward, backward, AdamW update), on a batch
from the real training pipeline. Anchors: (a) this machine's measured float32 matmul peak, against
which the step's FLOPs (XLA's cost analysis of the compiled step) give a fraction of peak; (b) the
same network and step in PyTorch (Restormer's NCHW layout, the same weights, torch.optim.AdamW) on
the same threads. A third contender is the same step compiled with the backbone's previous ops
(Flax Dense's own contraction, the depthwise kernel gradient as nine full-size reductions), so the
JSON holds the speed-up of cea_jax/models/cpu_ops.py beside the anchors. The data pipeline and the
host-to-device copy are timed alone, and a profile of a few steps splits each JAX step's time by op
family, so the JSON says where the time goes. Rounds alternate the contenders, so load from other
processes hits all alike; min and median of wall time and of this process's CPU time are kept.

    python -m benchmarks.cea_train_throughput --preset tiny --variant cea --crop 64 --batch-size 8 \\
        --out benchmarks/results/cea_train_throughput.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_record

DEFAULT_OUT = Path(__file__).parent / "results" / "cea_train_throughput.json"


def seconds(run: Callable[[], Any], rounds: int) -> list[float]:
    """Wall seconds of ``rounds`` calls of ``run`` (which blocks until its work is done)."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        out.append(time.perf_counter() - start)
    return out


def summary(times: list[float], cpu: list[float] | None = None) -> dict[str, Any]:
    out = {"min_s": min(times), "median_s": statistics.median(times), "all_s": times}
    if cpu is not None:
        out.update({"cpu_min_s": min(cpu), "cpu_median_s": statistics.median(cpu), "cpu_all_s": cpu})
    return out


def matmul_peak_gflops(size: int, rounds: int) -> float:
    """GFLOP/s of the fastest of ``rounds`` jitted float32 ``size``-square matmuls."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    matmul = jax.jit(jnp.dot)
    matmul(a, b).block_until_ready()
    return 2 * size**3 / min(seconds(lambda: matmul(a, b).block_until_ready(), rounds)) / 1e9


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


def _reference_depthwise(x: Any, kernel: Any) -> Any:
    """The depthwise 3x3 as the backbone computed it before cpu_ops: its kernel gradient nine full-size reductions."""
    import jax
    import jax.numpy as jnp

    from cea_jax.models.cpu_ops import shifted_taps

    @jax.custom_vjp
    def conv(x, kernel):
        return shifted_taps(x, kernel)

    def backward(residuals, grad):
        x, kernel = residuals
        height, width = x.shape[1:3]
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        taps = [jnp.sum(padded[:, i : i + height, j : j + width] * grad, axis=(0, 1, 2), dtype=jnp.float32)
                for i in range(3) for j in range(3)]
        return shifted_taps(grad, kernel[::-1, ::-1]), jnp.stack(taps).reshape(kernel.shape).astype(kernel.dtype)

    conv.defvjp(lambda x, kernel: (shifted_taps(x, kernel), (x, kernel)), backward)
    return conv(x, kernel)


@contextlib.contextmanager
def reference_ops() -> Iterator[None]:
    """While open, the backbone traces with its previous ops (Flax Dense's contraction, the former depthwise VJP)."""
    from jax import lax

    from cea_jax.models import backbone

    saved = backbone.dense_dot_general, backbone.depthwise_conv3x3
    backbone.dense_dot_general, backbone.depthwise_conv3x3 = lax.dot_general, _reference_depthwise
    try:
        yield
    finally:
        backbone.dense_dot_general, backbone.depthwise_conv3x3 = saved


def jax_step(model_config: Any, train_config: Any, batch: dict[str, Any], reference: bool = False):
    """(a blocking call of train_lib's training step, carrying its state; the compiled step; seconds to compile).

    The step is train_lib's own, compiled afresh (not from its cache) so ``reference`` (the backbone's
    previous ops) can be traced into it.
    """
    import jax
    import jax.numpy as jnp

    from cea_jax import train_lib

    mesh = train_lib.make_mesh()
    _, create = train_lib.state_initializer(model_config, train_config, mesh)
    sharded = train_lib.shard_batch(batch, mesh)
    seed = jnp.asarray(train_config.seed + 1, jnp.uint32)
    carry = {"state": create(None)}
    start = time.perf_counter()
    with reference_ops() if reference else contextlib.nullcontext():
        step = train_lib.jitted_train_step.__wrapped__(model_config, train_config, mesh)
        compiled = step.lower(carry["state"], sharded, seed).compile()
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


def interleaved(contenders: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, Any]]:
    """Wall and process-CPU seconds per call of each contender, one call each per round (load hits all alike)."""
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start_cpu = time.process_time()
            wall[name] += seconds(run, 1)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: summary(wall[name], cpu[name]) for name in contenders}


def step_flops(compiled: Any) -> float:
    """The FLOPs of one compiled step, from XLA's cost analysis."""
    analysis = compiled.cost_analysis()
    return float((analysis[0] if isinstance(analysis, list) else analysis)["flops"])


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
    run, compiled, compile_s = jax_step(model_config, train_config, batch)
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
    if not args.no_reference:  # after the same-network check, which must see only today's ops
        contenders["jax_reference_ops"], reference_compiled, reference_compile_s = jax_step(
            model_config, train_config, batch, reference=True)
    for warm in contenders.values():
        warm()
        warm()
    times = interleaved(contenders, args.rounds)
    flops = step_flops(compiled)
    step = times["jax"]
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
        torch_step = times["torch"]
        report["anchors"]["torch_step"] = torch_step
        report["anchors"]["torch_over_jax"] = torch_step["min_s"] / step["min_s"]
        report["anchors"]["torch_over_jax_cpu"] = torch_step["cpu_min_s"] / step["cpu_min_s"]
        report["anchors"]["torch_forward_max_abs_diff"] = torch_diff
    if "jax_reference_ops" in times:
        before = times["jax_reference_ops"]
        with tempfile.TemporaryDirectory() as folder:
            before_families = (profile_by_family(reference_compiled, contenders["jax_reference_ops"],
                                                 args.profile_steps, Path(folder)) if args.profile_steps else {})
        report["reference_ops"] = {
            **before, "compile_s": reference_compile_s, "gflop": step_flops(reference_compiled) / 1e9,
            "speedup": before["min_s"] / step["min_s"], "speedup_cpu": before["cpu_min_s"] / step["cpu_min_s"],
            "op_families_ms_per_step": before_families,
        }
        if "torch" in times:
            report["reference_ops"]["torch_over_jax"] = times["torch"]["min_s"] / before["min_s"]
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
    parser.add_argument("--no-reference", action="store_true", help="skip the step with the backbone's previous ops")
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
