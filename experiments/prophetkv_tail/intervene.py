"""The KL tail tested by intervention: force the answer's rows into ProphetKV's recompute set and see if it closes.

The tail study found an association: on the prompts where ProphetKV's KL sits far above the best
baseline, Stage I leaves the answer's value tokens stale. Here the cause is changed on purpose, on the
headline 2048-token runs' tail prompts, at the same budget k: ProphetKV's top-k by Stage I's score,
then the same k with (a) the answer's value tokens, (b) the whole answer needle(s), (c) every row of the
chunk(s) holding an answer value put first (in Stage I's order) and the rest filled by Stage I's score.
If the tail is Stage I missing those rows, (a)-(c) bring the KL down to the baselines'. Each prompt also
gets Stage I's mass on the value tokens against their share of the rows, and whether a needle is cut.

    python -m experiments.prophetkv_tail.intervene experiments/prophetkv_ruler_fidelity/runs/ruler_2048_c128 \\
        experiments/prophetkv_ruler_fidelity/runs/ruler_2048_c256

Rows go to intervention.rows.jsonl here as they finish (a stopped run resumes); ProphetKV's own KL is
recomputed and must equal its record's. ``python -m experiments.prophetkv_tail.report`` writes the page.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from experiments.prophetkv_tail.run import (
    CATEGORIES,
    VALUE,
    answer_layout,
    checked_records,
    gaps,
    pick,
    query_scores,
    row_categories,
    run_samples,
)
from prophetkv_jax import fidelity, recompute, selectors
from prophetkv_jax.assembly import assemble, cache_capacity
from prophetkv_jax.evaluation import sample_prompt
from prophetkv_jax.pipeline import Engine, Prefill, RagPrompt
from prophetkv_jax.report import SELECTING_BASELINES
from runkit.files import append_jsonl
from runkit.records import load_records, settings_digest

HERE = Path(__file__).parent
ROWS = HERE / "intervention.rows.jsonl"
FORCED = ("value", "needle", "chunk")


def forced_selection(alpha: np.ndarray, forced: np.ndarray, k: int) -> np.ndarray:
    """k rows: ``forced`` first (highest Stage I score first, when they exceed k), then the others by score."""
    order = np.argsort(-alpha, kind="stable")
    first = np.isin(order, forced)
    return np.sort(np.concatenate([order[first], order[~first]])[:k])


def forced_rows(kinds: np.ndarray, starts: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The rows each intervention puts first: the answer's value tokens, its whole needle(s), its chunk(s)."""
    value = np.flatnonzero(kinds == VALUE)
    needle = np.flatnonzero((kinds == VALUE) | (kinds == CATEGORIES.index("answer_needle")))
    bounds = np.asarray(starts)  # segment starts; the last is the query's, where the context ends
    segments = np.unique(np.searchsorted(bounds, value, side="right") - 1)
    chunk = np.concatenate([np.arange(bounds[s], bounds[s + 1]) for s in segments]) if len(segments) else value
    return {"value": value, "needle": needle, "chunk": chunk.astype(np.int64)}


def prefill_rows(engine: Engine, prompt: RagPrompt, selected: np.ndarray) -> Prefill:
    """The assembled prompt with ``selected`` context rows and the query recomputed: the shared Stage II kernel."""
    layout = engine.layout(prompt)
    segments = [engine.segment_kv(s) for s in layout.segments[:-1] if len(s)]
    capacity = cache_capacity([s.num_tokens for s in segments], layout.total + engine.max_new_tokens)
    cache = assemble(engine.config, segments, capacity)
    rows = np.concatenate([selected, np.arange(layout.num_context, layout.total)]).astype(np.int32)
    logits, cache = recompute.recompute_rows(engine.params, engine.config, cache, layout.tokens()[rows], rows,
                                             last_only=True, donate=True)
    last = np.asarray(logits[-1])
    return Prefill(cache=cache, first_token=int(np.argmax(last)), last_logits=last, next_position=layout.total,
                   selected=selected, num_context=layout.num_context, timings={})


