"""The RULER runs' pages, rewritten from their records.jsonl without the model, and the experiment's page.

    python -m experiments.prophetkv_ruler_fidelity.report             # every run's results.md + results.md here
    python -m experiments.prophetkv_ruler_fidelity.report runs/ruler_2048_c128   # those run folders only

A run writes its tables when it ends, with the report code it started with; this redoes them with
the current report (e.g. after the paired tests were added), keeping the run's recorded settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.prophetkv_ruler_fidelity import compare, per_task
from experiments.prophetkv_ruler_fidelity.configs import COMPARED, HEADLINE, RUNS
from prophetkv_jax.evaluation import write_outputs
from runkit.files import atomic_write
from runkit.records import SettingsMismatch, check_settings, load_records

HERE = Path(__file__).parent


def rewrite_run(run: Path, out: Path) -> Path:
    """The run's summary.json, results.md (and ratio_sweep.png) under ``out`` from ``run``'s records."""
    records = load_records(run / "records.jsonl")
    if not records:
        raise SystemExit(f"{run}: no records.jsonl to read")
    try:
        check_settings(records, records[0]["settings"], run / "records.jsonl")
    except SettingsMismatch as err:
        raise SystemExit(f"refusing to mix settings: {err}") from None
    previous = run / "summary.json"
    settings = json.loads(previous.read_text())["settings"] if previous.exists() else records[0]["settings"]
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(records, out, settings)
    print(f"{run}: {len(records)} records -> {out / 'results.md'}")
    return out / "results.md"


STATISTICS = """\
- **Unit and pairing.** A prompt (RULER task, sample index); within a run every method answers the same prompts, so
  every comparison is paired by prompt. Metrics per prompt: KL(full ‖ method) over full prefill's first 16 answer
  tokens, top-1 agreement on them, same answer, and the task score.
- **Test.** Two-sided Wilcoxon signed-rank on the per-prompt differences. Zero differences (common for top-1, same
  answer and score) are dropped by Wilcoxon's rule and kept, ranked, by Pratt's; both are reported, with Holm's
  adjustment done separately for each.
