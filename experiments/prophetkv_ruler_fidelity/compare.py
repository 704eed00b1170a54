"""Which of context length and chunk size moves the KL ranking: one row per RULER run.

Per run: the mean KL(full || method) of each selector, their order, and for each ProphetKV form how many
prompts its KL is below each baseline's, with the Holm-adjusted signed-rank p (the run's own family).
Runs are compared on the prompts each holds; a run still going counts what it has.

    python -m experiments.prophetkv_ruler_fidelity.compare experiments/prophetkv_ruler_fidelity/runs/ruler_1024 \\
        experiments/prophetkv_ruler_fidelity/runs/ruler_2048
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prophetkv_jax import report
from prophetkv_jax.report import SELECTING_BASELINES, SELECTORS
from runkit.records import load_records


def row(run: Path) -> str:
    """The run's Markdown row (exit with a message when it has no records)."""
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
            wins.append(f"{pair['ours']} < {pair['method']}: {s['negative']}/{pair['pairs']} "
                        f"(Holm p {s['p_holm']:.2g})")
    pairs = max((p["pairs"] for p in summary["paired"]), default=0)
    means = " / ".join(f"{kl[m]:.4f}" if m in kl else "-" for m in SELECTORS)
    return (f"| {run.name} | {settings['context']} | {settings['chunk_tokens']} | {settings['template_version']} | "
            f"{pairs} | {means} | {order} | {'; '.join(wins)} |")


def table(runs: list[Path]) -> str:
    """The comparison table of ``runs``, one row each."""
    return "\n".join(["| run | context | chunk | template | prompts | mean KL: " + " / ".join(SELECTORS)
                      + " | KL order (mean) | KL below, prompt by prompt |",
                      "|---|---|---|---|---|---|---|---|", *map(row, runs)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    print(table(parser.parse_args(argv).runs))


if __name__ == "__main__":
    main()
