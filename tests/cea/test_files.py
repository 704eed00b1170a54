"""The shared atomic-write and JSONL helpers (used by both halves)."""

import json

import pytest

from cea_jax.files import append_jsonl, atomic_path, atomic_write


def test_atomic_write_text_and_bytes_create_folders(tmp_path):
    atomic_write(tmp_path / "a" / "b.txt", "héllo")
    atomic_write(tmp_path / "c.bin", b"\x00\x01")
    assert (tmp_path / "a" / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["b.txt", "c.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    atomic_write(target, "old", durable=True)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_append_jsonl_adds_one_line_per_row(tmp_path):
    path = tmp_path / "new" / "records.jsonl"
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2, "name": "x"}, durable=False)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"step": 1}, {"step": 2, "name": "x"}]
