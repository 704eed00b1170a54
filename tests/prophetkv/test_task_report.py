"""Per-task tables and tests: one Holm family per metric over every (task, baseline), zeros both ways."""

import math

import numpy as np
import pytest

from prophetkv_jax import paired, report, task_report


def _record(task, index, method, kl, top1, same):
    return {"task": task, "index": index, "method": method, "ratio": None if method == "full" else 0.2,
            "prediction": "x", "score": 0.0, "ttft_s": 1.0, "select_s": 0.0, "kl": kl, "top1_agreement": top1,
            "same_answer": same, "oracle_overlap": None}


def records():
    """Task "a": ProphetKV's KL is lower than every baseline's on all 8 samples; task "b": higher on all 8."""
    out = []
    for task, sign in (("a", -1), ("b", 1)):
        for i in range(8):
            base = 0.2 + 0.01 * i
            out += [_record(task, i, "full", 0.0, 1.0, True),
                    _record(task, i, "cacheblend", base, 0.8, False),
                    _record(task, i, "epic", base + 0.001, 0.8, False),
                    _record(task, i, "kvshare", base + 0.002, 0.8 if i else 0.7, False),
                    _record(task, i, "prophetkv", base + sign * (0.05 + 0.001 * i), 0.8, i < 2)]
    return out


def test_pratt_keeps_zero_differences_in_the_ranks():
    """15 zeros and 7 non-zero differences: by hand, the zeros take ranks 1-15, the others 16-22; the statistic
    is the sum of the positive ranks (21), with mean 133/2 and variance (16² + ... + 22²)/4 under the null."""
    diffs = np.array([0.0] * 15 + [-0.1, -0.2, -0.05, 0.3, -0.4, -0.15, -0.25])
    ranks = np.arange(16, 23)
    z = (21 - ranks.sum() / 2) / math.sqrt((ranks**2).sum() / 4)
    comparison = paired.Paired.of(diffs)
    assert comparison.pratt_p() == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-6)
    assert comparison.wilcoxon_p() == pytest.approx(paired.Paired.of(diffs[15:]).wilcoxon_p())
    assert paired.Paired.of(diffs[15:]).pratt_p() == paired.Paired.of(diffs[15:]).wilcoxon_p()  # no zeros: equal
    assert comparison.summary()["zero"] == 15


def test_per_task_tests_are_one_holm_family_per_metric_over_tasks_and_baselines():
    rows = task_report.task_paired(records())
    assert [(r["task"], r["method"]) for r in rows] == [(t, b) for t in "ab" for b in task_report.TESTED_AGAINST]
    for metric in ("kl", "top1_agreement", "same_answer"):
        stats = [r[metric] for r in rows]
        assert [s["p_holm"] for s in stats] == pytest.approx(paired.holm([s["p"] for s in stats])[0])
        assert [s["p_pratt_holm"] for s in stats] == pytest.approx(paired.holm([s["p_pratt"] for s in stats])[0])
    a_epic, b_epic = rows[1]["kl"], rows[4]["kl"]
    assert (a_epic["negative"], b_epic["positive"]) == (8, 8)
    assert a_epic["p"] == pytest.approx(2 / 2**8)  # exact: 8 of 8 one way
    assert a_epic["p_holm"] == pytest.approx(6 * 2 / 2**8)  # six tests tied at the smallest p
    assert rows[2]["top1_agreement"]["zero"] == 7  # kvshare differs on one sample only


def test_per_task_markdown_names_the_winner_and_the_verdict_per_task():
    summary = report.summarize(records())
    best = task_report.winners([r for r in summary["rows"] if r["method"] in task_report.CONTENDERS])
    assert best[("a", 0.2, "kl")] == "prophetkv" and best[("b", 0.2, "kl")] == "cacheblend"
    assert best[("a", 0.2, "top1_agreement")] == "cacheblend = epic = prophetkv"
    page = report.markdown(summary)  # mean over i of 0.05 + 0.001 i is 0.0535; EPIC sits 0.001 above CacheBlend
    assert "| a | epic@0.2 | 8 | -0.0545 | 0 / 8 / 0 | 0.047 | 0.047 | **ProphetKV** |" in page
    assert "| b | epic@0.2 | 8 | +0.0525 | 8 / 0 / 0 | 0.047 | 0.047 | **baseline** |" in page
