"""Aggregate evaluation records into tables (Markdown, JSON) and the ratio-sweep plot."""

from __future__ import annotations

import collections
import statistics
from pathlib import Path
from typing import Any

# Full prefill and naive reuse recompute a fixed set of rows: one number each, any ratio.
RATIO_FREE = ("full", "naive")


def ratio_label(method: str, ratio: float | None) -> str:
    return method if method in RATIO_FREE or ratio is None else f"{method}@{ratio:g}"


def agreement_with_full(items: list[dict[str, Any]], full_answers: dict[tuple[str, int], str]) -> float | None:
    """Fraction of ``items`` whose answer is identical to full prefill's on the same sample.

    Reuse methods approximate full prefill, so this measures fidelity even where the model
    itself is wrong (a weak model makes accuracy alone a poor guide). None without full runs.
    """
    pairs = [(i["prediction"].strip(), full_answers[(i["task"], i["index"])]) for i in items
             if (i["task"], i["index"]) in full_answers]
    return statistics.fmean(a == b for a, b in pairs) if pairs else None


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean score per (task, method, ratio), retention vs full prefill, agreement with it, median TTFT."""
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in records:
        groups[(r["task"], r["method"], r["ratio"])].append(r)
    full_answers = {(r["task"], r["index"]): r["prediction"].strip() for r in records if r["method"] == "full"}
    rows = []
    for (task, method, ratio), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        rows.append({
            "task": task, "method": method, "ratio": ratio, "samples": len(items),
            "score": statistics.fmean(i["score"] for i in items),
            "agreement": agreement_with_full(items, full_answers),
            "ttft_s": statistics.median(i["ttft_s"] for i in items),
            "select_s": statistics.median(i["select_s"] for i in items),
        })
    full = {row["task"]: row["score"] for row in rows if row["method"] == "full"}
    for row in rows:
        reference = full.get(row["task"])
        row["retention"] = None if not reference else row["score"] / reference
    return {"rows": rows, "averages": _averages(rows)}


def _averages(rows: list[dict]) -> list[dict]:
    """Average over tasks for each (method, ratio) seen on every task."""
    tasks = sorted({r["task"] for r in rows})
    by_key: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in rows:
        by_key[(r["method"], r["ratio"])].append(r)
    out = []
    for (method, ratio), items in by_key.items():
        if len(items) != len(tasks):
            continue
        score = statistics.fmean(i["score"] for i in items)
        agreements = [i["agreement"] for i in items]
        out.append({"method": method, "ratio": ratio, "score": score,
                    "agreement": None if None in agreements else statistics.fmean(agreements),
                    "ttft_s": statistics.fmean(i["ttft_s"] for i in items)})
    full = next((a["score"] for a in out if a["method"] == "full"), None)
    for a in out:
        a["retention"] = None if not full else a["score"] / full
    return sorted(out, key=lambda a: (a["method"], a["ratio"] or 0))


def markdown(summary: dict[str, Any]) -> str:
    """Task x method table of scores, then the averages with retention and TTFT."""
    rows = summary["rows"]
    tasks = sorted({r["task"] for r in rows})
    columns = sorted({(r["method"], r["ratio"]) for r in rows}, key=_column_order)
    cell = {(r["task"], r["method"], r["ratio"]): r for r in rows}
    header = ["task", *[ratio_label(m, p) for m, p in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        values = [f"{cell[(task, m, p)]['score']:.1f}" if (task, m, p) in cell else "-" for m, p in columns]
        lines.append(f"| {task} | " + " | ".join(values) + " |")
    lines += ["", "| method | score | retention vs full | same answer as full | median TTFT (s) |",
              "|---|---|---|---|---|"]
    for a in sorted(summary["averages"], key=lambda a: _column_order((a["method"], a["ratio"]))):
        retention = "-" if a["retention"] is None else f"{100 * a['retention']:.1f}%"
        agreement = "-" if a["agreement"] is None else f"{100 * a['agreement']:.1f}%"
        lines.append(f"| {ratio_label(a['method'], a['ratio'])} | {a['score']:.2f} | {retention} | {agreement} | "
                     f"{a['ttft_s']:.3f} |")
    return "\n".join(lines) + "\n"


def _column_order(key: tuple[str, float | None]) -> tuple[int, float]:
    from prophetkv_jax.selectors import METHODS

    method, ratio = key
    return METHODS.index(method), ratio or 0.0


def plot_ratio_sweep(summary: dict[str, Any], path: Path) -> bool:
    """Score vs recompute ratio per method (averaged over tasks); False when fewer than 2 ratios."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend (e.g. a notebook's) alone

    averages = summary["averages"]
    ratios = sorted({a["ratio"] for a in averages if a["method"] not in RATIO_FREE and a["ratio"] is not None})
    if len(ratios) < 2:
        return False
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for method in sorted({a["method"] for a in averages}, key=lambda m: _column_order((m, 0))):
        points = sorted((a["ratio"], a["score"]) for a in averages if a["method"] == method)
        if method in RATIO_FREE:
            ax.axhline(points[0][1], linestyle="--", linewidth=1, label=f"{method} prefill" if method == "full" else "naive reuse",
                       color="black" if method == "full" else "grey")
        else:
            ax.plot(*zip(*points), marker="o", label=method)
    ax.set_xlabel("recompute ratio p")
    ax.set_ylabel("score")
    ax.set_title("accuracy vs recompute ratio")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)
    return True
