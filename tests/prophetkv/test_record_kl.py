"""A record's KL is KL(full || method), the way round the spec asks: full prefill is the reference.

The two directions agree to second order when the distributions are close, so this uses a
tiny random model whose final norm is scaled up: its next-token distributions are peaked,
naive reuse moves them far, and KL(full || naive) differs from KL(naive || full) by far more
than the tolerance. The expected value is computed here from the two caches' log-probabilities.
"""

import jax
import numpy as np
import pytest
from test_llm_evaluation import CONFIG, ByteTokenizer, contains_reference, samples

from prophetkv_jax import evaluation, fidelity
from prophetkv_jax.model import llama
from prophetkv_jax.pipeline import Engine


def _kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    """Mean over positions of sum_v p(v) (log p(v) - log q(v))."""
    return float(np.mean([np.sum(np.exp(p) * (p - q)) for p, q in zip(p_log, q_log)]))


def test_record_kl_is_full_prefill_against_the_method_not_the_reverse(tmp_path):
    params = llama.init_params(CONFIG, jax.random.PRNGKey(3))
    params = {**params, "final_norm": jax.tree.map(lambda s: s * 40.0, params["final_norm"])}
    engine = Engine(params, CONFIG, max_new_tokens=4)
    tokenizer, sample = ByteTokenizer(), samples(1)[0]
    (full_record, naive_record) = evaluation.evaluate_samples(
        engine, tokenizer, [sample], [("full", None), ("naive", None)], contains_reference, tmp_path,
        chunk_tokens=16, show_progress=False)
    assert (full_record["method"], naive_record["method"]) == ("full", "naive")

    prompt, budget = evaluation.sample_prompt(tokenizer, sample, chunk_tokens=16)
    full, naive = engine.prefill(prompt, "full"), engine.prefill(prompt, "naive")
    answer = engine.generate(full, budget, tuple(tokenizer.eos_ids))
    full_log = fidelity.answer_log_probs(params, CONFIG, full, answer)
    naive_log = fidelity.answer_log_probs(params, CONFIG, naive, answer)
    forward, reverse = _kl(full_log, naive_log), _kl(naive_log, full_log)
    assert abs(forward - reverse) > 0.1 * forward  # the two directions differ here (0.18 vs 0.15)
    assert naive_record["kl"] == pytest.approx(forward, rel=1e-4)
    assert full_record["kl"] == pytest.approx(0.0, abs=1e-9)


def _peaked_engine(seed: int) -> Engine:
    params = llama.init_params(CONFIG, jax.random.PRNGKey(seed))
    params = {**params, "final_norm": jax.tree.map(lambda s: s * 40.0, params["final_norm"])}
    return Engine(params, CONFIG, max_new_tokens=4)


def test_record_kl_is_measured_on_full_prefills_answer_when_the_methods_own_answer_differs(tmp_path):
    """A method whose own greedy answer differs from full prefill's must still be scored on full's answer:
    teacher-forcing each method on its own answer would measure a different distribution pair."""
    tokenizer, sample = ByteTokenizer(), samples(1)[0]
    eos = tuple(tokenizer.eos_ids)
    def differ_where_fed(full_answer, naive_answer):  # teacher forcing feeds every answer token but the last
        return len(full_answer) > 1 and full_answer[:-1] != naive_answer[: len(full_answer) - 1]

    for seed in range(20):  # the first random model whose naive answer differs from full prefill's where it is fed
        engine = _peaked_engine(seed)
        prompt, budget = evaluation.sample_prompt(tokenizer, sample, chunk_tokens=16)
        full, naive = engine.prefill(prompt, "full"), engine.prefill(prompt, "naive")
        full_answer, naive_answer = engine.generate(full, budget, eos), engine.generate(naive, budget, eos)
        if differ_where_fed(full_answer, naive_answer):
            break
    assert differ_where_fed(full_answer, naive_answer), "no seed in 0..19 gives naive reuse an answer of its own"

    reference = fidelity.answer_log_probs(engine.params, CONFIG, full, full_answer)
    on_full = fidelity.compare(reference, fidelity.answer_log_probs(engine.params, CONFIG, naive, full_answer))
    on_own = fidelity.compare(fidelity.answer_log_probs(engine.params, CONFIG, full, naive_answer),
                              fidelity.answer_log_probs(engine.params, CONFIG, naive, naive_answer))
    own_method_side = fidelity.compare(  # full prefill on its answer, the method on its own
        reference, fidelity.answer_log_probs(engine.params, CONFIG, naive, naive_answer)[: len(reference)])
    for wrong in (on_own, own_method_side):  # both mistakes give another KL here
        assert abs(on_full.kl - wrong.kl) > 1e-3 * on_full.kl
    (_, naive_record) = evaluation.evaluate_samples(
        engine, tokenizer, [sample], [("full", None), ("naive", None)], contains_reference, tmp_path,
        chunk_tokens=16, show_progress=False)
    assert naive_record["same_answer"] is False
    assert naive_record["kl"] == pytest.approx(on_full.kl, rel=1e-5)
    assert naive_record["top1_agreement"] == on_full.top1_agreement
