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

from experiments.pages import between_marks
from experiments.prophetkv_ruler_fidelity import compare, per_task, resized
from experiments.prophetkv_ruler_fidelity.configs import COMPARED, HEADLINE, RESIZED, RUNS
from prophetkv_jax import report
from prophetkv_jax.evaluation import write_outputs
from prophetkv_jax.tasks import ruler
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


RESIZED_KEY = ("Each method's KL(full ‖ ·) on the resized prompt minus its KL on the template-3 twin (same seed: "
               "same chains and coded words, another haystack length), paired by prompt, 25 prompts per row, 95% "
               "bootstrap interval of the mean change.")


def _split_cell(found: dict) -> str:
    split = found["segment_split"]
    changed = {t: v for t, v in split.items() if v["prompts_changed"]}
    differences = lambda v: ", ".join(  # noqa: E731
        f"{d:+d} on {v['whole_minus_segments'].count(d)}" for d in sorted(set(v["whole_minus_segments"])))
    return ("tokenising the whole prompt gives other ids on "
            + "; ".join(f"{t}: {v['prompts_changed']} of {v['prompts']} (tokens whole − as segments: {differences(v)})"
                        for t, v in changed.items()) + f"; every other task: 0 of {found['samples_per_task']}")


def deviations_section(found: dict, before: dict) -> str:
    """How the headline prompts differ from NVIDIA RULER's, now (deviations.json) and with template 3
    (deviations_template3.json), both written by ``deviations.py``."""
    vt_then, vt_now, chat = before["vt_example_tokens"], found["vt_example_tokens"], found["chat"]
    fwe = before["fwe"]
    fewer = [f["tokens_ours"] - f["tokens_ruler"] for f in fwe]
    slack = [f["budget"] - f["tokens_ours"] for f in fwe]
    below = found["below_budget"]
    spread = lambda d: f"{d['min']}-{d['max']} (mean {d['mean']:.0f})"  # noqa: E731
    rows = [
        "| deviation | template 3 (first runs) | template 4 (headline now) | fixed? |", "|---|---|---|---|",
        f"| segments (prefix, context, query) are tokenised apart | {_split_cell(before)} | {_split_cell(found)} | no: "
        "chunk KVs are reused only if each segment's tokens do not depend on its neighbours |",
        f"| vt's one-shot example size | sized with the chat template's {vt_then['chat_overhead']} tokens counted in "
        f"against {vt_then['budget']}: the example alone {spread(vt_then)} tokens | sized alone, as RULER strips the "
        f"model template from it, against {vt_now['budget']} less vt's {vt_now['answer_budget']}-token answer budget "
        f"(RULER reserves it too) in RULER's steps of {ruler.VT_EXAMPLE_STEP} noise rows: {spread(vt_now)} tokens | "
        "yes |",
        f"| SmolLM2's own chat template and system prompt wrap every prompt | {before['chat']['overhead_tokens']} "
        f"tokens per prompt | {chat['overhead_tokens']} tokens per prompt, counted in the context length: "
        f"`{chat['empty_turn']!r}` | kept: the model is a chat model; RULER also applies a model template "
        "(`--no-chat` turns it off) |",
        f"| vt and fwe haystack size | the largest that fits: fwe ends {min(slack)}-{max(slack)} tokens below the "
        f"budget, where RULER's steps of context/32 words with one step back would have made it "
        f"{min(fewer)}-{max(fewer)} tokens shorter (mean {sum(fewer) / len(fewer):.1f}) | RULER's steps with one step "
        f"back (fwe: context/32 words from context/6; vt: {ruler.VT_STEP} noise rows): prompts end "
        + "; ".join(f"{task} {spread(d)}" for task, d in below.items()) + " tokens below the budget | yes |"]
    return (f"Measured on the headline prompts (NIAH from {found['runs'][0]}, vt and fwe from {found['runs'][1]}; "
            "the same prompts at both chunk sizes) by `python -m experiments.prophetkv_ruler_fidelity.deviations` "
            "(tokenizer only), written to deviations.json; the template-3 column is the same measurement made before "
            "the change (deviations_template3.json).\n\n" + "\n".join(rows))


