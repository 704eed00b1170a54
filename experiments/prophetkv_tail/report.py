"""The results page of the prophetkv_tail experiment, from the committed tail.json alone.

    python -m experiments.prophetkv_tail.report   # rewrites results.md here

tail.json holds every measured prompt with its group (tail or control) and the answer's layout;
the page sets the groups' means side by side, so what tells a tail prompt apart stands out. The
intervention (intervention.rows.jsonl, from ``experiments.prophetkv_tail.intervene``) gets its own
section: per tail prompt, ProphetKV's KL with and without the answer's rows forced in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.pages import page_command
from experiments.prophetkv_ruler_fidelity.configs import HEADLINE
from experiments.prophetkv_tail import config
from experiments.prophetkv_tail.intervene import FORCED, ROWS
from experiments.prophetkv_tail.run import gaps
from prophetkv_jax import report
from runkit.files import atomic_write
from runkit.records import load_records

HERE = Path(__file__).parent
RUNS = HERE.parent / "prophetkv_ruler_fidelity" / "runs"
METHODS = ("prophetkv", "prophetkv_chunks", "cacheblend", "epic", "kvshare", "oracle")
PER_METHOD = (("kl", "KL(full ‖ method)", 3), ("answer_value_covered", "answer value rows recomputed", 2),
              ("answer_needle_covered", "answer needle rows recomputed", 2), ("oracle_overlap", "oracle overlap", 2),
              ("oracle_overlap_chunks", "oracle overlap, chunk rows", 2), ("budget.prefix", "budget on the prefix", 3))
PER_PROMPT = (("answer_layout.needle_split", "answer needle cut by a chunk boundary (share)", 2),
              ("answer_layout.value_in_chunk_head", "answer value in the first 20% of its chunk (share)", 2),
              ("stage_one.entropy", "Stage I normalised entropy", 3), ("stage_one.topk_mass", "Stage I top-k mass", 3),
              ("stage_one.mass_prefix", "Stage I mass on the prefix", 3),
              ("stage_one.mass_chunk_first", "Stage I mass on chunks' first rows", 3),
              ("stage_one.mass_answer_value", "Stage I mass on the answer value", 3),
              ("best_baseline_kl", "best baseline's KL", 3))


def _cell(group: dict[str, float], key: str, digits: int) -> str:
    return f"{group[key]:.{digits}f}" if key in group else "-"


def page(payload: dict[str, Any]) -> str:
    """Markdown of the tail study: settings, per-method and per-prompt means of tail vs control."""
    settings, summary = payload["settings"], payload["summary"]
    tail, control = summary.get("tail", {}), summary.get("control", {})
    by_run = {run: sum(r["group"] == "tail" and r["run"] == run for r in payload["rows"]) for run in settings["runs"]}
    lines = ["# ProphetKV's KL tail: what the prompts far above the best baseline share\n",
             f"Command: `{config.COMMAND}`\n",
             f"Tail: ProphetKV's KL above the best of CacheBlend, EPIC and KVShare by more than {settings['gap']} "
             f"nats; {tail.get('prompts', 0)} tail prompts ("
             + ", ".join(f"{n} in {run}" for run, n in by_run.items())
             + f") and {control.get('prompts', 0)} same-task controls at the task's median gap; model "
             f"{settings['model']}.\n",
             "## Per method (mean over prompts: tail / control)\n",
             "| method | " + " | ".join(title for _, title, _ in PER_METHOD) + " |",
             "|---|" + "---|" * len(PER_METHOD)]
    for method in METHODS:
        cells = [f"{_cell(tail, f'{method}.{key}', d)} / {_cell(control, f'{method}.{key}', d)}"
                 for key, _, d in PER_METHOD]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["\n## Per prompt (mean: tail / control)\n", "| measure | tail | control |", "|---|---|---|"]
    lines += [f"| {title} | {_cell(tail, key, d)} | {_cell(control, key, d)} |" for key, title, d in PER_PROMPT]
    lines.append(f"\nTail prompts still above the best baseline by more than the gap with chunk-only ProphetKV: "
                 f"**{summary['tail_still_above_with_chunk_only']} of {tail.get('prompts', 0)}**.\n")
    return "\n".join(lines)


FORCED_TITLES = {"value": "value forced", "needle": "needle forced", "chunk": "chunk forced"}


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def intervention_page(rows: list[dict[str, Any]], gap: float) -> str:
    """The intervention's section: each tail prompt's KL as run and with the answer's rows forced in."""
    runs = HEADLINE[::-1]  # the runner's order: 256-token chunks first (fewer tail prompts)
    measured = []
    for run in runs:
        records = report.split_failed(load_records(RUNS / run / "records.jsonl"))[0]
        tail = sum(g > gap for g in gaps(records).values())
        measured.append(f"{sum(r['run'] == run for r in rows)} of the {tail} tail prompts of {run}")
    lines = ["\n## Intervention: the answer's rows forced into ProphetKV's recompute set\n",
             f"Measured so far: {'; '.join(measured)} (the runner resumes where it stopped).\n",
             "Command: `python -m experiments.prophetkv_tail.intervene " + " ".join(
                 f"experiments/prophetkv_ruler_fidelity/runs/{run}" for run in runs) + "`\n",
             "Same budget k as ProphetKV: the answer's value tokens, its whole needle(s), or every row of the "
             "chunk(s) holding an answer value go in first, the rest by Stage I's score. Stage I's mass on the value "
             "is its share of the score; \"x rows\" divides it by the value's share of the context rows (1 = no more "
             f"than an average row). Closed: KL within {gap} nats of the best baseline's.\n",
             "| prompt | needle cut | Stage I mass on value (x rows) | best baseline | ProphetKV | "
             + " | ".join(FORCED_TITLES[n] for n in FORCED) + " |", "|---|---|---|---|---|" + "---|" * len(FORCED)]
    for r in rows:
        layout = r["answer_layout"]
        cut = "-" if "needle_split" not in layout else ("yes" if layout["needle_split"] else "no")
        ratio = r["stage_one_value_mass"] / r["value_row_share"] if r["value_row_share"] else None
        lines.append(f"| {r['key']} | {cut} | {_f(r['stage_one_value_mass'])} ({_f(ratio, 1)}) | "
                     f"{_f(r['best_baseline_kl'])} | {_f(r['kl_prophetkv'])} | "
                     + " | ".join(_f(r[f"kl_{n}"]) for n in FORCED) + " |")
    lines += ["", "| | prompts | ProphetKV | " + " | ".join(FORCED_TITLES[n] for n in FORCED) + " |",
              "|---|---|---|" + "---|" * len(FORCED)]
    groups = [("all tail prompts", rows), ("needle cut", [r for r in rows if r["answer_layout"].get("needle_split")]),
              ("no needle cut", [r for r in rows if not r["answer_layout"].get("needle_split")])]
    for name, group in groups:
        if not group:
            continue
        closed = lambda key: sum(r[key] - r["best_baseline_kl"] <= gap for r in group)  # noqa: E731
        cells = [f"{sum(r[f'kl_{k}'] for r in group) / len(group):.3f}, closed {closed(f'kl_{k}')}"
                 for k in ("prophetkv", *FORCED)]
        lines.append(f"| {name}: mean KL, closed | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_pages(out: Path = HERE) -> list[Path]:
    """results.md of the committed tail.json (and intervention rows, when there are any) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    payload = json.loads((HERE / "tail.json").read_text())
    text = page(payload)
    rows = [r for r in load_records(ROWS) if r["group"] == "tail"]
    if rows:
        text += intervention_page(rows, payload["settings"]["gap"])
    atomic_write(out / "results.md", text)
    return [out / "results.md"]


main = page_command(__doc__, HERE, write_pages)


if __name__ == "__main__":
    raise SystemExit(main())
