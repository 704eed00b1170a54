"""``python evaluate.py --task ruler|longbench``: every method on the same prompts, resumable.

Each sample's chunks are encoded and stored once, then every (method, ratio) prefills from
the same store and decodes greedily. One JSON line per (sample, method, ratio) is appended
as soon as it is scored, so an interrupted run picks up where it stopped; the tables, the
summary JSON and the ratio-sweep plot are rewritten from all lines at the end.

The flags are parsed and checked before JAX loads (``--help`` and a bad flag answer at
once), so the modules that pull JAX in are imported inside the functions that use them.
One run at a time writes an output folder (``OUT_LOCK``); a value listed twice in a flag
runs once; the settings digest covers what turns the data into prompts (weights, tokenizer
and chat template, the bytes of the data files), so a resumed run never mixes two of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
from tqdm import tqdm

from prophetkv_jax import report, run_records, selectors
from prophetkv_jax.model.config import DTYPES
from prophetkv_jax.model.mesh_flag import MESH_HELP, parse_mesh
from prophetkv_jax.store import DEFAULT_DEVICE_BYTES, DEFAULT_HOST_BYTES, GIB, STORE_DTYPES
from prophetkv_jax.tasks.sample import Sample
from runkit.cli import Terminated, sigterm_raises
from runkit.files import atomic_write
from runkit.folder_lock import folder_lock
from runkit.records import check_settings, files_digest, settings_digest

if TYPE_CHECKING:
    from prophetkv_jax.pipeline import Engine, RagPrompt

OUT_LOCK = ".evaluate.lock"
DEFAULT_RULER_TASKS = ("niah_single_1", "niah_multikey_1", "niah_multivalue", "niah_multiquery", "vt", "fwe")


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr naming the argument, exit code 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        refuse(message)


def refuse(message: str) -> None:
    sys.stderr.write(f"evaluate.py: error: {message}\n")
    raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``evaluate.py --task ruler|longbench`` (light: no JAX behind it)."""
    parser = OneLineParser(prog="evaluate.py", description=__doc__)
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
    parser.add_argument("--model", default=None,
                        help="HF Llama directory or .gguf file (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--no-chat", action="store_true", help="do not wrap prompts in the model's chat template")
    parser.add_argument("--store", default=None, help="persistent chunk-KV store directory (default: in memory)")
    parser.add_argument("--store-dtype", default=None, choices=STORE_DTYPES,
                        help="precision of the stored chunk KVs (default: the model's --dtype)")
    parser.add_argument("--store-device-gib", type=float, default=DEFAULT_DEVICE_BYTES / GIB,
                        help="chunk store's accelerator-memory tier cap (GiB; 0 serves chunk KVs from host RAM)")
    parser.add_argument("--store-host-gib", type=float, default=DEFAULT_HOST_BYTES / GIB,
                        help="chunk store's host-RAM tier cap (GiB)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES,
                        help="weights, activations and KV cache (bfloat16 halves memory; float32 is the CPU default)")
    parser.add_argument("--mesh", default="auto", help=MESH_HELP)
    parser.add_argument("--data-dir", default="data/longbench", help="LongBench jsonl folder")
    parser.add_argument("--haystack-dir", default=None, help="text files for RULER's essay haystack")
    parser.add_argument("--squad", default=None, help="SQuAD v2 dev json (RULER qa_1)")
    parser.add_argument("--hotpotqa", default=None, help="HotpotQA dev json (RULER qa_2)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="cap on each task's answer budget (RULER: niah 128, vt 30, fwe 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/ruler", help="output folder (resumes from its records.jsonl)")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The flags, checked: a bad one ends in one line and exit code 2 before the model loads."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.methods = _choices("--methods", args.methods, selectors.METHODS)
    try:
        args.mesh = parse_mesh(args.mesh)
    except ValueError as err:
        parser.error(str(err))
    if not min(args.store_device_gib, args.store_host_gib) >= 0:  # NaN fails too
        parser.error("--store-device-gib and --store-host-gib must be >= 0")
    try:
        args.ratios = list(dict.fromkeys(selectors.check_ratio(float(r)) for r in args.ratios.split(",")))
    except ValueError as err:
        parser.error(f"--ratios: {err}")
    for name in ("samples", "context", "chunk_tokens", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive number of tokens/samples, got {value}")
    return args


def _choices(flag: str, value: str, allowed: Iterable[str]) -> list[str]:
    """The listed values, each once, in order (a value listed twice would be run and counted twice)."""
    picked = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [v for v in picked if v not in allowed]
    if unknown or not picked:
        refuse(f"{flag}: unknown {unknown or 'empty list'}; choose from {', '.join(allowed)}")
    return picked


def runs_for(methods: list[str], ratios: list[float]) -> list[tuple[str, float | None]]:
    """(method, ratio) pairs; full prefill and naive reuse do not depend on the ratio."""
    return [(m, None) if m in report.RATIO_FREE else (m, r) for m in methods
            for r in (ratios[:1] if m in report.RATIO_FREE else ratios)]


def record_key(task: str, index: int, method: str, ratio: float | None) -> str:
    return f"{task}/{index}/{report.ratio_label(method, ratio)}"


def run_settings(fingerprint: str, *, chunk_tokens: int, chat: bool, max_new_tokens: int | None,
                 context_tokens: int | None, **more: Any) -> dict[str, Any]:
    """Everything that changes what a record holds for a given key (its digest stamps each record)."""
    return {"model": fingerprint, "chunk_tokens": chunk_tokens, "chat": chat, "max_new_tokens": max_new_tokens,
            "context": context_tokens, **more}


def sample_prompt(tokenizer: Any, sample: Sample, *, chunk_tokens: int, chat: bool = True,
                  max_new_tokens: int | None = None, context_tokens: int | None = None) -> tuple[RagPrompt, int]:
    """A sample's RAG prompt and its answer budget; with ``context_tokens`` an over-long prompt is
    cut in the middle to leave room for the answer."""
    from prophetkv_jax.prompts import build_rag_prompt

    budget = sample.max_new_tokens if max_new_tokens is None else min(max_new_tokens, sample.max_new_tokens)
    prompt = build_rag_prompt(tokenizer, sample.instruction, sample.context, sample.question,
                              sample.answer_prefix, chunk_tokens, chat=chat and sample.extra.get("chat", True),
                              max_prompt_tokens=None if context_tokens is None else context_tokens - budget)
    return prompt, budget


def evaluate_samples(
    engine: Engine, tokenizer: Any, samples: list[Sample], runs: list[tuple[str, float | None]],
    score_fn, out_dir: Path, *, chunk_tokens: int, chat: bool = True, show_progress: bool = True,
    max_new_tokens: int | None = None, context_tokens: int | None = None, settings: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run every (method, ratio) on every sample, appending one record per run; returns all records.

    A sample's runs are prefilled one by one (each timed alone) and then decoded together,
    greedily, in one batch, with full prefill always among them: its answer is the reference
    for every method's fidelity (KL, top-1 agreement, same answer). ``max_new_tokens`` caps
    each sample's own answer budget, and with ``context_tokens`` an over-long prompt is cut in
    the middle to leave room for it. Records made with other ``settings`` are refused.
    """
    settings = run_settings(engine.fingerprint, chunk_tokens=chunk_tokens, chat=chat, max_new_tokens=max_new_tokens,
                            context_tokens=context_tokens, **(settings or {}))
    digest = settings_digest(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "records.jsonl"
    records = run_records.load(path)
    check_settings(records, settings, path)
    done = {r["key"] for r in records}
    pending = [(s, [(m, p) for m, p in runs if record_key(s.task, s.index, m, p) not in done]) for s in samples]
    pending = [(s, todo) for s, todo in pending if todo]
    bar = tqdm(total=sum(len(todo) for _, todo in pending), desc="prefill+decode", unit="run",
               disable=not show_progress)
    with bar:  # closed on any exit, so an error or Ctrl-C line is the last one printed
        for sample, todo in pending:
            prompt, budget = sample_prompt(tokenizer, sample, chunk_tokens=chunk_tokens, chat=chat,
                                           max_new_tokens=max_new_tokens, context_tokens=context_tokens)
            for record in _score_sample(engine, tokenizer, sample, prompt, todo, budget, score_fn):
                record.update(settings=settings, settings_digest=digest)
                run_records.append_record(path, record)
                records.append(record)
                bar.update()
            bar.set_postfix_str(f"{sample.task} #{sample.index}")
    wanted = {record_key(s.task, s.index, m, p) for s in samples for m, p in runs}
    return [r for r in records if r["key"] in wanted]


def _score_sample(engine: Engine, tokenizer: Any, sample: Sample, prompt: RagPrompt,
                  todo: list[tuple[str, float | None]], budget: int, score_fn) -> list[dict[str, Any]]:
    """The records of one sample's runs: answer, score, timings and fidelity to full prefill."""
    from prophetkv_jax import fidelity
    from prophetkv_jax.decode import greedy_decode_batch

    engine.precompute(prompt)
    prefills = [engine.prefill(prompt, method, 0.0 if ratio is None else ratio) for method, ratio in todo]
    methods = [method for method, _ in todo]
    full = prefills[methods.index("full")] if "full" in methods else engine.prefill(prompt, "full")
    batch = prefills if "full" in methods else [*prefills, full]
    outputs = greedy_decode_batch(engine.params, engine.config, [p.cache for p in batch],
                                  [p.last_logits for p in batch], [p.next_position for p in batch],
                                  budget, tokenizer.eos_ids)
    answer = lambda tokens: tokenizer.decode([t for t in tokens if t not in tokenizer.eos_ids])  # noqa: E731
    full_tokens = outputs[methods.index("full")] if "full" in methods else outputs[-1]
    reference = fidelity.answer_log_probs(engine.params, engine.config, full, full_tokens)
    oracles: dict[float, np.ndarray] = {}
    oracle_scores = None  # one full-prefill pass per sample, whatever the ratios
    records = []
    for (method, ratio), result, tokens in zip(todo, prefills, outputs):
        prediction = answer(tokens)
        closeness = fidelity.compare(
            reference, fidelity.answer_log_probs(engine.params, engine.config, result, full_tokens))
        overlap = None
        if method not in report.RATIO_FREE and not closeness.error:
            if ratio not in oracles:
                oracle_scores = engine.oracle_scores(prompt) if oracle_scores is None else oracle_scores
                oracles[ratio] = engine.oracle(prompt, ratio, oracle_scores)
            overlap = fidelity.oracle_overlap(result.selected, oracles[ratio])
        records.append({
            "key": record_key(sample.task, sample.index, method, ratio),
            "task": sample.task, "index": sample.index, "method": method, "ratio": ratio,
            "prediction": prediction, "references": list(sample.references),
            "score": float(score_fn(sample, prediction)),
            "kl": closeness.kl, "top1_agreement": closeness.top1_agreement,
            "same_answer": prediction.strip() == answer(full_tokens).strip(), "oracle_overlap": overlap,
            "ttft_s": result.timings["ttft"], "select_s": result.timings.get("select", 0.0),
            "store_read_s": result.timings.get("store_read", 0.0),
            "recomputed": int(len(result.selected)), "context_tokens": int(result.num_context),
            "prompt_tokens": int(result.next_position),
        })
        if closeness.error:  # nothing was measured: a failure of the record, never agreement
            records[-1] = run_records.mark_failed(records[-1], closeness.error)
    engine.release(*batch)  # the next sample's caches reuse this memory
    return records


def write_outputs(records: list[dict[str, Any]], out_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """summary.json, results.md and (with several ratios) ratio_sweep.png, each written atomically.

    Failed records (``error``) are left out of every number and counted in ``summary["failed"]``
    and in a table under the others (``report.summarize``); the returned summary also holds the plot
    path and that Markdown."""
    summary = report.summarize(records)
    summary["settings"] = settings
    with run_records.naming_file(out_dir / "summary.json"):
        atomic_write(out_dir / "summary.json", json.dumps(summary, indent=2))
    table = report.markdown(summary)
    with run_records.naming_file(out_dir / "results.md"):
        atomic_write(out_dir / "results.md", table)
    with run_records.naming_file(out_dir / "ratio_sweep.png"):
        plotted = report.plot_ratio_sweep(summary, out_dir / "ratio_sweep.png")
    summary["plot"] = str(out_dir / "ratio_sweep.png") if plotted else None
    summary["markdown"] = table
    return summary


def chat_overhead(tokenizer: Any, chat: bool) -> int:
    """Tokens the chat template adds around a user message (RULER sizes the whole prompt)."""
    if not chat:
        return 1
    return len(tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": ""}])))


def load_samples(args: argparse.Namespace, tokenizer: Any) -> list[Sample]:
    """RULER samples generated locally (sized in model tokens), or LongBench records from --data-dir."""
    tasks = subtasks(args)
    if args.task == "ruler":
        from prophetkv_jax.tasks import ruler

        overhead = chat_overhead(tokenizer, not args.no_chat)
        count = lambda text: len(tokenizer.encode(text)) + overhead  # noqa: E731
        samples = []
        for task in tqdm(tasks, desc="generating RULER samples", unit="task"):
            samples += ruler.generate(task, args.samples, args.context, count, seed=args.seed,
                                      haystack_dir=args.haystack_dir, squad_path=args.squad,
                                      hotpotqa_path=args.hotpotqa)
        # sample 0 of every task, then sample 1, ...: a run stopped early still covers every task
        return sorted(samples, key=lambda s: (s.index, tasks.index(s.task)))
    from prophetkv_jax.tasks import longbench

    samples = []
    for dataset in tasks:
        samples += longbench.load(args.data_dir, dataset, limit=args.samples)
    return samples


def subtasks(args: argparse.Namespace) -> list[str]:
    """The RULER tasks or LongBench datasets ``--subtasks`` names (each once), or the default set."""
    if args.task == "ruler":
        from prophetkv_jax.tasks.ruler import TASKS as allowed

        default = DEFAULT_RULER_TASKS
    else:
        from prophetkv_jax.tasks.longbench import DATASETS as allowed

        default = allowed
    return _choices("--subtasks", args.subtasks, allowed) if args.subtasks else list(default)


def data_digests(args: argparse.Namespace) -> dict[str, Any]:
    """Digests of the bytes of every data file the samples are made from (not their paths)."""
    if args.task == "longbench":
        files = {name: Path(args.data_dir) / f"{name}.jsonl" for name in subtasks(args)}
        return {"data_sha256": {name: files_digest([f] if f.is_file() else []) for name, f in files.items()}}
    haystack = Path(args.haystack_dir) if args.haystack_dir else None
    file = lambda flag: files_digest([Path(flag)] if flag and Path(flag).is_file() else [])  # noqa: E731
    return {"haystack_dir_sha256": files_digest(sorted(haystack.glob("*.txt"))) if haystack and haystack.is_dir()
            else None, "squad_sha256": file(args.squad), "hotpotqa_sha256": file(args.hotpotqa)}


def main(argv: list[str]) -> int:
    """Ctrl-C (exit 130) or SIGTERM (exit 143) ends in one line saying how much is saved; every
    record written stays valid. A second run on an --out in use is refused before any work."""
    args = parse_args(argv)
    out_dir = Path(args.out)
    try:
        with sigterm_raises():
            run_records.check_writable(out_dir)  # before the model loads, not after the first sample's compute
            with folder_lock(out_dir, OUT_LOCK, "wait for it to finish or use another --out"):
                return _run(args, out_dir)
    except (KeyboardInterrupt, Terminated) as stop:
        path = out_dir / "records.jsonl"
        saved = len(run_records.load(path))
        how, code = ("terminated", 143) if isinstance(stop, Terminated) else ("interrupted", 130)
        sys.stderr.write(f"evaluate.py: {how}: {saved} record(s) saved in {path}; the same command resumes\n")
        return code


def _run(args: argparse.Namespace, out_dir: Path) -> int:
    from prophetkv_jax import fidelity
    from prophetkv_jax.model.checkpoint import load_checkpoint
    from prophetkv_jax.pipeline import Engine
    from prophetkv_jax.store import ChunkStore, model_fingerprint
    from prophetkv_jax.tasks import longbench, ruler
    from prophetkv_jax.tasks.metrics import score_sample

    # the dtype is part of the config, so the model fingerprint in the settings digest records it
    params, config, tokenizer = load_checkpoint(args.model, dtype=args.dtype, model_parallel=args.mesh)
    if args.context > config.max_position_embeddings:
        refuse(f"--context {args.context} exceeds the model's {config.max_position_embeddings} positions")
    settings = dict(task=args.task, seed=args.seed, chunk_bos=args.chunk_bos, tokenizer=tokenizer.fingerprint,
                    store_dtype=args.store_dtype or config.dtype,  # what the engine stores chunk KVs in
                    template_version=(ruler if args.task == "ruler" else longbench).TEMPLATE_VERSION,
                    **data_digests(args))
    fingerprint = model_fingerprint(config, params)
    full_settings = run_settings(fingerprint, chunk_tokens=args.chunk_tokens,
                                 chat=not args.no_chat, max_new_tokens=args.max_new_tokens,
                                 context_tokens=args.context, **settings)
    try:  # before the slow part: a mismatch is known from the records alone
        check_settings(run_records.load(out_dir / "records.jsonl"), full_settings, out_dir)
        samples = load_samples(args, tokenizer)
    except (ValueError, FileNotFoundError) as err:
        refuse(str(err))
    max_new = max(s.max_new_tokens for s in samples)
    if args.max_new_tokens is not None:
        max_new = min(max_new, args.max_new_tokens)
    store = ChunkStore(args.store, dtype=args.store_dtype, max_device_bytes=int(args.store_device_gib * GIB),
                       max_host_bytes=int(args.store_host_gib * GIB))
    engine = Engine(params, config, store, chunk_bos_id=tokenizer.bos_id if args.chunk_bos else None,
                    max_new_tokens=max(max_new, fidelity.ANSWER_POSITIONS), fingerprint=fingerprint)
    records = evaluate_samples(engine, tokenizer, samples, runs_for(args.methods, args.ratios), score_sample,
                               out_dir, chunk_tokens=args.chunk_tokens, chat=not args.no_chat,
                               max_new_tokens=args.max_new_tokens, context_tokens=args.context, settings=settings)
    summary = write_outputs(records, out_dir, dict(vars(args)))
    print(summary["markdown"])
    print(f"wrote {out_dir / 'results.md'}, {out_dir / 'summary.json'}"
          + (f", {summary['plot']}" if summary["plot"] else ""))
    failed = sum(c["records"] for c in summary["failed"])
    if failed:
        raise FloatingPointError(f"{failed} of {len(records)} records failed (non-finite logits); they are kept in "
                                 f"{out_dir / 'records.jsonl'} with an error field and left out of every mean")
    return 0
