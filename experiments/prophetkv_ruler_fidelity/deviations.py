"""Where the headline RULER prompts differ from NVIDIA RULER's, measured on those very prompts (tokenizer only).

    python -m experiments.prophetkv_ruler_fidelity.deviations   # writes deviations.json here

Four differences, each counted on the 175 prompts of the 2048-token runs (seed 0, chat template on):
- segments are tokenised apart (prefix, context, query), so where BPE would merge across a segment
  boundary the prompt differs from tokenising it whole: how many prompts, and by how many tokens;
- vt's one-shot example is sized with the chat template's tokens counted in, so the example alone is
  shorter than RULER's 500 tokens: its length per sample;
- SmolLM2's chat template (its own system prompt) wraps every prompt: how many tokens that is;
- fwe fills the largest word count that fits, where RULER steps the count up by context/32 words and
  steps back once over: the tokens and words RULER's rule would have left out, per sample.
The page (the ``RULER deviations`` section of results.md) is written from deviations.json by the report.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).parent
OUT = HERE / "deviations.json"
RUN = HERE / "runs" / "ruler_2048_c128"  # both headline runs hold the same prompts


def _ruler_word_count(build: Callable[[int], Any], count: Callable[[str], int], budget: int, context: int) -> int:
    """RULER's fwe rule: from budget // 6 words up in steps of context // 32 until the prompt reaches the
    budget, then one step back."""
    step, n = max(context // 32, 1), budget // 6
    while count(build(n).prompt) < budget:
        n += step
    return n - step


def _fwe_builds(tokenizer: Any, count: Callable[[str], int], settings: dict[str, Any], samples: int) -> list:
    """(build, budget) of every fwe sample, caught from the generator's own sizing call."""
    from prophetkv_jax.tasks import ruler

    caught, original = [], ruler.largest_fitting

    def catching(build, count_tokens, budget, start):
        caught.append((build, budget))
        return original(build, count_tokens, budget, start)

    ruler.largest_fitting = catching
    try:
        ruler.generate("fwe", samples, settings["context"], count, seed=settings["seed"])
    finally:
        ruler.largest_fitting = original
    return caught


def measure() -> dict[str, Any]:
    from prophetkv_jax.evaluation import chat_overhead, sample_prompt
    from prophetkv_jax.model.checkpoint import load_checkpoint
    from prophetkv_jax.tasks import ruler
    from runkit.records import load_records

    _, _, tokenizer = load_checkpoint()
    records = load_records(RUN / "records.jsonl")
    settings = records[0]["settings"]
    if settings["template_version"] != ruler.TEMPLATE_VERSION:
        raise SystemExit(f"{RUN}: template_version {settings['template_version']}, the generator makes "
                         f"{ruler.TEMPLATE_VERSION}; these prompts cannot be rebuilt")
    tasks = sorted({r["task"] for r in records})
    samples = max(r["index"] for r in records) + 1
    overhead = chat_overhead(tokenizer, settings["chat"])
    count = lambda text: len(tokenizer.encode(text)) + overhead  # noqa: E731
    recorded = {(r["task"], r["index"]): r["prompt_tokens"] for r in records if r["method"] == "full"}
    split: dict[str, list[int | None]] = {}  # per prompt: None when tokenising it whole gives the same ids
    vt_example: list[int] = []
    for task in tasks:
        split[task] = []
        for sample in ruler.generate(task, samples, settings["context"], count, seed=settings["seed"]):
            prompt, _ = sample_prompt(tokenizer, sample, chunk_tokens=settings["chunk_tokens"], chat=settings["chat"],
                                      context_tokens=settings["context"])
            parts = np.concatenate([prompt.prefix, *prompt.chunks, prompt.query]).tolist()
            if len(parts) != recorded[(task, sample.index)]:
                raise SystemExit(f"{task}/{sample.index}: rebuilt prompt has {len(parts)} tokens, "
                                 f"the record {recorded[(task, sample.index)]}")
            whole = tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": sample.instruction
                                     + sample.context + sample.question}]) + sample.answer_prefix)
            split[task].append(None if whole == parts else len(whole) - len(parts))
            if task == "vt":
                head = ruler.VT_TEMPLATE.split("{context}")[0]  # the task's own instruction, after the example
                vt_example.append(len(tokenizer.encode(sample.instruction[: -len(head)])))
    fwe = []
    for build, budget in _fwe_builds(tokenizer, count, settings, samples):
        ours = ruler.largest_fitting(build, count, budget, start=64)
        theirs = build(_ruler_word_count(build, count, budget, settings["context"]))
        fwe.append({"tokens_ours": count(ours.prompt), "tokens_ruler": count(theirs.prompt), "budget": budget,
                    "words_ours": len(ours.context.split(" ")), "words_ruler": len(theirs.context.split(" "))})
    empty = tokenizer.apply_chat_template([{"role": "user", "content": ""}])
    return {"run": RUN.name, "settings": settings, "samples_per_task": samples,
            "segment_split": {t: {"prompts_changed": sum(d is not None for d in v), "prompts": len(v),
                                  "whole_minus_segments": [d for d in v if d is not None]} for t, v in split.items()},
            "vt_example_tokens": {"budget": ruler.VT_EXAMPLE_TOKENS, "chat_overhead": overhead,
                                  "min": min(vt_example), "max": max(vt_example),
                                  "mean": statistics.fmean(vt_example)},
            "chat": {"overhead_tokens": overhead, "empty_turn": empty},
            "fwe": fwe}


def main() -> None:
    from runkit.files import atomic_write

    result = measure()
    atomic_write(OUT, json.dumps(result, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
