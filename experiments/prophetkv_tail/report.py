"""The results page of the prophetkv_tail experiment, from the committed tail.json alone.

    python -m experiments.prophetkv_tail.report   # rewrites results.md here

tail.json holds every measured prompt with its group (tail or control) and the answer's layout;
the page sets the groups' means side by side, so what tells a tail prompt apart stands out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.pages import page_command
from experiments.prophetkv_tail import config
from runkit.files import atomic_write

HERE = Path(__file__).parent
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


def write_pages(out: Path = HERE) -> list[Path]:
    """results.md of the committed tail.json under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.md", page(json.loads((HERE / "tail.json").read_text())))
    return [out / "results.md"]


main = page_command(__doc__, HERE, write_pages)


if __name__ == "__main__":
    raise SystemExit(main())
