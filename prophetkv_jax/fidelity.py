"""How closely a reuse method reproduces full prefill, measured on full prefill's own answer.

A reuse method's job is to give the model the cache full prefill would have given it, so
task accuracy of a small model is a noisy yardstick. Here full prefill's greedy answer is
teacher-forced from each method's cache (one extra forward of those tokens) and the
next-token distributions are compared position by position: the mean KL(full || method)
and the share of positions where the two argmaxes agree. Only ``llama.forward`` and the
``Prefill`` an ``Engine`` returns are used.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from prophetkv_jax.model import llama
from prophetkv_jax.model.config import LlamaConfig
from prophetkv_jax.pipeline import Prefill

ANSWER_POSITIONS = 16  # the first 16 answer positions are compared


@dataclasses.dataclass(frozen=True)
class Fidelity:
    kl: float | None  # mean over positions of KL(full || method), in nats; None when ``error``
    top1_agreement: float | None  # share of positions whose argmax equals full prefill's; None when ``error``
    error: str | None = None  # why nothing could be measured (non-finite logits), else None


def answer_log_probs(
    params: llama.Params, config: LlamaConfig, prefill: Prefill, answer: list[int],
    positions: int = ANSWER_POSITIONS,
) -> np.ndarray:
    """[m, V] log-probabilities of the next token at the first m = min(len(answer), positions)
    answer positions (fewer if the cache has no room), with ``answer`` fed after the prompt
    (the cache itself is not changed).

    Position 0 is the prefill's last row; the other m - 1 come from one forward of the
    forced tokens, padded to ``positions - 1`` rows so every call shares one compile.
    """
    if not answer:
        raise ValueError("the reference answer is empty: nothing to teacher-force")
    room = prefill.cache.capacity - prefill.next_position  # slots left for forced tokens
    m = min(len(answer), positions, room + 1)
    forced = np.zeros(max(1, positions - 1), np.int32)
    forced[: m - 1] = answer[: m - 1]
    rows = np.arange(forced.size, dtype=np.int32)
    where = prefill.next_position + rows
    slots = np.where(rows < m - 1, where, -1).astype(np.int32)  # padding rows write nothing
    logits, _ = llama.forward(params, forced, where, prefill.cache, slots, config)
    stacked = np.concatenate([np.asarray(prefill.last_logits)[None], np.asarray(logits)[: m - 1]])
    return log_softmax(stacked)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (KL of near-equal distributions needs the precision).
    Non-finite logits give NaN rows, quietly: ``compare`` turns them into a failed record."""
    x = np.asarray(logits, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        x = x - x.max(axis=-1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def compare(reference: np.ndarray, method: np.ndarray) -> Fidelity:
    """KL(reference || method) averaged over positions, and argmax agreement, from log-probs.

    Non-finite log-probs on either side measure nothing: argmax of NaN rows agrees with
    itself, so they yield a Fidelity with ``error`` set and no numbers, never agreement.
    """
    if reference.shape != method.shape:
        raise ValueError(f"log-prob shapes differ: {reference.shape} vs {method.shape}")
    for side, log_probs in (("full prefill", reference), ("this method", method)):
        if not np.isfinite(log_probs).all():
            return Fidelity(kl=None, top1_agreement=None, error=f"non-finite logits from {side}")
    kl = np.sum(np.exp(reference) * (reference - method), axis=-1)
    agree = np.argmax(reference, axis=-1) == np.argmax(method, axis=-1)
    return Fidelity(kl=float(np.mean(kl)), top1_agreement=float(np.mean(agree)))


def oracle_overlap(selected: np.ndarray, oracle: np.ndarray) -> float:
    """|selected ∩ oracle| / k, the share of the oracle's top-k rows a method recomputed."""
    return len(np.intersect1d(selected, oracle)) / max(1, len(oracle))
