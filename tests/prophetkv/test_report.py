"""Report aggregation: scores, retention and agreement with full prefill from hand-made records."""

import numpy as np
import pytest

from prophetkv_jax import paired, report, run_records

FULL_ANSWERS = {("a", 0): "x", ("a", 1): "y", ("b", 0): "w"}


def _record(task, index, method, ratio, prediction, score, kl=None, top1=None, overlap=None):
    return {"task": task, "index": index, "method": method, "ratio": ratio, "prediction": prediction,
            "score": score, "ttft_s": 1.0, "select_s": 0.0, "kl": kl, "top1_agreement": top1,
            "same_answer": prediction.strip() == FULL_ANSWERS.get((task, index)), "oracle_overlap": overlap}


def test_agreement_counts_identical_answers_to_full_prefill_per_sample():
    records = [
        _record("a", 0, "full", None, " x ", 100.0), _record("a", 1, "full", None, "y", 0.0),
        _record("a", 0, "prophetkv", 0.2, "x", 100.0), _record("a", 1, "prophetkv", 0.2, "z", 100.0),
        _record("a", 0, "naive", None, "q", 0.0), _record("a", 1, "naive", None, "y", 0.0),
        _record("b", 0, "full", None, "w", 50.0), _record("b", 0, "prophetkv", 0.2, "w", 50.0),
        _record("b", 0, "naive", None, "v", 0.0),
    ]
    summary = report.summarize(records)
    rows = {(r["task"], r["method"]): r for r in summary["rows"]}
    assert rows[("a", "prophetkv")]["same_answer"] == pytest.approx(0.5)  # same answer on sample 0 only
    assert rows[("a", "prophetkv")]["score"] == pytest.approx(100.0)  # ... though it scores higher
    assert rows[("a", "naive")]["same_answer"] == pytest.approx(0.5)
    assert rows[("a", "full")]["same_answer"] == 1.0
    averages = {a["method"]: a for a in summary["averages"]}
    assert averages["prophetkv"]["same_answer"] == pytest.approx(0.75)  # mean over tasks a (0.5) and b (1.0)
    assert averages["naive"]["same_answer"] == pytest.approx(0.25)
    assert averages["prophetkv"]["retention"] == pytest.approx(75.0 / 50.0)  # full averages (50 + 50) / 2
    assert "| prophetkv@0.2 | 75.00 | 150.0% | - | - | 75.0% | - |" in report.markdown(summary)


def test_fidelity_columns_average_per_task_then_over_tasks():
    records = [
        _record("a", 0, "full", None, "x", 100.0, kl=0.0, top1=1.0),
        _record("a", 0, "prophetkv", 0.2, "x", 100.0, kl=0.1, top1=1.0, overlap=0.5),
        _record("a", 1, "prophetkv", 0.2, "z", 0.0, kl=0.3, top1=0.5, overlap=0.7),
        _record("b", 0, "full", None, "w", 100.0, kl=0.0, top1=1.0),
        _record("b", 0, "prophetkv", 0.2, "v", 0.0, kl=1.0, top1=0.25, overlap=0.2),
    ]
    averages = {a["method"]: a for a in report.summarize(records)["averages"]}
    prophet = averages["prophetkv"]
    assert prophet["kl"] == pytest.approx((0.2 + 1.0) / 2)  # task a: (0.1 + 0.3) / 2
    assert prophet["top1_agreement"] == pytest.approx((0.75 + 0.25) / 2)
    assert prophet["oracle_overlap"] == pytest.approx((0.6 + 0.2) / 2)
    assert averages["full"]["oracle_overlap"] is None
    table = report.markdown(report.summarize(records))
    assert "| prophetkv@0.2 | 25.00 | 25.0% | 0.6000 | 50.0% | 25.0% | 40.0% |" in table


def test_columns_are_dashes_without_full_prefill_runs():
    summary = report.summarize([_record("a", 0, "naive", None, "q", 0.0)])
    assert summary["rows"][0]["retention"] is None and summary["averages"][0]["kl"] is None
    assert "| naive | 0.00 | - | - | - | 0.0% | - |" in report.markdown(summary)


def test_failed_records_are_left_out_of_every_number_and_counted():
    """A record that measured nothing (run_records.mark_failed) neither crashes the means nor moves them."""
    ok = [_record("a", i, m, r, "x", s, kl=k, top1=1.0)
          for i in range(2) for m, r, s, k in [("full", None, 100.0, 0.0), ("prophetkv", 0.2, 50.0, 0.1 * (i + 1)),
                                               ("cacheblend", 0.2, 0.0, 0.5)]]
    failed = run_records.mark_failed(_record("a", 2, "prophetkv", 0.2, "x", 100.0, kl=9.0), "non-finite logits")
    summary = report.summarize([*ok, failed])
    assert summary == {**report.summarize(ok), "failed": [{"task": "a", "method": "prophetkv", "ratio": 0.2,
                                                           "error": "non-finite logits", "records": 1}]}
    assert {p["method"]: p["pairs"] for p in summary["paired"]} == {"cacheblend": 2}
    table = report.markdown(summary)
    assert "**1 of 7 records failed**" in table and "| a | prophetkv@0.2 | 1 | non-finite logits |" in table
    assert "failed" not in report.markdown(report.summarize(ok))


