"""Where the headline RULER prompts differ from NVIDIA RULER's, measured on those very prompts (tokenizer only).

    python -m experiments.prophetkv_ruler_fidelity.deviations   # writes deviations.json here

The headline prompts are the five NIAH tasks of the first 2048-token run and vt and fwe of its resized
twin (template 4); each is rebuilt with today's generator and must have its record's token count.
Measured, per prompt:
- segments are tokenised apart (prefix, context, query), so where BPE would merge across a segment
  boundary the prompt differs from tokenising it whole: how many prompts, and by how many tokens;
- vt's one-shot example, sized alone against RULER's 500 tokens less vt's 30-token answer budget: its length;
- SmolLM2's chat template (its own system prompt) wraps every prompt: how many tokens that is;
- vt and fwe are sized in RULER's steps with one step back: how far below the budget their prompts end.
deviations_template3.json holds the same measurement on the template-3 prompts, before vt and fwe were
resized (the generator that made them is in git history). The page (the ``RULER deviations`` section of
results.md) is written from both by the report.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from experiments.prophetkv_ruler_fidelity.resized import merged

HERE = Path(__file__).parent
OUT = HERE / "deviations.json"
RUN, RESIZED_RUN = HERE / "runs" / "ruler_2048_c128", HERE / "runs" / "ruler_2048_c128_resized"  # same prompts
STEPPED = ("vt", "fwe")  # sized in RULER's steps


def _spread(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "max": max(values), "mean": statistics.fmean(values)}


def measure() -> dict[str, Any]:
    from prophetkv_jax.evaluation import chat_overhead, sample_prompt
    from prophetkv_jax.model.checkpoint import load_checkpoint
    from prophetkv_jax.tasks import ruler

    _, _, tokenizer = load_checkpoint()
    records = merged(RUN, RESIZED_RUN)
    settings = {k: v for k, v in records[0]["settings"].items() if k != "template_version"}
    stale = {r["task"] for r in records
             if r["task"] in STEPPED and r["settings"]["template_version"] != ruler.TEMPLATE_VERSION}
    if stale:
        raise SystemExit(f"{RESIZED_RUN}: {', '.join(sorted(stale))} made with another template than the generator's "
                         f"{ruler.TEMPLATE_VERSION}; these prompts cannot be rebuilt")
    tasks = sorted({r["task"] for r in records})
    samples = max(r["index"] for r in records) + 1
    overhead = chat_overhead(tokenizer, settings["chat"])
    count = lambda text: len(tokenizer.encode(text)) + overhead  # noqa: E731
    recorded = {(r["task"], r["index"]): r["prompt_tokens"] for r in records if r["method"] == "full"}
    split: dict[str, list[int | None]] = {}  # per prompt: None when tokenising it whole gives the same ids
    vt_example: list[int] = []
    slack: dict[str, list[int]] = {task: [] for task in STEPPED}
    for task in tasks:
        split[task] = []
        for sample in ruler.generate(task, samples, settings["context"], count, seed=settings["seed"]):
            prompt, budget = sample_prompt(tokenizer, sample, chunk_tokens=settings["chunk_tokens"],
                                           chat=settings["chat"], context_tokens=settings["context"])
            parts = np.concatenate([prompt.prefix, *prompt.chunks, prompt.query]).tolist()
            if len(parts) != recorded[(task, sample.index)]:
                raise SystemExit(f"{task}/{sample.index}: rebuilt prompt has {len(parts)} tokens, "
                                 f"the record {recorded[(task, sample.index)]}")
            whole = tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": sample.instruction
                                     + sample.context + sample.question}]) + sample.answer_prefix)
            split[task].append(None if whole == parts else len(whole) - len(parts))
            if task in STEPPED:
                slack[task].append(settings["context"] - budget - count(sample.prompt))
            if task == "vt":
                head = ruler.VT_TEMPLATE.split("{context}")[0]  # the task's own instruction, after the example
                vt_example.append(len(tokenizer.encode(sample.instruction[: -len(head)])))
    empty = tokenizer.apply_chat_template([{"role": "user", "content": ""}])
    return {"runs": [RUN.name, RESIZED_RUN.name], "template_version": ruler.TEMPLATE_VERSION, "settings": settings,
            "samples_per_task": samples,
            "segment_split": {t: {"prompts_changed": sum(d is not None for d in v), "prompts": len(v),
                                  "whole_minus_segments": [d for d in v if d is not None]} for t, v in split.items()},
            "vt_example_tokens": {"budget": ruler.VT_EXAMPLE_TOKENS, "answer_budget": ruler.GENERATION_BUDGET["vt"],
                                  "chat_overhead": overhead, **_spread(vt_example)},
            "chat": {"overhead_tokens": overhead, "empty_turn": empty},
            "below_budget": {task: _spread(values) for task, values in slack.items()}}


def main() -> None:
    from runkit.files import atomic_write

    result = measure()
    atomic_write(OUT, json.dumps(result, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