- **Holm families** (no family spans two runs or two metrics):
  - *pooled*, per run, metric and ratio: 9 comparisons, each ProphetKV form (the spec's, chunk-only) minus naive,
    CacheBlend, EPIC and KVShare, and chunk-only minus the spec's form;
  - *per task*, per run, metric and ratio: 21 comparisons, the spec's ProphetKV minus CacheBlend, EPIC and KVShare
    on each of the 7 tasks.
- **Verdict.** A difference is claimed where its Wilcoxon Holm p < 0.05 in its family; the Pratt column says
  whether that depends on how zeros are handled. A larger family (e.g. pooling the three metrics, 27 tests) would
  raise every adjusted p; the families above were fixed before these tables were generated.
- **Chunk sizes 128 and 256 are not replications.** They reuse the same prompts (checked below from the records);
  agreement between them shows the result does not hinge on where chunk boundaries fall, not that it replicated."""

PER_TASK_KEY = ("Mean KL of the four row-selecting methods per task, the method with the lowest mean KL and the one "
                "with the highest mean top-1 agreement, then the spec's ProphetKV against each baseline on KL: prompts "
                "where ProphetKV's KL is lower / prompts, the verdict (the side closer to full prefill, or n.s.) and "
                "the Holm p of the per-task family. Top-1 and same-answer tests per task are on each run's page.")


def deviations_section(found: dict) -> str:
    """How the headline prompts differ from NVIDIA RULER's, from deviations.json (``deviations.py``)."""
    split = found["segment_split"]
    changed = {t: v for t, v in split.items() if v["prompts_changed"]}
    vt, chat, fwe = found["vt_example_tokens"], found["chat"], found["fwe"]
    fewer = [f["tokens_ours"] - f["tokens_ruler"] for f in fwe]
    words = [f["words_ours"] - f["words_ruler"] for f in fwe]
    slack = [f["budget"] - f["tokens_ours"] for f in fwe]
    differences = lambda v: ", ".join(  # noqa: E731
        f"{d:+d} on {v['whole_minus_segments'].count(d)}" for d in sorted(set(v["whole_minus_segments"])))
    rows = [
        "| deviation | measured on the headline prompts | fixed? |", "|---|---|---|",
        "| segments (prefix, context, query) are tokenised apart | tokenising the whole prompt gives other ids on "
        + "; ".join(f"{t}: {v['prompts_changed']} of {v['prompts']} (tokens whole − as segments: {differences(v)})"
                    for t, v in changed.items())
        + f"; every other task: 0 of {found['samples_per_task']} | no: chunk KVs are reused only if each segment's "
        "tokens do not depend on its neighbours |",
        f"| vt's one-shot example is sized with the chat template's {vt['chat_overhead']} tokens counted in | the "
        f"example alone is {vt['min']}-{vt['max']} tokens (mean {vt['mean']:.0f}) against RULER's {vt['budget']} | "
        "not yet: changes every vt prompt (needs a TEMPLATE_VERSION bump and the headline runs redone) |",
        f"| SmolLM2's own chat template and system prompt wrap every prompt | {chat['overhead_tokens']} tokens per "
        f"prompt, counted in the context length: `{chat['empty_turn']!r}` | kept: the model is a chat model; "
        "RULER also applies a model template (`--no-chat` turns it off) |",
        f"| fwe fills the largest word count that fits, where RULER steps by context/32 words and backs off one "
        f"step | our fwe prompts end {min(slack)}-{max(slack)} tokens below the budget; RULER's rule would drop "
        f"{min(words)}-{max(words)} words (mean {sum(words) / len(words):.1f}), {min(fewer)}-{max(fewer)} tokens "
        f"(mean {sum(fewer) / len(fewer):.1f}) per prompt | not yet: changes every fwe prompt (as above) |"]
    return (f"Measured on the {found['run']} prompts (the same in both 2048-token runs) by "
            "`python -m experiments.prophetkv_ruler_fidelity.deviations` (tokenizer only), written to "
            "deviations.json.\n\n" + "\n".join(rows))


def experiment_page(out: Path) -> Path:
    """results.md of the experiment: the runs, the KL-ranking comparison and the ratio sweep's figure."""
    lines = ["# ProphetKV's fidelity to full prefill on RULER (SmolLM2-135M-Instruct)\n",
             "Generated by `python -m experiments.prophetkv_ruler_fidelity.report` from `runs/*/records.jsonl`; "
             "each run's own page holds its per-task scores and every paired test.\n",
             "## Runs\n", "| run | command | context | chunk | ratios | samples per task | records |",
             "|---|---|---|---|---|---|---|"]
    for name in RUNS:
        settings = json.loads((HERE / "runs" / name / "summary.json").read_text())["settings"]
        count = len(load_records(HERE / "runs" / name / "records.jsonl"))
        lines.append(f"| [{name}](runs/{name}/results.md) | `python -m experiments.prophetkv_ruler_fidelity.run "
                     f"{name}` | {settings['context']} | {settings['chunk_tokens']} | "
                     f"{', '.join(f'{r:g}' for r in settings['ratios'])} | {settings['samples']} | {count} |")
    headline = [HERE / "runs" / name for name in HEADLINE]
    lines += ["\n## Statistics, stated before they are run\n", STATISTICS, "", per_task.shared_prompts(headline),
              "\n## Per task at 2048 tokens, both chunk sizes (p = 0.2)\n", PER_TASK_KEY, "",
              per_task.task_table(headline), "\n## Zero differences: dropped or kept\n",
              per_task.zero_handling(headline),
              "\n## RULER deviations\n", deviations_section(json.loads((HERE / "deviations.json").read_text())),
              "\n## Which of length and chunk size moves the KL ranking (p = 0.2)\n",
              compare.table([HERE / "runs" / name for name in COMPARED]),
              "\n## Ratio sweep\n", "![ratio sweep: accuracy and KL vs p](runs/ruler_1024_sweep/ratio_sweep.png)\n"]
    atomic_write(out / "results.md", "\n".join(lines))
    return out / "results.md"


def write_pages(out: Path = HERE) -> list[Path]:
    """Every committed run's page under ``out``/runs and the experiment's page under ``out``."""
    pages = [rewrite_run(HERE / "runs" / name, out / "runs" / name) for name in RUNS]
    return [*pages, experiment_page(out)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="output folders of evaluate.py (default: every run here)")
    parser.add_argument("--out", type=Path, default=HERE, help="where the experiment's pages go (default: here)")
    args = parser.parse_args(argv)
    for run in args.runs:
        rewrite_run(run, run)
    if not args.runs:
        write_pages(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
