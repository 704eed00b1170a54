"""Records files edited by hand or by other code: a row that is not a record is skipped with a
warning naming the file and line (as a torn line is), and a settings mismatch names what differs."""

import json
import logging

import pytest

from runkit.records import SettingsMismatch, check_settings, load_records, settings_digest

SETTINGS = {"lr": 0.1, "seed": 0}


def write(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_rows_without_a_string_key_are_skipped_naming_file_and_line(tmp_path, caplog):
    path = tmp_path / "records.jsonl"
    write(path, [{"key": "a"}, {"score": 1.0}, {"key": 7}, {"key": "b"}])
    with caplog.at_level(logging.WARNING, logger="runkit"):
        assert [r["key"] for r in load_records(path)] == ["a", "b"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and str(path) in messages[0]
    assert "line 2: no 'key'" in messages[0] and "line 3: 'key' is not a string" in messages[0]


def test_rows_a_check_refuses_are_skipped_with_its_reason(tmp_path, caplog):
    path = tmp_path / "records.jsonl"
    write(path, [{"key": "a", "score": 1.0}, {"key": "b", "score": "high"}])

    def check(row):
        return None if isinstance(row["score"], float) else f"score {row['score']!r} is not a number"

    with caplog.at_level(logging.WARNING, logger="runkit"):
        assert [r["key"] for r in load_records(path, check=check)] == ["a"]
    assert f"{path}: skipped 1 record(s) (line 2: score 'high' is not a number)" in caplog.records[0].getMessage()


def test_a_row_whose_digest_alone_differs_is_named_by_line_and_digest(tmp_path):
    path = tmp_path / "records.jsonl"
    good = {"key": "a", "settings": SETTINGS, "settings_digest": settings_digest(SETTINGS)}
    write(path, [good, {**good, "key": "b", "settings_digest": "0123456789abcdef"}])
    with pytest.raises(SettingsMismatch) as err:
        check_settings(load_records(path), SETTINGS, path)
    message = str(err.value)
    assert "digest=None" not in message
    assert f"{path}, line 2" in message and "settings_digest '0123456789abcdef'" in message
    assert settings_digest(SETTINGS) in message


def test_a_changed_setting_is_still_named(tmp_path):
    path = tmp_path / "records.jsonl"
    theirs = {**SETTINGS, "lr": 0.2}
    write(path, [{"key": "a", "settings": theirs, "settings_digest": settings_digest(theirs)}])
    with pytest.raises(SettingsMismatch, match=r"made with lr=0.2, this run has lr=0.1"):
        check_settings(load_records(path), SETTINGS, path)
