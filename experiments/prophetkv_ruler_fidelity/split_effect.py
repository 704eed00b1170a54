"""What tokenising the segments apart costs the reference itself: full prefill on the prompt as chunk reuse
tokenises it (prefix, context, query apart) against full prefill on the same text tokenised whole, as RULER
would feed it.

Chunk KVs can only be reused if a chunk's tokens do not depend on its neighbours, so the segments are
tokenised apart, and where BPE would merge across a boundary the ids differ (deviations.json counts
where). This measures how much that moves the model's answer distribution, in the unit the methods are
judged in: KL(whole ‖ segments) over the whole-tokenised prompt's own first 16 greedy answer tokens,
teacher-forced on both, and top-1 agreement; only prompts whose ids differ are run. A method's KL on the
same prompts is the scale to read it against.

    python -m experiments.prophetkv_ruler_fidelity.split_effect   # writes split_effect.json here (~20 min)

Writes once at the end (atomically); the settings digest of the headline prompts is kept in the file.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from experiments.prophetkv_ruler_fidelity.deviations import RESIZED_RUN, RUN
from experiments.prophetkv_ruler_fidelity.resized import merged

HERE = Path(__file__).parent
OUT = HERE / "split_effect.json"


def main() -> None:
    from tqdm import tqdm

    from prophetkv_jax import fidelity
    from prophetkv_jax.evaluation import chat_overhead, sample_prompt
    from prophetkv_jax.layout import RagPrompt
    from prophetkv_jax.model.checkpoint import load_checkpoint
    from prophetkv_jax.pipeline import Engine
    from prophetkv_jax.tasks import ruler
    from runkit.files import atomic_write
    from runkit.records import settings_digest

    params, config, tokenizer = load_checkpoint()
    records = merged(RUN, RESIZED_RUN)
    settings = records[0]["settings"]
    overhead = chat_overhead(tokenizer, settings["chat"])
    count = lambda text: len(tokenizer.encode(text)) + overhead  # noqa: E731
    method_kl = {(r["task"], r["index"], r["method"]): r["kl"] for r in records}
    engine = Engine(params, config, max_new_tokens=fidelity.ANSWER_POSITIONS)
    rows = []
    tasks = sorted({r["task"] for r in records})
    per_task = max(r["index"] for r in records) + 1
    samples = [s for task in tasks for s in ruler.generate(task, per_task, settings["context"], count,
                                                             seed=settings["seed"])]
    for sample in tqdm(samples, desc="whole vs segments", unit="prompt"):
        prompt, _ = sample_prompt(tokenizer, sample, chunk_tokens=settings["chunk_tokens"], chat=settings["chat"],
                                  context_tokens=settings["context"])
        parts = np.concatenate([prompt.prefix, *prompt.chunks, prompt.query])
        whole = np.asarray(tokenizer.encode(tokenizer.apply_chat_template(
            [{"role": "user", "content": sample.instruction + sample.context + sample.question}])
            + sample.answer_prefix), dtype=parts.dtype)
        if np.array_equal(whole, parts):
            continue
        reference = engine.prefill(RagPrompt(whole[:0], (), whole), "full")
        answer = engine.generate(reference, fidelity.ANSWER_POSITIONS, tuple(tokenizer.eos_ids))
        expected = fidelity.answer_log_probs(engine.params, engine.config, reference, answer)
        engine.release(reference)
        split = engine.prefill(RagPrompt(parts[:0], (), parts), "full")
        found = fidelity.compare(expected, fidelity.answer_log_probs(engine.params, engine.config, split, answer))
        engine.release(split)
        rows.append({"task": sample.task, "index": sample.index, "tokens_whole_minus_segments": len(whole) - len(parts),
                     "kl": found.kl, "top1_agreement": found.top1_agreement,
                     "prophetkv_kl": method_kl[(sample.task, sample.index, "prophetkv")],
                     "epic_kl": method_kl[(sample.task, sample.index, "epic")]})
    summary = {task: {"prompts": len(r), "mean_kl": statistics.fmean(x["kl"] for x in r),
                      "max_kl": max(x["kl"] for x in r),
                      "mean_top1": statistics.fmean(x["top1_agreement"] for x in r),
                      "mean_prophetkv_kl": statistics.fmean(x["prophetkv_kl"] for x in r),
                      "mean_epic_kl": statistics.fmean(x["epic_kl"] for x in r)}
               for task in tasks if (r := [x for x in rows if x["task"] == task])}
    settings = {k: v for k, v in settings.items() if k != "template_version"}
    atomic_write(OUT, json.dumps({"runs": [RUN.name, RESIZED_RUN.name], "settings": settings,
                                  "settings_digest": settings_digest(settings), "per_task": summary, "rows": rows},
                                 indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
