"""Report aggregation: scores, retention and agreement with full prefill from hand-made records."""

import pytest

from prophetkv_jax import report


def _record(task, index, method, ratio, prediction, score):
    return {"task": task, "index": index, "method": method, "ratio": ratio, "prediction": prediction,
            "score": score, "ttft_s": 1.0, "select_s": 0.0}


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
    assert rows[("a", "prophetkv")]["agreement"] == pytest.approx(0.5)  # same answer on sample 0 only
    assert rows[("a", "prophetkv")]["score"] == pytest.approx(100.0)  # ... though it scores higher
    assert rows[("a", "naive")]["agreement"] == pytest.approx(0.5)
    assert rows[("a", "full")]["agreement"] == 1.0
    averages = {a["method"]: a for a in summary["averages"]}
    assert averages["prophetkv"]["agreement"] == pytest.approx(0.75)  # mean over tasks a (0.5) and b (1.0)
    assert averages["naive"]["agreement"] == pytest.approx(0.25)
    assert averages["prophetkv"]["retention"] == pytest.approx(75.0 / 50.0)  # full averages (50 + 50) / 2
    assert "| prophetkv@0.2 | 75.00 | 150.0% | 75.0% |" in report.markdown(summary)


def test_agreement_is_none_without_full_prefill_runs():
    summary = report.summarize([_record("a", 0, "naive", None, "q", 0.0)])
    assert summary["rows"][0]["agreement"] is None and summary["averages"][0]["agreement"] is None
    assert "| naive | 0.00 | - | - |" in report.markdown(summary)
