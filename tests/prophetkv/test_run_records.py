"""prophetkv_jax.run_records: records written by a killed process cost only the torn line."""

from prophetkv_jax import run_records
from runkit.records import load_records


def test_records_survive_a_torn_line(tmp_path):
    path = tmp_path / "records.jsonl"
    run_records.append_record(path, {"key": "a"})
    path.write_bytes(path.read_bytes() + b'{"key": "b", "k')
    run_records.append_record(path, {"key": "c"})
    assert [r["key"] for r in load_records(path)] == ["a", "c"]
