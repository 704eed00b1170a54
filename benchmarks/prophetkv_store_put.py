"""Chunk-store put time against the number of entries on disk: a baseline commit and this tree, side by side.

A put used to list the whole store under its lock to enforce the cap, so its cost grew with
the entries held (every writer serialised on it). Both trees run here, each in its own
process on a copy of the same pre-filled store: puts with the store far below its cap, and
puts into a store at its cap (each evicts). Entries are small (2 KiB), so the time is the
store's bookkeeping plus one fsync, not tensor bytes.

    python -m benchmarks.prophetkv_store_put --baseline main --out benchmarks/results/prophetkv_store_put.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np

from runkit.files import atomic_write

REPO = Path(__file__).resolve().parent.parent


def entry(seed: int):
    from prophetkv_jax.store import SegmentKV

    rng = np.random.default_rng(seed)
    return SegmentKV(*(rng.normal(size=(2, 16, 2, 8)).astype(np.float32) for _ in range(2)))


def key(n: int) -> str:
    from prophetkv_jax.store import chunk_key

    return chunk_key("bench", np.arange(n % 1000 + 1) + n, False, "float32")


def measure(root: str, first: int, puts: int, cap: int) -> dict[str, float]:
    """Open the store and time ``puts`` puts of new keys (run inside the tree under test)."""
    from prophetkv_jax.store import ChunkStore

    start = time.perf_counter()
    store = ChunkStore(root, max_disk_bytes=cap, max_device_bytes=0)
    opened = time.perf_counter() - start
    times = []
    for n in range(first, first + puts):
        value = entry(n)
        start = time.perf_counter()
        store.put(key(n), value)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    return {"open_ms": opened * 1e3, "put_ms_mean": float(ms.mean()), "put_ms_median": float(np.median(ms)),
            "put_ms_max": float(ms.max()), "puts": puts}


def prefill(root: Path, entries: int) -> int:
    """``entries`` entries written by this tree (no cap to enforce); returns the bytes of one entry."""
    from prophetkv_jax.store import ChunkStore

    store = ChunkStore(root, max_disk_bytes=1 << 40, max_device_bytes=0, max_host_bytes=0)
    for n in range(entries):
        store.put(key(n), entry(n))
    return store.disk_bytes() // entries


def export_tree(ref: str, into: Path) -> Path:
    """The packages of commit ``ref`` (git archive), so the baseline runs its own code."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "prophetkv_jax", "runkit"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_in(tree: Path, root: Path, first: int, puts: int, cap: int) -> dict[str, float]:
    """``measure`` with ``tree``'s packages first on the import path (this checkout's benchmarks after them)."""
    code = (f"import json; from benchmarks.prophetkv_store_put import measure; "
            f"print(json.dumps(measure({str(root)!r}, {first}, {puts}, {cap})))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(REPO)]))
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tree, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="main", help="git commit or branch measured as 'before'")
    parser.add_argument("--entries", default="200,6000", help="entries on disk before the timed puts")
    parser.add_argument("--puts", type=int, default=200, help="timed puts per case")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prophetkv_store_put.json"))
    args = parser.parse_args()
    baseline_commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.baseline], check=True,
                                     capture_output=True, text=True).stdout.strip()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="store-put-") as scratch:
        scratch = Path(scratch)
        trees = {"before": export_tree(args.baseline, scratch / "before"), "after": REPO}
        for entries in (int(n) for n in args.entries.split(",")):
            filled = scratch / f"filled-{entries}"
            size = prefill(filled, entries)
            for case, cap in (("below_cap", 1 << 40), ("at_cap", entries * size)):
                for label, tree in trees.items():
                    store = scratch / "store"
                    shutil.rmtree(store, ignore_errors=True)
                    shutil.copytree(filled, store)
                    row = run_in(tree, store, entries, args.puts, cap)
                    results.setdefault(f"{entries}_entries", {}).setdefault(case, {})[label] = row
                    print(f"{entries} entries, {case}, {label}: {row['put_ms_mean']:.2f} ms/put (mean)", flush=True)
                pair = results[f"{entries}_entries"][case]
                pair["speedup_mean"] = pair["before"]["put_ms_mean"] / pair["after"]["put_ms_mean"]
    out = {"settings": {**vars(args), "out": str(args.out), "baseline_commit": baseline_commit,
                        "entry_bytes": size, "entry_shape": [2, 16, 2, 8]}, "results": results}
    atomic_write(args.out, json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