def test_paired_differences_pair_by_sample_and_bracket_the_mean():
    records = []
    for index, (ours, theirs) in enumerate([(0.1, 0.3), (0.2, 0.3), (0.4, 0.5), (0.1, 0.6)]):
        records.append(_record("a", index, "prophetkv", 0.2, "x", 100.0, kl=ours, top1=1.0))
        records.append(_record("a", index, "cacheblend", 0.2, "x", 0.0, kl=theirs, top1=0.5))
    records.append(_record("a", 9, "cacheblend", 0.2, "x", 0.0, kl=9.0, top1=0.0))  # unpaired: left out
    (row,) = report.summarize(records)["paired"]
    assert row["method"] == "cacheblend" and row["pairs"] == 4
    assert row["kl"]["mean"] == pytest.approx(-0.225)  # (-0.2 - 0.1 - 0.1 - 0.5) / 4
    assert row["kl"]["low"] <= -0.225 <= row["kl"]["high"] and row["kl"]["high"] < 0
    assert row["score"]["mean"] == pytest.approx(100.0) and row["top1_agreement"]["mean"] == pytest.approx(0.5)
    assert (row["kl"]["positive"], row["kl"]["negative"]) == (0, 4)
    table = report.markdown(report.summarize(records))
    assert "| prophetkv@0.2 − cacheblend@0.2 | 4 | -0.2250 [" in table
    assert "| prophetkv@0.2 − cacheblend@0.2 | 4 | +100.0 [+100.0, +100.0] |" in table


def test_holm_adjusts_the_sorted_p_values_step_down():
    """Holm (1979): the i-th smallest of m p-values is multiplied by m - i + 1, made monotone, capped at 1."""
    adjusted, levels = paired.holm([0.01, 0.04, 0.03, 0.005])
    # 4 x 0.005, 3 x 0.01, max(2 x 0.03, 0.03), 1 x 0.04 -> 0.06
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert levels == pytest.approx([0.05 / 3, 0.05 / 1, 0.05 / 2, 0.05 / 4])
    assert paired.holm([0.5, 0.9])[0] == pytest.approx([1.0, 1.0])


def test_wilcoxon_is_the_exact_signed_rank_test_and_ignores_ties():
    """Six positive differences out of six: the exact two-sided p is 2 / 2^6; zeros are dropped."""
    comparison = paired.Paired.of(np.array([0.3, 0.1, 0.2, 0.6, 0.5, 0.4, 0.0, 0.0]))
    assert comparison.wilcoxon_p() == pytest.approx(2 / 2**6)
    assert paired.Paired.of(np.zeros(5)).wilcoxon_p() == 1.0
    noise = paired.Paired.of(np.array([-1e-11, -2e-12, -3e-11, -1e-12, -5e-12, -4e-11, -6e-11]))  # p = 1 vs p = 1
    assert noise.wilcoxon_p() == 1.0 and noise.summary()["negative"] == 0
    stats = comparison.summary()
    assert (stats["positive"], stats["negative"]) == (6, 0) and stats["mean"] == pytest.approx(2.1 / 8)


def test_holm_family_is_every_comparison_of_a_metric_and_widens_the_intervals():
    """A heavy tail: ProphetKV is closer on 11 of 12 prompts, far worse on one. Against CacheBlend the
    mean straddles 0 but the signed-rank test does not; Holm counts the chunk-only form's five
    comparisons and the spec form's four as one family of nine per metric."""
    records = []
    for index in range(12):
        tail = index == 0
        records += [_record("a", index, "naive", None, "x", 0.0, kl=1.0, top1=0.5),
                    _record("a", index, "cacheblend", 0.2, "x", 0.0, kl=0.2, top1=0.8),
                    _record("a", index, "epic", 0.2, "x", 0.0, kl=0.2 + 0.01 * index, top1=0.8),
                    _record("a", index, "kvshare", 0.2, "x", 0.0, kl=0.3, top1=0.8),
                    _record("a", index, "prophetkv", 0.2, "x", 0.0, kl=2.0 if tail else 0.1, top1=0.9),
                    _record("a", index, "prophetkv_chunks", 0.2, "x", 0.0, kl=0.15, top1=0.9)]
    rows = {(r["ours"], r["method"]): r for r in report.summarize(records)["paired"]}
    assert len(rows) == 9 and ("prophetkv_chunks", "prophetkv") in rows
    versus = rows[("prophetkv", "cacheblend")]["kl"]
    assert versus["low"] < 0 < versus["high"] and versus["p"] < 0.05  # 11 tied ranks: normal approximation
    family = [row["kl"]["p"] for row in rows.values()]
    assert versus["p_holm"] == pytest.approx(paired.holm(family)[0][list(rows).index(("prophetkv", "cacheblend"))])
    assert versus["holm_low"] <= versus["low"] and versus["holm_high"] > versus["high"]
    table = report.markdown(report.summarize(records))
    assert "| prophetkv_chunks@0.2 − prophetkv@0.2 | 12 |" in table
