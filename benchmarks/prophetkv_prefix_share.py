"""Where each selector's budget and the oracle's rows fall: the prefix segment or the chunks.

The prefix segment is cached at its true positions with nothing before it, so its KV is
already exact; a selected prefix row is budget spent on nothing. The recompute budget counts
the prefix among the context rows (as the paper's C does), so this measures how much that costs
each selector on the prompts of the headline RULER run (experiments/prophetkv_ruler_fidelity),
and the oracle overlap restricted to chunk rows.

    python -m benchmarks.prophetkv_prefix_share --samples 2 --out benchmarks/results/prophetkv_prefix_share.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from prophetkv_jax.evaluation import DEFAULT_RULER_TASKS, load_samples, parse_args, sample_prompt
from prophetkv_jax.model.checkpoint import load_checkpoint
from prophetkv_jax.pipeline import Engine
from runkit.files import atomic_write

SELECTORS = ("cacheblend", "epic", "kvshare", "prophetkv")
TASKS = (*DEFAULT_RULER_TASKS, "niah_multikey_2")  # the headline RULER run's seven


def share_record(engine: Engine, prompt, ratio: float) -> dict[str, float]:
    """Prefix share of the oracle and of each selector's set; overlaps over all rows and chunk rows."""
    report = engine.diagnose(prompt, ratio, SELECTORS)
    prefix = len(prompt.prefix)
    oracle = report["oracle"]
    oracle_chunks = oracle[oracle >= prefix]
    record = {"prefix_tokens": prefix, "context_tokens": engine.layout(prompt).num_context,
              "oracle_in_prefix": float(np.mean(oracle < prefix))}
    for method in SELECTORS:
        selected = report[method]["selected"]
        record[f"{method}_in_prefix"] = float(np.mean(selected < prefix)) if len(selected) else 0.0
        record[f"{method}_oracle_overlap"] = report[method]["oracle_overlap"]
        chunk_hits = np.intersect1d(selected[selected >= prefix], oracle_chunks)
        record[f"{method}_oracle_overlap_chunks"] = len(chunk_hits) / max(1, len(oracle_chunks))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2, help="samples per RULER task")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--chunk-tokens", type=int, default=128)
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prophetkv_prefix_share.json"))
    args = parser.parse_args()
    eval_args = parse_args(["--task", "ruler", "--subtasks", ",".join(TASKS), "--samples",
                            str(args.samples), "--context", str(args.context)])
    params, config, tokenizer = load_checkpoint(eval_args.model)
    samples = load_samples(eval_args, tokenizer)
    engine = Engine(params, config, max_new_tokens=args.max_new_tokens)
    rows = []
    for sample in tqdm(samples, desc="oracle + four selectors", unit="sample"):
        prompt, _ = sample_prompt(tokenizer, sample, chunk_tokens=args.chunk_tokens,
                                  max_new_tokens=args.max_new_tokens, context_tokens=args.context)
        engine.precompute(prompt)
        rows.append({"task": sample.task, "index": sample.index, **share_record(engine, prompt, args.ratio)})
    metrics = [key for key in rows[0] if key not in ("task", "index")]
    tasks = dict.fromkeys(r["task"] for r in rows)
    groups = {"all": rows, **{task: [r for r in rows if r["task"] == task] for task in tasks}}
    means = {name: {m: float(np.mean([r[m] for r in group])) for m in metrics} for name, group in groups.items()}
    settings = vars(args) | {"out": str(args.out), "model": engine.fingerprint}
    atomic_write(args.out, json.dumps({"settings": settings, "means": means, "rows": rows}, indent=1))
    for name, mean in means.items():
        print(name, {k: round(v, 3) for k, v in mean.items()})


if __name__ == "__main__":
    main()
