"""``python evaluate.py --task ruler|longbench``: every method on the same prompts, resumable.

Each sample's chunks are encoded and stored once, then every (method, ratio) prefills from
the same store and decodes greedily. One JSON line per (sample, method, ratio) is appended
as soon as it is scored, so an interrupted run picks up where it stopped; the tables, the
summary JSON and the ratio-sweep plot are rewritten from all lines at the end.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm import tqdm

from prophetkv_jax import report, selectors
from prophetkv_jax.benchmarks.sample import Sample
from prophetkv_jax.generate import greedy_decode_batch
from prophetkv_jax.pipeline import Engine
from prophetkv_jax.prompts import build_rag_prompt

DEFAULT_RULER_TASKS = ("niah_single_1", "niah_multikey_1", "niah_multivalue", "niah_multiquery", "vt", "fwe")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__)
    parser.add_argument("--task", required=True, choices=("ruler", "longbench"))
    parser.add_argument("--subtasks", default=None,
                        help="comma-separated RULER tasks or LongBench datasets (default: a standard set)")
    parser.add_argument("--methods", default=",".join(selectors.METHODS),
                        help=f"comma-separated subset of {','.join(selectors.METHODS)}")
    parser.add_argument("--ratios", default="0.2", help="comma-separated recompute ratios in [0, 1]")
    parser.add_argument("--samples", type=int, default=3, help="samples per task (the README run uses 25)")
    parser.add_argument("--context", type=int, default=2048, help="prompt length in model tokens")
    parser.add_argument("--chunk-tokens", type=int, default=256, help="tokens per cached chunk")
    parser.add_argument("--chunk-bos", action="store_true", help="encode every chunk with its own BOS (EPIC's code)")
    parser.add_argument("--model", default=None, help="HF Llama directory or .gguf file (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--no-chat", action="store_true", help="do not wrap prompts in the model's chat template")
    parser.add_argument("--store", default=None, help="persistent chunk-KV store directory (default: in memory)")
    parser.add_argument("--store-dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--data-dir", default="data/longbench", help="LongBench jsonl folder")
    parser.add_argument("--haystack-dir", default=None, help="text files for RULER's essay haystack")
    parser.add_argument("--squad", default=None, help="SQuAD v2 dev json (RULER qa_1)")
    parser.add_argument("--hotpotqa", default=None, help="HotpotQA dev json (RULER qa_2)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="cap on each task's answer budget (RULER: niah 128, vt 30, fwe 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/ruler", help="output folder (resumes from its records.jsonl)")
    args = parser.parse_args(argv)
    args.methods = _choices("--methods", args.methods, selectors.METHODS)
    try:
        args.ratios = [selectors.check_ratio(float(r)) for r in args.ratios.split(",")]
    except ValueError as err:
        parser.error(f"--ratios: {err}")
    for name in ("samples", "context", "chunk_tokens"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def _choices(flag: str, value: str, allowed: Iterable[str]) -> list[str]:
    picked = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in picked if v not in allowed]
    if unknown or not picked:
        raise SystemExit(f"{flag}: unknown {unknown or 'empty list'}; choose from {', '.join(allowed)}")
    return picked


def runs_for(methods: list[str], ratios: list[float]) -> list[tuple[str, float | None]]:
    """(method, ratio) pairs; full prefill and naive reuse do not depend on the ratio."""
    return [(m, None) if m in report.RATIO_FREE else (m, r) for m in methods
            for r in (ratios[:1] if m in report.RATIO_FREE else ratios)]


def record_key(task: str, index: int, method: str, ratio: float | None) -> str:
    return f"{task}/{index}/{report.ratio_label(method, ratio)}"


def load_records(path: Path) -> list[dict[str, Any]]:
    """Records written so far; a line cut off by an interrupted write is dropped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def evaluate_samples(
    engine: Engine, tokenizer: Any, samples: list[Sample], runs: list[tuple[str, float | None]],
    score_fn, out_dir: Path, *, chunk_tokens: int, chat: bool = True, show_progress: bool = True,
    max_new_tokens: int | None = None, context_tokens: int | None = None,
) -> list[dict[str, Any]]:
    """Run every (method, ratio) on every sample, appending one record per run; returns all records.

    A sample's runs are prefilled one by one (each timed alone) and then decoded together,
    greedily, in one batch; ``max_new_tokens`` caps each sample's own answer budget, and
    with ``context_tokens`` an over-long prompt is cut in the middle to leave room for it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "records.jsonl"
    records = load_records(path)
    done = {r["key"] for r in records}
    pending = [(s, [(m, p) for m, p in runs if record_key(s.task, s.index, m, p) not in done]) for s in samples]
    pending = [(s, todo) for s, todo in pending if todo]
    bar = tqdm(total=sum(len(todo) for _, todo in pending), desc="prefill+decode", unit="run", disable=not show_progress)
    for sample, todo in pending:
        budget = sample.max_new_tokens if max_new_tokens is None else min(max_new_tokens, sample.max_new_tokens)
        prompt = build_rag_prompt(tokenizer, sample.instruction, sample.context, sample.question,
                                  sample.answer_prefix, chunk_tokens, chat=chat and sample.extra.get("chat", True),
                                  max_prompt_tokens=None if context_tokens is None else context_tokens - budget)
        engine.precompute(prompt)
        prefills = [engine.prefill(prompt, method, 0.0 if ratio is None else ratio) for method, ratio in todo]
        outputs = greedy_decode_batch(
            engine.params, engine.config, [p.cache for p in prefills], [p.last_logits for p in prefills],
            [p.next_position for p in prefills], budget, tokenizer.eos_ids,
        )
        for (method, ratio), result, tokens in zip(todo, prefills, outputs):
            prediction = tokenizer.decode([t for t in tokens if t not in tokenizer.eos_ids])
            record = {
                "key": record_key(sample.task, sample.index, method, ratio),
                "task": sample.task, "index": sample.index, "method": method, "ratio": ratio,
                "prediction": prediction, "references": list(sample.references),
                "score": float(score_fn(sample, prediction)),
                "ttft_s": result.timings["ttft"], "select_s": result.timings.get("select", 0.0),
                "store_read_s": result.timings.get("store_read", 0.0),
                "recomputed": int(len(result.selected)), "context_tokens": int(result.num_context),
                "prompt_tokens": int(result.next_position),
            }
            append_record(path, record)
            records.append(record)
            bar.update()
        bar.set_postfix_str(f"{sample.task} #{sample.index}")
    bar.close()
    wanted = {record_key(s.task, s.index, m, p) for s in samples for m, p in runs}
    return [r for r in records if r["key"] in wanted]


def write_outputs(records: list[dict[str, Any]], out_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """summary.json, results.md and (with several ratios) ratio_sweep.png, each written atomically."""
    summary = report.summarize(records)
    summary["settings"] = settings
    _atomic_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    table = report.markdown(summary)
    _atomic_text(out_dir / "results.md", table)
    summary["plot"] = str(out_dir / "ratio_sweep.png") if report.plot_ratio_sweep(summary, out_dir / "ratio_sweep.png") else None
    return summary


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def chat_overhead(tokenizer: Any, chat: bool) -> int:
    """Tokens the chat template adds around a user message (RULER sizes the whole prompt)."""
    if not chat:
        return 1
    return len(tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": ""}])))


def load_samples(args: argparse.Namespace, tokenizer: Any) -> list[Sample]:
    """RULER samples generated locally (sized in model tokens), or LongBench records from --data-dir."""
    if args.task == "ruler":
        from prophetkv_jax.benchmarks import ruler

        tasks = _choices("--subtasks", args.subtasks, ruler.TASKS) if args.subtasks else list(DEFAULT_RULER_TASKS)
        overhead = chat_overhead(tokenizer, not args.no_chat)
        count = lambda text: len(tokenizer.encode(text)) + overhead  # noqa: E731
        samples = []
        for task in tqdm(tasks, desc="generating RULER samples", unit="task"):
            samples += ruler.generate(task, args.samples, args.context, count, seed=args.seed,
                                      haystack_dir=args.haystack_dir, squad_path=args.squad,
                                      hotpotqa_path=args.hotpotqa)
        # sample 0 of every task, then sample 1, ...: a run stopped early still covers every task
        return sorted(samples, key=lambda s: (s.index, tasks.index(s.task)))
    from prophetkv_jax.benchmarks import longbench

    datasets = _choices("--subtasks", args.subtasks, longbench.DATASETS) if args.subtasks else list(longbench.DATASETS)
    samples = []
    for dataset in datasets:
        samples += longbench.load(args.data_dir, dataset, limit=args.samples)
    return samples


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from prophetkv_jax.benchmarks.metrics import score_sample
    from prophetkv_jax.model.checkpoint import load_checkpoint
    from prophetkv_jax.store import ChunkStore

    params, config, tokenizer = load_checkpoint(args.model)
    samples = load_samples(args, tokenizer)
    max_new = max(s.max_new_tokens for s in samples)
    if args.max_new_tokens is not None:
        max_new = min(max_new, args.max_new_tokens)
    store = ChunkStore(args.store, dtype=args.store_dtype)
    engine = Engine(params, config, store, chunk_bos_id=tokenizer.bos_id if args.chunk_bos else None,
                    max_new_tokens=max_new)
    out_dir = Path(args.out)
    records = evaluate_samples(engine, tokenizer, samples, runs_for(args.methods, args.ratios), score_sample,
                               out_dir, chunk_tokens=args.chunk_tokens, chat=not args.no_chat,
                               max_new_tokens=args.max_new_tokens, context_tokens=args.context)
    summary = write_outputs(records, out_dir, dict(vars(args)))
    print(report.markdown(summary))
    print(f"wrote {out_dir / 'results.md'}, {out_dir / 'summary.json'}"
          + (f", {summary['plot']}" if summary["plot"] else ""))
    return 0
