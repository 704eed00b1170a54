"""Time to the first batch and batches/s of the training pipeline with 0 or N grain workers.

JAX's backend is initialised first, as ``train()`` does before it reads data; the child
processes' loaded XLA libraries are listed to show that every worker imports jaxlib.

    python -m benchmarks.cea_data_workers --workers 0,1,2
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time


def worker_xla_libraries() -> list[list[str]]:
    """For each live child process: the XLA/jaxlib/CUDA shared libraries it has mapped."""
    out = []
    for child in multiprocessing.active_children():
        with open(f"/proc/{child.pid}/maps") as maps:
            names = {line.split()[-1].rsplit("/", 1)[-1] for line in maps if ".so" in line}
        out.append(sorted(n for n in names if any(k in n for k in ("xla", "jaxlib", "cuda", "pjrt"))))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--batches", type=int, default=10, help="batches timed after the first")
    args = p.parse_args(argv)
    import jax

    jax.devices()  # the accelerator runtime is up before any worker starts, as in train()
    from cea_jax.data import catalog, pipeline

    source = catalog.train_source(catalog.parse_data("embedded"), "aio3", seed=0, crop=args.crop, mix_prob=0.5)
    print("| workers | first batch (s) | img/s after it | XLA libraries in the workers |\n|---|---|---|---|")
    for workers in (int(w) for w in args.workers.split(",")):
        dataset = pipeline.train_dataset(source, seed=0, crop=args.crop, batch_size=args.batch_size, workers=workers)
        start = time.perf_counter()
        iterator = iter(dataset)
        next(iterator)
        first = time.perf_counter() - start
        libraries = worker_xla_libraries()
        start = time.perf_counter()
        for _ in range(args.batches):
            next(iterator)
        rate = args.batches * args.batch_size / (time.perf_counter() - start)
        iterator.close()
        print(f"| {workers} | {first:.1f} | {rate:.0f} | {libraries or '-'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
