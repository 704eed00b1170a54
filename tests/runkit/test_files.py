"""The shared atomic-write and JSONL helpers (used by both halves)."""

import json
import os
import stat

import pytest

from runkit.files import append_jsonl, atomic_path, atomic_write, read_jsonl


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


def test_an_append_after_a_torn_last_line_starts_a_fresh_line_and_keeps_its_record(tmp_path, caplog):
    path = tmp_path / "records.jsonl"
    append_jsonl(path, {"key": "a"})
    with open(path, "a") as f:  # a process killed mid-append: no closing brace, no newline
        f.write('{"key": "b", "kl": 0.1')
    append_jsonl(path, {"key": "c"})
    assert path.read_text().splitlines()[-1] == '{"key": "c"}'
    with caplog.at_level("WARNING", logger="runkit.files"):
        assert read_jsonl(path) == [{"key": "a"}, {"key": "c"}]
    assert caplog.text.count("records.jsonl: skipped 1 unreadable line(s) (line 2") == 1


def test_read_jsonl_skips_blank_lines_and_invalid_bytes_and_reads_a_missing_file_as_empty(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_jsonl(path) == []
    path.write_bytes(b'{"step": 1}\n\n{"step": \xff\n[1, 2]\n{"step": 2}\n')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_files_get_the_mode_the_umask_gives(tmp_path, umask):
    """A table or store entry written atomically is as readable to others as one written in place."""
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "atomic.md", "x")
        (tmp_path / "in_place.md").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "atomic.md").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "in_place.md").stat().st_mode) == 0o666 & ~umask