def split_effect_section(found: dict) -> str:
    """What tokenising the segments apart does to full prefill itself (split_effect.json, ``split_effect.py``)."""
    lines = ["Full prefill on the segments as reused against full prefill on the same text tokenised whole "
             "(RULER's prompt), teacher-forced on the whole prompt's own greedy answer "
             "(`python -m experiments.prophetkv_ruler_fidelity.split_effect`, split_effect.json), on every headline "
             "prompt whose ids differ; beside it, the mean KL of ProphetKV and EPIC on the same prompts (128-token "
             "chunks):\n", "| task | prompts | KL(whole ‖ segments): mean / max | top-1 agreement | "
             "ProphetKV's KL | EPIC's KL |", "|---|---|---|---|---|---|"]
    for task, t in found["per_task"].items():
        lines.append(f"| {task} | {t['prompts']} | {t['mean_kl']:.4f} / {t['max_kl']:.4f} | "
                     f"{100 * t['mean_top1']:.1f}% | {t['mean_prophetkv_kl']:.3f} | {t['mean_epic_kl']:.3f} |")
    return "\n".join(lines)


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
    redone = [HERE / "runs" / name for name in RESIZED]
    lines += ["\n## Statistics, stated before they are run\n", STATISTICS, "", per_task.shared_prompts(headline),
              per_task.shared_prompts(redone),
              "\n## Per task at 2048 tokens, both chunk sizes (p = 0.2)\n", PER_TASK_KEY, "",
              "Template 4 (the headline): the five NIAH tasks from the first runs, vt and fwe from their resized "
              "runs, one Holm family of 21 per chunk size as before.\n",
              per_task.records_task_table(headline_records()),
              "\nTemplate 3 (the first runs, vt and fwe filled to the budget):\n",
              per_task.task_table(headline), "\n## Zero differences: dropped or kept\n",
              per_task.zero_handling(headline),
              "\n## RULER deviations\n", deviations_section(*(json.loads((HERE / f"{name}.json").read_text())
                                                              for name in ("deviations", "deviations_template3"))),
              "\n### What tokenising the segments apart does to the reference\n",
              split_effect_section(json.loads((HERE / "split_effect.json").read_text())),
              "\n### What resizing vt and fwe did to the KL\n", RESIZED_KEY, "",
              resized.effect_table([(HERE / "runs" / old, HERE / "runs" / new) for new, old in RESIZED.items()]),
              "\n## Which of length and chunk size moves the KL ranking (p = 0.2)\n",
              compare.table([HERE / "runs" / name for name in COMPARED]),
              "\n## Ratio sweep\n", "![ratio sweep: accuracy and KL vs p](runs/ruler_1024_sweep/ratio_sweep.png)\n"]
    atomic_write(out / "results.md", "\n".join(lines))
    return out / "results.md"


README = HERE.parents[1] / "README.md"
README_MARKS = ("<!-- ruler-headline: generated by python -m experiments.prophetkv_ruler_fidelity.report -->",
                "<!-- /ruler-headline -->")
HEADLINE_ORDER = ("full", "naive", "cacheblend", "epic", "kvshare", "prophetkv", "prophetkv_chunks")


def headline_records() -> list[list[dict]]:
    """The headline's records per chunk size (template 4): NIAH from the first runs, vt and fwe resized."""
    return [resized.merged(HERE / "runs" / old, HERE / "runs" / new) for new, old in RESIZED.items()]


def headline_table(runs: list[list[dict]]) -> str:
    """The README's pooled table: each method's task-averaged metrics in each of ``runs`` (one per chunk size)."""
    columns = [{(a["method"], a["ratio"]): a for a in report.summarize(records)["averages"]} for records in runs]
    chunks = " / ".join(str(records[0]["settings"]["chunk_tokens"]) for records in runs)
    lines = [f"| method (chunk {chunks}) | score | KL(full ‖ method) | top-1 agreement | same answer | "
             "oracle overlap |",
             "|---|---|---|---|---|---|"]
    for method, ratio in sorted(columns[0], key=lambda k: HEADLINE_ORDER.index(k[0])):
        rows = [column[(method, ratio)] for column in columns]
        both = lambda field, show: " / ".join("-" if r[field] is None else show(r[field]) for r in rows)  # noqa: E731
        lines.append(f"| {method}{'' if ratio is None else f'@{ratio:g}'} | {both('score', lambda v: f'{v:.1f}')} | "
                     f"{both('kl', lambda v: f'{v:.4f}')} | {both('top1_agreement', lambda v: f'{100 * v:.1f}%')} | "
                     f"{both('same_answer', lambda v: f'{100 * v:.1f}%')} | "
                     f"{both('oracle_overlap', lambda v: f'{100 * v:.1f}%')} |")
    return "\n".join(lines)


def with_headline(readme: str, runs: list[list[dict]]) -> str:
    """``readme`` with the text between its headline marks replaced by ``headline_table(runs)``."""
    return between_marks(readme, README_MARKS, headline_table(runs), README)


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
        atomic_write(README, with_headline(README.read_text(), headline_records()))
        print(f"{README}: RULER headline table rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
