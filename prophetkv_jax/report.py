"""Aggregate evaluation records into tables (Markdown, JSON) and the ratio-sweep plot."""

from __future__ import annotations

import collections
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from prophetkv_jax import task_report
from prophetkv_jax.paired import Paired, holm

# Full prefill and naive reuse recompute a fixed set of rows: one number each, any ratio.
RATIO_FREE = ("full", "naive")


def ratio_label(method: str, ratio: float | None) -> str:
    return method if method in RATIO_FREE or ratio is None else f"{method}@{ratio:g}"


FIDELITY = ("kl", "top1_agreement", "same_answer", "oracle_overlap")  # per-record fidelity to full prefill


def _mean(values: list) -> float | None:
    """Mean of the values that exist (None where a method has none, e.g. full prefill's oracle overlap)."""
    present = [float(v) for v in values if v is not None]
    return statistics.fmean(present) if present else None


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (task, method, ratio): mean score, the fidelity means, median TTFT; retention vs full prefill.

    Failed records (``error`` set, nothing measured: ``run_records.mark_failed``) are left out of every
    number and counted per (task, method, ratio, error) in ``failed``."""
    scored, failed = split_failed(records)
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in scored:
        groups[(r["task"], r["method"], r["ratio"])].append(r)
    rows = []
    for (task, method, ratio), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        rows.append({
            "task": task, "method": method, "ratio": ratio, "samples": len(items),
            "score": statistics.fmean(i["score"] for i in items),
            **{name: _mean([i.get(name) for i in items]) for name in FIDELITY},
            "ttft_s": statistics.median(i["ttft_s"] for i in items),
            "select_s": statistics.median(i["select_s"] for i in items),
        })
    full = {row["task"]: row["score"] for row in rows if row["method"] == "full"}
    for row in rows:
        reference = full.get(row["task"])
        row["retention"] = None if not reference else row["score"] / reference
    return {"rows": rows, "averages": _averages(rows), "paired": paired_differences(scored),
            "task_paired": task_report.task_paired(scored), "failed": failure_counts(failed)}


def split_failed(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records that measured something, records that failed)."""
    return [r for r in records if not r.get("error")], [r for r in records if r.get("error")]


