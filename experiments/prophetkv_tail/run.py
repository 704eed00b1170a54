"""ProphetKV's KL tail: what the prompts where it sits far above the best baseline have in common.

For every prompt of a RULER run where ProphetKV's KL(full || method) exceeds the best of CacheBlend,
EPIC and KVShare by more than ``--gap`` nats, and for contrast one typical prompt of the same run and
task each (the gap nearest that task's median), this rebuilds the prompt and measures:
- where each selector's budget went (both ProphetKV forms, CacheBlend, EPIC, KVShare, the oracle): the
  prefix segment (exact already), the answer's value tokens inside its needles, the rest of those
  needles, other needles (multikey distractors), each chunk's first row, the rest; and which share of
  the answer's value tokens each recomputes;
- their overlap with the oracle (top-k of the query's attention in a true full prefill), over all rows
  and over chunk rows only;
- Stage I's score concentration: normalised entropy, the share of the score mass its top-k holds, the
  mass per row category;
- each method's KL, and how much of it sits at its worst answer position.
Prompts are rebuilt with the run's settings; a run made with TEMPLATE_VERSION 2 (the committed
ruler_1024 / ruler_2048) gets that version's key pool back. The recomputed ProphetKV KL must equal
the record's. Rows are appended to ``OUT.rows.jsonl`` as they finish, so a stopped run resumes; each
carries its run's settings digest, and a row from a run since redone with other settings is refused.
A row does not depend on ``--gap`` (which only picks the prompts), so another ``--gap`` reuses it.
The committed study's command is in config.py; ``python -m experiments.prophetkv_tail.report``
writes its results.md from tail.json.
"""

from __future__ import annotations

import argparse
import collections
import importlib.resources
import json
import statistics
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from prophetkv_jax import fidelity, recompute, report, selectors
from prophetkv_jax.assembly import assemble, cache_capacity
from prophetkv_jax.evaluation import chat_overhead, sample_prompt
from prophetkv_jax.model import llama
from prophetkv_jax.pipeline import Engine, RagPrompt
from prophetkv_jax.report import SELECTING_BASELINES, SELECTORS
from prophetkv_jax.tasks import ruler
from runkit.files import append_jsonl, atomic_write
from runkit.records import SettingsMismatch, check_settings, load_records, settings_digest

HERE = Path(__file__).parent
CATEGORIES = ("prefix", "answer_value", "answer_needle", "other_needle", "chunk_first", "rest")
VALUE = CATEGORIES.index("answer_value")


