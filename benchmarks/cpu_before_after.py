"""The CPU benchmarks at two commits, side by side in one run: did a change make CPU slower?

Each contender is a commit (``--base``, and ``--head``: HEAD by default) checked out into a temporary
git worktree, so edits made while it runs change nothing; its own benchmark scripts run with that
checkout first on ``PYTHONPATH``: prefill vs
transformers (``llama_prefill.py``), TTFT of full prefill and ProphetKV@0.2 at 4K
(``prophetkv_ttft.py``), and greedy decoding (``llama_decode.py``). Rounds alternate the order of
the two checkouts, so load from other processes hits both alike; every number is kept.

    python -m benchmarks.cpu_before_after --base ebf0900 --out benchmarks/results/cpu_before_after.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from runkit.files import atomic_write, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
# Run by file path inside each checkout: an older commit's benchmarks are scripts, not a package.
BENCHMARKS = {
    "prefill": ["benchmarks/llama_prefill.py", "--lengths", "1024", "2048", "--repeats", "2",
                "--matmul-sizes", "1024", "--out", "{out}.json"],
    "ttft_4k": ["benchmarks/prophetkv_ttft.py", "--contexts", "4096", "--chunks", "512", "--ratios", "0.2",
                "--methods", "full,prophetkv", "--repeats", "2", "--out", "{out}.json"],
    "decode": ["benchmarks/llama_decode.py", "--context", "2048", "--new-tokens", "32", "--repeats", "2",
               "--label", "{label}", "--out", "{out}.jsonl"],
}


def headline(name: str, out: Path) -> dict:
    """The numbers a reader compares, from one benchmark's own output file."""
    if name == "prefill":
        rows = json.loads(out.with_suffix(".json").read_text())["results"]
        return {f"{r['tokens']}_project_s": r["project_seconds"] for r in rows} | {
            f"{r['tokens']}_transformers_s": r["transformers_seconds"] for r in rows}
    if name == "ttft_4k":
        rows = json.loads(out.with_suffix(".json").read_text())["results"]
        return {f"{r['method']}_ttft_s": r["ttft_s"] for r in rows}
    row = read_jsonl(out.with_suffix(".jsonl"))[-1]
    return {"decode_s": min(row["seconds"])}


def run_one(tree: Path, label: str, name: str, scratch: Path, round_index: int) -> dict:
    out = scratch / f"{name}-{label}-{round_index}"
    argv = [arg.format(out=out, label=label) for arg in BENCHMARKS[name]]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, *argv], cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return {"checkout": label, "benchmark": name, "round": round_index, "load_1min": os.getloadavg()[0],
            **headline(name, out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the commit to compare the working tree with")
    parser.add_argument("--head", default="HEAD", help="the commit that should not be slower")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    parser.add_argument("--out", default="benchmarks/results/cpu_before_after.json")
    args = parser.parse_args(argv)
    names = args.benchmarks.split(",")
    if args.rounds < 1 or not set(names) <= set(BENCHMARKS):
        parser.error(f"--rounds must be >= 1 and --benchmarks a subset of {','.join(BENCHMARKS)}")
    commits = {side: subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True,
                                    text=True, check=True).stdout.strip()
               for side, rev in (("base", args.base), ("head", args.head))}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        trees = [(f"{side} {commit}", Path(scratch) / side) for side, commit in commits.items()]
        try:
            for (_, tree), commit in zip(trees, commits.values()):
                subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
                               check=True, capture_output=True)
            for round_index in range(args.rounds):
                for name in names:
                    for label, tree in (trees if round_index % 2 == 0 else trees[::-1]):
                        rows.append(run_one(tree, label, name, Path(scratch), round_index))
                        print(json.dumps(rows[-1]), flush=True)
        finally:
            for _, tree in trees:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    atomic_write(Path(args.out), json.dumps({**commits, "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