def failure_counts(failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed records per (task, method, ratio, error), for summary.json and the note under the tables."""
    counts = collections.Counter((r["task"], r["method"], r["ratio"], r["error"]) for r in failed)
    return [{"task": t, "method": m, "ratio": p, "error": e, "records": n}
            for (t, m, p, e), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0))]


def failure_note(counts: list[dict[str, Any]], total: int) -> str:
    """Markdown lines under the tables: how many records failed, where and why (empty when none)."""
    if not counts:
        return ""
    failed = sum(c["records"] for c in counts)
    lines = [f"\n**{failed} of {total} records failed** (left out of every mean and pair above):\n",
             "| task | run | failed records | why |", "|---|---|---|---|"]
    lines += [f"| {c['task']} | {ratio_label(c['method'], c['ratio'])} | {c['records']} | {c['error']} |"
              for c in counts]
    return "\n".join(lines) + "\n"


PAIRED_METRICS = ("score", "kl", "top1_agreement")
OURS = ("prophetkv", "prophetkv_chunks")  # the spec's ProphetKV and the chunk-only form
SELECTING_BASELINES = ("cacheblend", "epic", "kvshare")  # the baselines that pick rows by the ratio
BASELINES = ("naive", *SELECTING_BASELINES)
SELECTORS = (*SELECTING_BASELINES, *OURS)  # every method that picks the rows it recomputes


def paired_differences(records: list[dict[str, Any]], rounds: int = 4000, seed: int = 0) -> list[dict[str, Any]]:
    """Each ProphetKV form minus each baseline (and the chunk-only form minus the spec's) at the same
    ratio, paired by (task, sample). Per metric: the mean difference and its 95% percentile-bootstrap
    interval, how many pairs differ either way, the two-sided Wilcoxon signed-rank p-value, and Holm's
    adjustment over every comparison of that metric at that ratio, with the bootstrap interval at the
    level Holm tests that comparison at."""
    values: dict[tuple, dict[tuple[str, int], dict]] = collections.defaultdict(dict)
    for r in records:
        values[(r["method"], r["ratio"])][(r["task"], r["index"])] = r
    out, families = [], collections.defaultdict(list)
    for (method, ratio), ours in sorted(values.items(), key=lambda kv: _column_order(kv[0])):
        if method not in OURS:
            continue
        for other in BASELINES + (("prophetkv",) if method == "prophetkv_chunks" else ()):
            theirs = values.get((other, None if other in RATIO_FREE else ratio), {})
            common = sorted(set(ours) & set(theirs))
            if not common:
                continue
            row = {"ours": method, "method": other, "ratio": ratio, "pairs": len(common)}
            for metric in PAIRED_METRICS:
                pairs = [(ours[k].get(metric), theirs[k].get(metric)) for k in common]
                diffs = [float(a) - float(b) for a, b in pairs if a is not None and b is not None]
                row[metric] = None
                if diffs:
                    comparison = Paired.of(np.array(diffs), rounds, seed)
                    row[metric] = comparison.summary()
                    families[(ratio, metric)].append((row[metric], comparison))
            out.append(row)
    for family in families.values():
        adjusted, levels = holm([stats["p"] for stats, _ in family])
        pratt, _ = holm([stats["p_pratt"] for stats, _ in family])
        for (stats, comparison), p, level, p_pratt in zip(family, adjusted, levels, pratt):
            stats["p_holm"], stats["p_pratt_holm"] = p, p_pratt
            stats["holm_low"], stats["holm_high"] = comparison.interval(1 - level)
    return out


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
        out.append({"method": method, "ratio": ratio, "score": statistics.fmean(i["score"] for i in items),
                    **{name: _mean([i[name] for i in items]) for name in FIDELITY},
                    "ttft_s": statistics.fmean(i["ttft_s"] for i in items)})
    full = next((a["score"] for a in out if a["method"] == "full"), None)
    for a in out:
        a["retention"] = None if not full else a["score"] / full
    return sorted(out, key=lambda a: (a["method"], a["ratio"] or 0))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def markdown(summary: dict[str, Any]) -> str:
    """Task x method table of scores, then the averages with retention, fidelity to full prefill and TTFT,
    the paired differences and the failed records."""
    rows = summary["rows"]
    tasks = sorted({r["task"] for r in rows})
    columns = sorted({(r["method"], r["ratio"]) for r in rows}, key=_column_order)
    cell = {(r["task"], r["method"], r["ratio"]): r for r in rows}
    header = ["task", *[ratio_label(m, p) for m, p in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        values = [f"{cell[(task, m, p)]['score']:.1f}" if (task, m, p) in cell else "-" for m, p in columns]
        lines.append(f"| {task} | " + " | ".join(values) + " |")
    lines += ["", "| method | score | retention vs full | KL(full ‖ method) | top-1 agreement | same answer as full "
              "| oracle overlap | median TTFT (s) |", "|---|---|---|---|---|---|---|---|"]
    for a in sorted(summary["averages"], key=lambda a: _column_order((a["method"], a["ratio"]))):
        kl = "-" if a["kl"] is None else f"{a['kl']:.4f}"
        lines.append(f"| {ratio_label(a['method'], a['ratio'])} | {a['score']:.2f} | {_percent(a['retention'])} | "
                     f"{kl} | {_percent(a['top1_agreement'])} | {_percent(a['same_answer'])} | "
                     f"{_percent(a['oracle_overlap'])} | {a['ttft_s']:.3f} |")
    if summary.get("paired"):
        lines += ["", paired_markdown(summary["paired"])]
    per_task = task_report.markdown(summary)
    if per_task:
        lines += ["", per_task]
    total = sum(r["samples"] for r in rows) + sum(c["records"] for c in summary["failed"])
    return "\n".join(lines) + "\n" + failure_note(summary["failed"], total)


PAIRED_TABLES = (("kl", "KL(full ‖ ·), lower is closer to full prefill", 4), ("top1_agreement", "top-1 agreement", 3),
                 ("score", "score", 1))


def paired_markdown(paired: list[dict[str, Any]]) -> str:
    """One table per metric: each ProphetKV form minus each method, paired by prompt."""
    lines = ["Each ProphetKV form minus each method at the same ratio, paired by prompt: mean [95% bootstrap CI], "
             "the interval at the level Holm tests that comparison at, pairs with a positive / negative / zero "
             "difference, the two-sided signed-rank p with zero differences dropped (Wilcoxon) and its Holm "
             "adjustment, and the same with zeros kept (Pratt). Holm's family: every comparison in the table of "
             "that metric at that ratio in this run (one run, one chunk size)."]
    for metric, title, d in PAIRED_TABLES:
        lines += ["", f"{title}:", "", "| difference | pairs | mean [95% CI] | Holm-level CI | + / − / 0 | Wilcoxon p "
                  "| Holm p | Pratt p | Pratt Holm p |", "|---|---|---|---|---|---|---|---|---|"]
        for row in paired:
            s = row[metric]
            if s is None:
                continue
            pair = f"{ratio_label(row['ours'], row['ratio'])} − {ratio_label(row['method'], row['ratio'])}"
            lines.append(f"| {pair} | {row['pairs']} | {s['mean']:+.{d}f} [{s['low']:+.{d}f}, {s['high']:+.{d}f}] | "
                         f"[{s['holm_low']:+.{d}f}, {s['holm_high']:+.{d}f}] | {s['positive']} / {s['negative']} / "
                         f"{s['zero']} | {s['p']:.2g} | {s['p_holm']:.2g} | {s['p_pratt']:.2g} | "
                         f"{s['p_pratt_holm']:.2g} |")
    return "\n".join(lines)


def _column_order(key: tuple[str, float | None]) -> tuple[int, float]:
    from prophetkv_jax.selectors import METHODS

    method, ratio = key
    return METHODS.index(method), ratio or 0.0


def plot_ratio_sweep(summary: dict[str, Any], path: Path) -> bool:
    """Accuracy and KL(full || method) vs recompute ratio per method, averaged over tasks, side by
    side; False when fewer than 2 ratios were run."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend (e.g. a notebook's) alone

    averages = summary["averages"]
    ratios = sorted({a["ratio"] for a in averages if a["method"] not in RATIO_FREE and a["ratio"] is not None})
    if len(ratios) < 2:
        return False
    fig = Figure(figsize=(11, 4))
    for ax, metric, label in zip(fig.subplots(1, 2), ("score", "kl"), ("score", "KL(full ‖ method), nats")):
        for method in sorted({a["method"] for a in averages}, key=lambda m: _column_order((m, 0))):
            points = sorted((a["ratio"], a[metric]) for a in averages
                            if a["method"] == method and a[metric] is not None)
            if not points:
                continue
            if method in RATIO_FREE:
                ax.axhline(points[0][1], linestyle="--", linewidth=1, color="black" if method == "full" else "grey",
                           label="full prefill" if method == "full" else "naive reuse")
            else:
                ax.plot(*zip(*points), marker="o", label=method)
        ax.set_xlabel("recompute ratio p")
        ax.set_ylabel(label)
        ax.set_title(f"{'accuracy' if metric == 'score' else 'fidelity to full prefill'} vs recompute ratio")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)
    return True
