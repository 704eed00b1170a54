"""prophetkv_jax.run_records: records written by a killed process cost only the torn line, and a
hand-edited row that is not a record costs only that row."""

import json
import logging

import pytest

from prophetkv_jax import run_records
from runkit.records import load_records


def test_records_survive_a_torn_line(tmp_path):
    path = tmp_path / "records.jsonl"
    run_records.append_record(path, {"key": "a"})
    path.write_bytes(path.read_bytes() + b'{"key": "b", "k')
    run_records.append_record(path, {"key": "c"})
    assert [r["key"] for r in load_records(path)] == ["a", "c"]


def good(key: str, **more) -> dict:
    return {"key": key, "task": "vt", "index": 0, "method": "full", "ratio": None, "score": 1.0, "kl": 0.0,
            "top1_agreement": 1.0, "same_answer": True, "oracle_overlap": None, "ttft_s": 0.1, "select_s": 0.0,
            **more}


@pytest.mark.parametrize(("row", "problem"), [
    ({k: v for k, v in good("x").items() if k != "key"}, "no 'key'"),
    (good("x", score="0.9"), "score '0.9' is not a number"),
    (good("x", score=None), "score None is not a number"),
    (good("x", index="0"), "index '0' is not an integer"),
    (good("x", ratio="0.2"), "ratio '0.2' is not a number"),
    (good("x", same_answer="yes"), "same_answer 'yes' is not true, false or null"),
    (good("x", ttft_s=None), "ttft_s None is not a number"),
    ({"key": "x", "score": 1.0}, "no 'task'"),
])
def test_rows_that_are_not_records_are_skipped_naming_file_and_line(tmp_path, caplog, row, problem):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(good("a")) + "\n" + json.dumps(row) + "\n")
    with caplog.at_level(logging.WARNING):
        assert [r["key"] for r in run_records.load(path)] == ["a"]
    assert f"{path}: skipped 1 record(s) (line 2: {problem})" in caplog.text


def test_a_failed_record_may_hold_nulls(tmp_path):
    path = tmp_path / "records.jsonl"
    run_records.append_record(path, run_records.mark_failed(good("a"), "non-finite logits"))
    assert [r["key"] for r in run_records.load(path)] == ["a"]