def refuse(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit code 2."""
    sys.stderr.write(f"prophetkv_tail: error: {message}\n")
    raise SystemExit(2)


def gaps(records: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    """ProphetKV's KL minus the lowest baseline KL, per (task, sample)."""
    by = collections.defaultdict(dict)
    for r in records:
        by[(r["task"], r["index"])][r["method"]] = r["kl"]
    return {key: kl["prophetkv"] - min(kl[b] for b in SELECTING_BASELINES) for key, kl in by.items()
            if "prophetkv" in kl and all(b in kl for b in SELECTING_BASELINES)}


def pick(gap: dict[tuple[str, int], float], threshold: float) -> list[tuple[tuple[str, int], str]]:
    """The tail prompts and, per tail prompt, the same task's untaken prompt nearest its median gap."""
    tail = sorted((k for k, g in gap.items() if g > threshold), key=lambda k: -gap[k])
    chosen = [(k, "tail") for k in tail]
    taken = set(tail)
    for task, _ in tail:
        pool = [k for k in gap if k[0] == task and k not in taken]
        if pool:
            median = statistics.median(gap[k] for k in pool)
            control = min(pool, key=lambda k: (abs(gap[k] - median), k))
            taken.add(control)
            chosen.append((control, "control"))
    return chosen


def legacy_key_pool() -> list[str]:
    """TEMPLATE_VERSION 2's needle keys: the first 300 purely alphabetic adjectives x nouns."""
    def words(name: str) -> list[str]:
        text = importlib.resources.files("wonderwords.assets").joinpath(name).read_text()
        return [w.strip() for w in text.splitlines() if w.strip().isalpha()]

    return sorted({f"{a}-{n}" for a in words("adjectivelist.txt")[:300] for n in words("nounlist.txt")[:300]})


def row_categories(prompt: RagPrompt, sample, tokenizer) -> np.ndarray:
    """Each context row's category (index into CATEGORIES) from the needles' and answers' character spans."""
    prefix, context = len(prompt.prefix), np.concatenate(prompt.chunks)
    pieces = [tokenizer.decode([int(t)]) for t in context]
    text = "".join(pieces)
    starts = np.cumsum([0] + [len(p) for p in pieces])
    answers = set(sample.references)
    needles = sample.extra.get("needles") or [s for chain in sample.extra.get("chains", []) for s in chain]
    kinds = np.full(len(context), CATEGORIES.index("rest"))
    kinds[np.cumsum([0] + [len(c) for c in prompt.chunks[:-1]])] = CATEGORIES.index("chunk_first")
    for needle in needles:
        kind = CATEGORIES.index("answer_needle" if sample.task == "vt" or any(a in needle for a in answers)
                                else "other_needle")
        at = text.find(needle)
        while at >= 0:
            kinds[(starts[1:] > at) & (starts[:-1] < at + len(needle))] = kind
            for value in answers if kind == CATEGORIES.index("answer_needle") else ():
                where = needle.find(value)
                if where >= 0:
                    kinds[(starts[1:] > at + where) & (starts[:-1] < at + where + len(value))] = VALUE
            at = text.find(needle, at + 1)
    return np.concatenate([np.full(prefix, CATEGORIES.index("prefix")), kinds])


def breakdown(rows: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
    """Share of ``rows`` in each category."""
    return {name: float(np.mean(kinds[rows] == i)) if len(rows) else 0.0 for i, name in enumerate(CATEGORIES)}


def coverage(rows: np.ndarray, kinds: np.ndarray, category: str) -> float | None:
    """Share of the rows of ``category`` that ``rows`` holds (None when there are none)."""
    mine = np.flatnonzero(kinds == CATEGORIES.index(category))
    return float(np.isin(mine, rows).mean()) if mine.size else None


def concentration(alpha: np.ndarray, selected: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
    """How peaked Stage I's scores are: normalised entropy, top-k mass, mass per category."""
    share = alpha / alpha.sum()
    entropy = -np.sum(share * np.log(np.clip(share, 1e-300, None))) / np.log(share.size)
    return {"entropy": float(entropy), "topk_mass": float(share[selected].sum()),
            **{f"mass_{name}": float(share[kinds == i].sum()) for i, name in enumerate(CATEGORIES)}}


def query_scores(engine: Engine, prompt: RagPrompt, oracle: bool) -> np.ndarray:
    """alpha over the context rows: Stage I over the assembled cache, or (oracle) over a full prefill."""
    layout = engine.layout(prompt)
    tokens, c = layout.tokens(), layout.num_context
    lengths = [len(s) for s in layout.segments[:-1] if len(s)]
    capacity = cache_capacity(lengths, layout.total + engine.max_new_tokens)
    if oracle:
        cache, rows = llama.KVCache.empty(engine.config, capacity), np.arange(layout.total)
    else:
        cache = assemble(engine.config, [engine.segment_kv(s) for s in layout.segments[:-1] if len(s)], capacity)
        rows = np.arange(c, layout.total)
    scores, _, _ = recompute.query_attention(engine.params, engine.config, cache, tokens[rows], rows,
                                             score_from=c, donate=True)
    return selectors.prophetkv_scores(scores)[:c]


def selection(rows: np.ndarray, kinds: np.ndarray, oracle: np.ndarray, oracle_chunks: np.ndarray) -> dict[str, Any]:
    """Where a set of rows sits, how much of the answer it covers, and its overlap with the oracle."""
    return {"budget": breakdown(rows, kinds), "answer_value_covered": coverage(rows, kinds, "answer_value"),
            "answer_needle_covered": coverage(rows, kinds, "answer_needle"),
            "oracle_overlap": fidelity.oracle_overlap(rows, oracle),
            "oracle_overlap_chunks": fidelity.oracle_overlap(rows, oracle_chunks)}


def measure(engine: Engine, tokenizer, sample, prompt: RagPrompt, ratio: float) -> dict[str, Any]:
    """Every selector's rows, answer coverage, oracle overlaps and KL on one prompt, and Stage I's concentration."""
    full = engine.prefill(prompt, "full")
    answer = engine.generate(full, fidelity.ANSWER_POSITIONS, tuple(tokenizer.eos_ids))
    reference = fidelity.answer_log_probs(engine.params, engine.config, full, answer)
    kinds = row_categories(prompt, sample, tokenizer)
    alpha, oracle_alpha = query_scores(engine, prompt, False), query_scores(engine, prompt, True)
    c, first = len(alpha), len(prompt.prefix)
    oracle = selectors.top_k(oracle_alpha, selectors.budget(ratio, c))
    oracle_chunks = selectors.prophetkv_chunk_rows(oracle_alpha, first, ratio)
    out: dict[str, Any] = {"context_tokens": c, "prefix_tokens": first, "answer_positions": len(reference),
                           "oracle": selection(oracle, kinds, oracle, oracle_chunks),
                           "stage_one": concentration(alpha, selectors.top_k(alpha, selectors.budget(ratio, c)), kinds)}
    for method in SELECTORS:
        result = engine.prefill(prompt, method, ratio)
        stage_one = selectors.top_k(alpha, selectors.budget(ratio, c))
        if method == "prophetkv" and not np.array_equal(result.selected, stage_one):
            raise RuntimeError("Stage I recomputed here does not reproduce the engine's selection")
        log_probs = fidelity.answer_log_probs(engine.params, engine.config, result, answer)
        per_position = np.sum(np.exp(reference) * (reference - log_probs), axis=-1)
        out[method] = {"kl": fidelity.compare(reference, log_probs).kl,
                       "kl_worst_position_share": float(per_position.max() / max(per_position.sum(), 1e-12)),
                       **selection(result.selected, kinds, oracle, oracle_chunks)}
    return out


def run_samples(run: Path, keys: list[tuple[str, int]], tokenizer, settings: dict[str, Any]) -> dict:
    """The run's samples at ``keys``, generated with its settings (and its template version's key pool)."""
    version = settings["template_version"]
    if version not in (2, 3, ruler.TEMPLATE_VERSION):
        refuse(f"{run}: template_version {version} cannot be rebuilt (2 to {ruler.TEMPLATE_VERSION})")
    resized = sorted({task for task, _ in keys if version < 4 and task in ruler.RESIZED_IN_4})
    if resized:
        refuse(f"{run}: its {', '.join(resized)} prompts (template_version {version}) cannot be rebuilt: "
               "template 4 sizes them otherwise")
    saved = ruler._WORDS
    if version == 2:
        ruler._WORDS = legacy_key_pool()
    try:
        overhead = chat_overhead(tokenizer, settings["chat"])
        count = lambda text: len(tokenizer.encode(text)) + overhead  # noqa: E731
        samples = {}
        for task in sorted({t for t, _ in keys}):
            wanted = max(i for t, i in keys if t == task) + 1
            for s in ruler.generate(task, wanted, settings["context"], count, seed=settings["seed"],
                                    haystack_dir=settings["haystack_dir"]):
                samples[(task, s.index)] = s
        return samples
    finally:
        ruler._WORDS = saved


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested row as {"a.b": value}."""
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def summarize(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Means of every measure per group (tail, control), and how many tail prompts chunk-only keeps."""
    summary = {}
    for group in ("tail", "control"):
        flat = [flatten({k: v for k, v in r.items() if k != "settings"}) for r in rows if r["group"] == group]
        if flat:  # a measure missing from a prompt (no answer value in fwe) is averaged over the others
            keys = sorted({k for f in flat for k in f})
            summary[group] = {"prompts": len(flat), **{k: float(np.mean([f[k] for f in flat if k in f])) for k in keys}}
    tail = [r for r in rows if r["group"] == "tail"]
    summary["tail_still_above_with_chunk_only"] = sum(
        r["prophetkv_chunks"]["kl"] - r["best_baseline_kl"] > threshold for r in tail)
    return summary


def _runs(rows: np.ndarray) -> list[np.ndarray]:
    """Sorted row indices split into runs of consecutive rows."""
    return np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1) if rows.size else []


def answer_layout(prompt: RagPrompt, kinds: np.ndarray) -> dict[str, Any]:
    """Where the answer sits among the chunks: the in-chunk offset of each answer value's first token
    (the smallest, in tokens), the share of value tokens in the first 20% of their chunk (EPIC's
    region at p = 0.2), and whether an answer needle spans two chunks (its value cached without its key)."""
    starts = len(prompt.prefix) + np.cumsum([0] + [len(c) for c in prompt.chunks[:-1]])
    lengths = np.array([len(c) for c in prompt.chunks])
    chunk = lambda row: int(np.searchsorted(starts, row, side="right") - 1)  # noqa: E731
    values = np.flatnonzero(kinds == VALUE)
    if not values.size:
        return {}
    needles = np.flatnonzero((kinds == VALUE) | (kinds == CATEGORIES.index("answer_needle")))
    offsets = [int(run[0] - starts[chunk(run[0])]) for run in _runs(values)]
    head = [row - starts[chunk(row)] < 0.2 * lengths[chunk(row)] for row in values]
    return {"value_offset": min(offsets), "value_in_chunk_head": float(np.mean(head)),
            "needle_split": float(any(chunk(run[0]) != chunk(run[-1]) for run in _runs(needles)))}


def checked_records(run: Path, fingerprint: str, rows_path: Path,
                    done: dict[str, dict]) -> tuple[list[dict], dict[str, Any], float]:
    """The run's records that measured something, its settings and its one ProphetKV ratio; refuses (exit 2)
    a run made with another model or at several ratios, and one whose rows in ``rows_path`` came from
    other settings (a run folder since redone)."""
    records = load_records(run / "records.jsonl")
    if not records:
        refuse(f"{run}: no records.jsonl to read")
    settings = records[0]["settings"]
    if settings["model"] != fingerprint:
        refuse(f"{run}: records made with model {settings['model']}, this model is {fingerprint}")
    ratios = sorted({r["ratio"] for r in records if r["method"] == "prophetkv"})
    if len(ratios) != 1:
        refuse(f"{run}: ProphetKV was run at ratios {ratios}; the tail study needs a run with exactly one")
    try:
        check_settings(records, settings, run / "records.jsonl")
        check_settings([r for r in done.values() if r["run"] == run.name], settings, rows_path)
    except SettingsMismatch as err:
        refuse(str(err))
    return report.split_failed(records)[0], settings, ratios[0]


def study_run(run: Path, gap_threshold: float, model: tuple, rows_path: Path, done: dict[str, dict]) -> list[dict]:
    """Measure the run's tail and control prompts not measured yet (appending each row as it is done),
    and return all its rows with their group and the answer's layout, which need only the prompt."""
    from tqdm import tqdm

    from prophetkv_jax.store import ChunkStore

    params, config, tokenizer, fingerprint = model
    records, settings, ratio = checked_records(run, fingerprint, rows_path, done)
    gap = gaps(records)
    chosen = pick(gap, gap_threshold)
    samples = run_samples(run, [k for k, _ in chosen], tokenizer, settings)
    recorded = {(r["task"], r["index"], r["method"]): r for r in records}
    engine = Engine(params, config, max_new_tokens=max(settings["max_new_tokens"] or 128, fidelity.ANSWER_POSITIONS),
                    fingerprint=fingerprint)
    rows = []
    for (task, index), group in tqdm(chosen, desc=run.name, unit="prompt"):
        sample, key = samples[(task, index)], f"{run.name}/{task}/{index}"
        prompt, _ = sample_prompt(tokenizer, sample, chunk_tokens=settings["chunk_tokens"], chat=settings["chat"],
                                  max_new_tokens=settings["max_new_tokens"], context_tokens=settings["context"])
        row = done.get(key)
        if row is None:
            engine.store = ChunkStore()  # one prompt's chunks at a time
            row = {"key": key, "run": run.name, "task": task, "index": index, "settings": settings,
                   "settings_digest": settings_digest(settings), "gap": gap[(task, index)],
                   "best_baseline_kl": min(recorded[(task, index, b)]["kl"] for b in SELECTING_BASELINES),
                   **measure(engine, tokenizer, sample, prompt, ratio)}
            for method in (m for m in SELECTORS if (task, index, m) in recorded):
                kept = recorded[(task, index, method)]["kl"]
                if abs(row[method]["kl"] - kept) > 1e-3 + 1e-2 * kept:
                    raise SystemExit(f"{key}: {method} KL {row[method]['kl']:.5f} here, {kept:.5f} in the record")
            append_jsonl(rows_path, row)
        layout = answer_layout(prompt, row_categories(prompt, sample, tokenizer))
        rows.append({**row, "group": group, "answer_layout": layout})
    return rows


def main(argv: list[str] | None = None) -> None:
    from prophetkv_jax.model.checkpoint import load_checkpoint
    from prophetkv_jax.store import model_fingerprint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="RULER output folders (each with records.jsonl)")
    parser.add_argument("--gap", type=float, default=0.1, help="tail: ProphetKV's KL above the best baseline's by more")
    parser.add_argument("--out", type=Path, default=HERE / "tail.json", help="rows go to OUT.rows.jsonl")
    args = parser.parse_args(argv)
    params, config, tokenizer = load_checkpoint()
    fingerprint = model_fingerprint(config, params)
    rows_path = args.out.with_suffix(".rows.jsonl")
    done = {r["key"]: r for r in load_records(rows_path)}
    rows = [row for run in args.runs
            for row in study_run(run, args.gap, (params, config, tokenizer, fingerprint), rows_path, done)]
    summary = summarize(rows, args.gap)
    atomic_write(args.out, json.dumps({"settings": {"runs": [run.name for run in args.runs], "gap": args.gap,
                                                    "model": fingerprint}, "summary": summary, "rows": rows}, indent=1))
    for group in ("tail", "control"):
        print(group, {k: round(v, 3) for k, v in summary.get(group, {}).items()})
    print("tail prompts still above the best baseline by more than the gap with chunk-only ProphetKV:",
          summary["tail_still_above_with_chunk_only"], "of", summary.get("tail", {}).get("prompts", 0))


if __name__ == "__main__":
    main()
