"""vt and fwe sized as RULER sizes them (template 4) against the first headline runs (template 3).

Template 4 changed only how vt and fwe are sized, so only those two tasks were run again, on the same
seeds (same needles, chains and coded words; other haystack lengths). The headline per-task view with
template 4 takes the five NIAH tasks from the first runs (their prompts are unchanged: the same token
counts are checked record by record) and vt and fwe from the resized runs, in one Holm family of 21
as before. The effect of the change is measured prompt by prompt: each method's KL on the resized
prompt minus its KL on the template-3 twin, with a bootstrap interval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prophetkv_jax.paired import Paired
from runkit.records import load_records

METHODS = ("naive", "cacheblend", "epic", "kvshare", "prophetkv", "prophetkv_chunks")


def merged(original: Path, resized: Path) -> list[dict]:
    """The original run's records with the resized tasks' records swapped for the resized run's."""
    redone = load_records(resized / "records.jsonl")
    tasks = {r["task"] for r in redone}
    kept = [r for r in load_records(original / "records.jsonl") if r["task"] not in tasks]
    return kept + redone


def effect_table(pairs: list[tuple[Path, Path]], rounds: int = 4000, seed: int = 0) -> str:
    """Per (task, chunk, method): mean KL on the template-3 and template-4 prompts, the paired change
    (template 4 − 3) with its 95% bootstrap interval, and the mean prompt length of each."""
    lines = ["| task | chunk | method | prompt tokens (3 → 4) | mean KL, template 3 | template 4 | change [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    for original, resized in pairs:
        redone = load_records(resized / "records.jsonl")
        before = {(r["task"], r["index"], r["method"]): r for r in load_records(original / "records.jsonl")}
        chunk = redone[0]["settings"]["chunk_tokens"]
        for task in sorted({r["task"] for r in redone}):
            for method in METHODS:
                after = {r["index"]: r for r in redone if r["task"] == task and r["method"] == method}
                if not after:
                    continue
                common = sorted(i for i in after if (task, i, method) in before)
                old = np.array([before[(task, i, method)]["kl"] for i in common])
                new = np.array([after[i]["kl"] for i in common])
                change = Paired.of(new - old, rounds, seed).summary()
                tokens = (np.mean([before[(task, i, method)]["prompt_tokens"] for i in common]),
                          np.mean([after[i]["prompt_tokens"] for i in common]))
                interval = f"[{change['low']:+.3f}, {change['high']:+.3f}]"
                lines.append(f"| {task} | {chunk} | {method} | {tokens[0]:.0f} → {tokens[1]:.0f} | {old.mean():.3f} | "
                             f"{new.mean():.3f} | {change['mean']:+.3f} {interval} |")
    return "\n".join(lines)