def measure(engine: Engine, tokenizer: Any, sample: Any, prompt: RagPrompt, ratio: float) -> dict[str, Any]:
    """ProphetKV's KL and each intervention's on full prefill's answer, and Stage I's mass on the value."""
    full = engine.prefill(prompt, "full")
    answer = engine.generate(full, fidelity.ANSWER_POSITIONS, tuple(tokenizer.eos_ids))
    reference = fidelity.answer_log_probs(engine.params, engine.config, full, answer)
    engine.release(full)
    kinds = row_categories(prompt, sample, tokenizer)
    alpha = query_scores(engine, prompt, False)
    c = len(alpha)
    k = selectors.budget(ratio, c)
    forced = forced_rows(kinds, engine.layout(prompt).starts)
    sets = {"prophetkv": selectors.top_k(alpha, k), **{name: forced_selection(alpha, forced[name], k)
                                                       for name in FORCED}}
    out: dict[str, Any] = {"budget": k, "context_tokens": c, **{f"{n}_rows": int(len(forced[n])) for n in FORCED}}
    for name, rows in sets.items():
        result = prefill_rows(engine, prompt, rows)
        out[f"kl_{name}"] = fidelity.compare(
            reference, fidelity.answer_log_probs(engine.params, engine.config, result, answer)).kl
        out[f"value_covered_{name}"] = float(np.isin(forced["value"], rows).mean()) if len(forced["value"]) else None
        engine.release(result)
    share = alpha / alpha.sum()
    out["stage_one_value_mass"] = float(share[forced["value"]].sum())
    out["value_row_share"] = len(forced["value"]) / c
    return out


def study(run: Path, model: tuple, done: dict[str, dict], gap_threshold: float, controls: bool) -> None:
    """Measure the run's tail prompts (and with ``controls`` their same-task controls) not measured yet."""
    from tqdm import tqdm

    from prophetkv_jax.store import ChunkStore

    params, config, tokenizer, fingerprint = model
    records, settings, ratio = checked_records(run, fingerprint, ROWS, done)
    gap = gaps(records)
    chosen = [(key, group) for key, group in pick(gap, gap_threshold) if controls or group == "tail"]
    samples = run_samples(run, [key for key, _ in chosen], tokenizer, settings)
    recorded = {(r["task"], r["index"], r["method"]): r["kl"] for r in records}
    engine = Engine(params, config, max_new_tokens=max(settings["max_new_tokens"] or 128, fidelity.ANSWER_POSITIONS),
                    fingerprint=fingerprint)
    for (task, index), group in tqdm(chosen, desc=run.name, unit="prompt"):
        key = f"{run.name}/{task}/{index}"
        if key in done:
            continue
        sample = samples[(task, index)]
        prompt, _ = sample_prompt(tokenizer, sample, chunk_tokens=settings["chunk_tokens"], chat=settings["chat"],
                                  max_new_tokens=settings["max_new_tokens"], context_tokens=settings["context"])
        engine.store = ChunkStore()  # one prompt's chunks at a time
        row = {"key": key, "run": run.name, "task": task, "index": index, "group": group,
               "settings": settings, "settings_digest": settings_digest(settings), "gap": gap[(task, index)],
               "kl_record": recorded[(task, index, "prophetkv")],
               "best_baseline_kl": min(recorded[(task, index, b)] for b in SELECTING_BASELINES),
               "answer_layout": answer_layout(prompt, row_categories(prompt, sample, tokenizer)),
               **measure(engine, tokenizer, sample, prompt, ratio)}
        if abs(row["kl_prophetkv"] - row["kl_record"]) > 1e-3 + 1e-2 * row["kl_record"]:
            raise SystemExit(f"{key}: ProphetKV KL {row['kl_prophetkv']:.5f} here, {row['kl_record']:.5f} recorded")
        append_jsonl(ROWS, row)
        done[key] = row


def main(argv: list[str] | None = None) -> None:
    from prophetkv_jax.model.checkpoint import load_checkpoint
    from prophetkv_jax.store import model_fingerprint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="RULER output folders (each with records.jsonl)")
    parser.add_argument("--gap", type=float, default=0.1, help="tail: ProphetKV's KL above the best baseline's by more")
    parser.add_argument("--controls", action="store_true", help="also the same-task controls at the median gap")
    args = parser.parse_args(argv)
    params, config, tokenizer = load_checkpoint()
    model = (params, config, tokenizer, model_fingerprint(config, params))
    done = {r["key"]: r for r in load_records(ROWS)}
    for run in args.runs:
        study(run, model, done, args.gap, args.controls)


if __name__ == "__main__":
    main()
