"""The headline runs side by side per RULER task, whether they share prompts, and where the zero handling matters.

The two 2048-token runs differ only in chunk size, on the same generated prompts: one table per task
shows both, and a check on the records says whether the prompts really are the same (then the two
runs are two views of one sample, not two replications). Every verdict here is a Holm-adjusted test
inside one run; the last table lists each test whose verdict changes between dropping zero
differences (Wilcoxon) and keeping them (Pratt).
"""

from __future__ import annotations

from pathlib import Path

from prophetkv_jax import report, task_report
from prophetkv_jax.paired import ALPHA
from prophetkv_jax.task_report import CONTENDERS, TESTED_AGAINST
from runkit.records import load_records

SIGN = {True: "ProphetKV", False: "baseline"}


def shared_prompts(runs: list[Path]) -> str:
    """A sentence saying whether every run holds the same (task, sample) prompts with the same references."""
    prompts = []
    for run in runs:
        prompts.append({(r["task"], r["index"]): (tuple(r["references"]), r["prompt_tokens"])
                        for r in load_records(run / "records.jsonl") if r["method"] == "full"})
    same = all(p == prompts[0] for p in prompts[1:])
    names = " and ".join(run.name for run in runs)
    if same:
        return (f"{names} hold the same {len(prompts[0])} prompts (same task, sample, references and prompt length "
                "in every record): they differ only in where the chunk boundaries fall, so they are two views of "
                "one sample, not independent replications.")
    return f"{names} do not hold the same prompts."


def _cell(row: dict, metric: str, higher: bool) -> str:
    s = row[metric]
    verdict = SIGN[(s["mean"] > 0) == higher] if s["p_holm"] < ALPHA else "n.s."
    return f"{s['negative' if not higher else 'positive']}/{row['pairs']} {verdict} ({s['p_holm']:.2g})"


def task_table(runs: list[Path]) -> str:
    """Per task and run: mean KL of the four selectors, the closest, and ProphetKV against each baseline
    (prompts where ProphetKV is closer, the Holm-adjusted verdict and p)."""
    return records_task_table([load_records(run / "records.jsonl") for run in runs])


def records_task_table(runs: list[list[dict]]) -> str:
    """``task_table`` of runs given as their records (one Holm family per run's record list)."""
    lines = ["| task | chunk | mean KL: " + " / ".join(CONTENDERS) + " | lowest KL | highest top-1 | "
             + " | ".join(f"KL: ProphetKV vs {b}" for b in TESTED_AGAINST) + " |",
             "|---|---|---|---|---|" + "---|" * len(TESTED_AGAINST)]
    per_run = []
    for records in runs:
        summary = report.summarize(records)
        rows = [r for r in summary["rows"] if r["method"] in CONTENDERS]
        per_run.append((records, rows, task_report.winners(rows), summary["task_paired"]))
    tasks = sorted({r["task"] for _, rows, _, _ in per_run for r in rows})
    for task in tasks:
        for records, rows, best, paired in per_run:
            chunk = records[0]["settings"]["chunk_tokens"]
            kl = {r["method"]: r["kl"] for r in rows if r["task"] == task}
            ratio = next(r["ratio"] for r in rows if r["task"] == task and r["method"] == "prophetkv")
            tests = {p["method"]: p for p in paired if p["task"] == task}
            lines.append(f"| {task} | {chunk} | " + " / ".join(f"{kl[m]:.3f}" for m in CONTENDERS)
                         + f" | {best[(task, ratio, 'kl')]} | {best[(task, ratio, 'top1_agreement')]} | "
                         + " | ".join(_cell(tests[b], "kl", False) for b in TESTED_AGAINST) + " |")
    return "\n".join(lines)


def zero_handling(runs: list[Path]) -> str:
    """Every test (pooled and per task) whose Holm verdict at 5% differs between Wilcoxon and Pratt."""
    lines = ["| run | test | metric | Wilcoxon Holm p | Pratt Holm p |", "|---|---|---|---|---|"]
    checked = 0
    for run in runs:
        summary = report.summarize(load_records(run / "records.jsonl"))
        tests = [(f"pooled: {p['ours']} − {p['method']}", p) for p in summary["paired"]]
        tests += [(f"{p['task']}: prophetkv − {p['method']}", p) for p in summary["task_paired"]]
        for name, test in tests:
            for metric in ("kl", "top1_agreement", "same_answer", "score"):
                s = test.get(metric)
                if s is None:
                    continue
                checked += 1
                if (s["p_holm"] < ALPHA) != (s["p_pratt_holm"] < ALPHA):
                    lines.append(f"| {run.name} | {name} | {metric} | {s['p_holm']:.2g} | {s['p_pratt_holm']:.2g} |")
    changed = len(lines) - 2
    head = (f"Of {checked} Holm-adjusted tests in {' and '.join(r.name for r in runs)} (pooled and per task, KL, "
            f"top-1 and the pooled score / per-task same answer), {changed} change verdict at 5% between dropping zero "
            "differences (Wilcoxon) and keeping them (Pratt)")
    return head + (":\n\n" + "\n".join(lines) if changed else ".")
