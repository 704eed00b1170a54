"""Which of context length and chunk size moves the KL ranking: one row per RULER run.

Per run: the mean KL(full || method) of each selector, their order, and for each ProphetKV form how many
prompts its KL is below each baseline's, with the Holm-adjusted signed-rank p (the run's own family).
Runs are compared on the prompts each holds; a run still going counts what it has.

    python benchmarks/ruler_compare.py benchmarks/results/ruler_1024 benchmarks/results/ruler_2048 \\
        benchmarks/results/ruler_2048_c128 benchmarks/results/ruler_2048_c256
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prophetkv_jax import report
from prophetkv_jax.report import SELECTING_BASELINES, SELECTORS
from runkit.records import load_records


def row(run: Path) -> str:
    records = load_records(run / "records.jsonl")
    if not records:
        raise SystemExit(f"{run}: no records.jsonl to read")
    settings = records[0]["settings"]
    summary = report.summarize(records)
    kl = {a["method"]: a["kl"] for a in summary["averages"] if a["method"] in SELECTORS}
    order = " < ".join(sorted(kl, key=kl.get))
    wins = []
    for pair in summary["paired"]:
        if pair["method"] in SELECTING_BASELINES:
            s = pair["kl"]
            wins.append(f"{pair['ours']} < {pair['method']}: {s['negative']}/{pair['pairs']} (Holm p {s['p_holm']:.2g})")
    pairs = max((p["pairs"] for p in summary["paired"]), default=0)
    means = " / ".join(f"{kl[m]:.4f}" if m in kl else "-" for m in SELECTORS)
    return (f"| {run.name} | {settings['context']} | {settings['chunk_tokens']} | {settings['template_version']} | "
            f"{pairs} | {means} | {order} | {'; '.join(wins)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    runs = parser.parse_args().runs
    print("| run | context | chunk | template | prompts | mean KL: " + " / ".join(SELECTORS)
          + " | KL order (mean) | KL below, prompt by prompt |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(row(run))


if __name__ == "__main__":
    main()
