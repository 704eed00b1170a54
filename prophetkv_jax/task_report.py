"""The fidelity tables and paired tests per benchmark task, beside the pooled ones.

Pooled over tasks, a method can lead on average while losing on whole tasks (ProphetKV's KL is
higher than EPIC's on most fwe prompts and lower on every multiquery prompt): the average hides
which kind of prompt a selector suits. So each task gets its own means, its winner, and its own
paired tests of the spec's ProphetKV against each row-selecting baseline. Those tests form one
Holm family per (metric, ratio) in a run: every (task, baseline) comparison, 7 x 3 = 21 on the
headline RULER runs. Zero differences (most top-1 pairs) are handled both ways, dropped (Wilcoxon)
and ranked (Pratt), each with its own Holm adjustment.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from prophetkv_jax.paired import ALPHA, Paired, holm

OURS = "prophetkv"
TESTED_AGAINST = ("cacheblend", "epic", "kvshare")
CONTENDERS = (*TESTED_AGAINST, OURS)  # the methods a task's winner is named among (the spec's four selectors)
# (record field, column title, decimals, True when higher is closer to full prefill)
METRICS = (("kl", "KL(full ‖ ·)", 4, False), ("top1_agreement", "top-1 agreement", 3, True),
           ("same_answer", "same answer as full", 3, True))


def task_paired(records: list[dict[str, Any]], rounds: int = 4000, seed: int = 0) -> list[dict[str, Any]]:
    """ProphetKV minus each baseline in ``TESTED_AGAINST``, per (task, ratio), paired by sample; per metric
    the summary of :class:`Paired` with Holm's adjustment over the (metric, ratio) family of every task and
    baseline, for the Wilcoxon (``p_holm``) and the Pratt (``p_pratt_holm``) p-values."""
    values: dict[tuple, dict[int, dict]] = collections.defaultdict(dict)
    for r in records:
        values[(r["task"], r["method"], r["ratio"])][r["index"]] = r
    out, families = [], collections.defaultdict(list)
    for (task, method, ratio), ours in sorted(values.items(), key=lambda kv: (kv[0][2] or 0, kv[0][0])):
        if method != OURS:
            continue
        for other in TESTED_AGAINST:
            theirs = values.get((task, other, ratio), {})
            common = sorted(set(ours) & set(theirs))
            if not common:
                continue
            row: dict[str, Any] = {"task": task, "ours": OURS, "method": other, "ratio": ratio, "pairs": len(common)}
            for metric, *_ in METRICS:
                diffs = np.array([float(ours[i][metric]) - float(theirs[i][metric]) for i in common])
                comparison = Paired.of(diffs, rounds, seed)
                row[metric] = comparison.summary()
                families[(ratio, metric)].append(row[metric])
            out.append(row)
    for family in families.values():
        for key in ("p", "p_pratt"):
            for stats, adjusted in zip(family, holm([s[key] for s in family])[0]):
                stats[f"{key}_holm"] = adjusted
    return out


def winners(rows: list[dict[str, Any]]) -> dict[tuple[str, float | None, str], str]:
    """(task, ratio, metric) -> the contender closest to full prefill on that task's mean (ties: all named)."""
    cells = collections.defaultdict(dict)
    for r in rows:
        if r["method"] in CONTENDERS:
            cells[(r["task"], r["ratio"])][r["method"]] = r
    out = {}
    for (task, ratio), methods in cells.items():
        for metric, _, _, higher in METRICS:
            means = {m: r[metric] for m, r in methods.items() if r[metric] is not None}
            if means:
                best = max(means.values()) if higher else min(means.values())
                out[(task, ratio, metric)] = " = ".join(m for m in CONTENDERS if means.get(m) == best)
    return out


def _verdict(stats: dict[str, Any], higher: bool) -> str:
    """The side closer to full prefill when the Holm-adjusted Wilcoxon p is below 5%, else 'n.s.'."""
    if stats["p_holm"] >= ALPHA:
        return "n.s."
    closer = (stats["mean"] > 0) == higher
    return "**ProphetKV**" if closer else "**baseline**"


def markdown(summary: dict[str, Any]) -> str:
    """Per task: each metric's mean for every selector with the winner, then ProphetKV minus each baseline."""
    rows = [r for r in summary["rows"] if r["method"] in CONTENDERS]
    if not rows or not summary.get("task_paired"):
        return ""
    best = winners(rows)
    cell = {(r["task"], r["method"], r["ratio"]): r for r in rows}
    keys = sorted({(r["task"], r["ratio"]) for r in rows}, key=lambda k: (k[1] or 0, k[0]))
    lines = ["## Per task\n", "Means per task of the four row-selecting methods (the spec's ProphetKV and the three "
             "baselines) and the one closest to full prefill."]
    for metric, title, d, _ in METRICS:
        lines += ["", f"{title}:", "", "| task | ratio | " + " | ".join(CONTENDERS) + " | closest |",
                  "|---|---|" + "---|" * (len(CONTENDERS) + 1)]
        for task, ratio in keys:
            means = [cell.get((task, m, ratio), {}).get(metric) for m in CONTENDERS]
            shown = ["-" if v is None else f"{v:.{d}f}" for v in means]
            closest = best.get((task, ratio, metric), "-")
            lines.append(f"| {task} | {ratio:g} | " + " | ".join(shown) + f" | {closest} |")
    lines += ["", "ProphetKV minus each baseline per task, paired by sample: mean difference, samples with a "
              "positive / negative / zero difference, Holm-adjusted Wilcoxon p (zeros dropped) and Holm-adjusted "
              "Pratt p "
              "(zeros kept). Holm's family: all (task, baseline) comparisons of one metric at one ratio in this run. "
              "Verdict: the side closer to full prefill where the Wilcoxon Holm p < 0.05."]
    for metric, title, d, higher in METRICS:
        lines += ["", f"{title}:", "", "| task | ProphetKV − | pairs | mean | + / − / 0 | Holm p | Pratt Holm p | "
                  "verdict |", "|---|---|---|---|---|---|---|---|"]
        for row in summary["task_paired"]:
            s = row[metric]
            lines.append(f"| {row['task']} | {row['method']}@{row['ratio']:g} | {row['pairs']} | {s['mean']:+.{d}f} | "
                         f"{s['positive']} / {s['negative']} / {s['zero']} | {s['p_holm']:.2g} | "
                         f"{s['p_pratt_holm']:.2g} | {_verdict(s, higher)} |")
    return "\n".join(lines) + "\n"
