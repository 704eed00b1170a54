"""The records file of an evaluation run: append-only JSON lines, each stamped with the run's settings.

A run resumes from the records already in its output folder; ``runkit.records`` checks that
they were made with the same settings and counts a record written twice once.

A run that measured nothing (non-finite logits) is still a record, with an ``error`` field
and None in place of its score and fidelity numbers: it is kept (a resumed run does not redo
it), left out of every mean and counted under the tables, so a broken run is never averaged
in as agreement.

A row that is not such a record (a hand edit, another program's line) is skipped on load
with a warning naming the file and line, like a torn line, instead of failing the run later.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runkit.files import append_jsonl
from runkit.records import load_records


def append_record(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, flushed to disk before returning (an interrupted run loses at most it)."""
    with naming_file(path):
        append_jsonl(path, record)


@contextlib.contextmanager
def naming_file(path: Path) -> Iterator[None]:
    """An OSError while writing ``path`` names it: a full disk's ENOSPC from write() names no file."""
    try:
        yield
    except OSError as err:
        named = OSError(f"{path}: cannot write it ({err.strerror or err}); the records already written are kept")
        named.errno = err.errno
        raise named from err


def check_writable(out_dir: Path) -> None:
    """Refuse (OSError naming --out) a folder that cannot take records, before any compute."""
    records = out_dir / "records.jsonl"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
        if records.exists():
            with open(records, "a", encoding="utf-8"):
                pass
    except OSError as err:
        where = records if records.exists() else out_dir
        raise OSError(f"--out {out_dir}: cannot write {where} ({err.strerror or err})") from err


FAILED_FIELDS = ("score", "kl", "top1_agreement", "same_answer", "oracle_overlap")


def mark_failed(record: dict[str, Any], error: str) -> dict[str, Any]:
    """The record with ``error`` set and nothing measured (see the module docstring)."""
    return {**record, **dict.fromkeys(FAILED_FIELDS), "error": error}


# Fields the summary reads, and what each must hold; a failed record has None where it measured nothing.
_TEXT = ("key", "task", "method")
_NUMBERS = ("score", "kl", "top1_agreement", "oracle_overlap", "ttft_s", "select_s")
_MAY_BE_NULL = ("kl", "top1_agreement", "oracle_overlap")


def load(path: Path) -> list[dict[str, Any]]:
    """The records of ``path`` (first copy of each key); rows that are not records are skipped with a warning."""
    return load_records(path, check=record_problem)


def record_problem(row: dict[str, Any]) -> str | None:
    """What makes ``row`` not a record of this module (None when it is one)."""
    for name in _TEXT:
        if name not in row:
            return f"no {name!r}"
        if not isinstance(row[name], str):
            return f"{name} {row[name]!r} is not a string"
    if isinstance(row.get("index"), bool) or not isinstance(row.get("index"), int):
        return f"index {row.get('index')!r} is not an integer"
    if row.get("ratio") is not None and not _number(row["ratio"]):
        return f"ratio {row['ratio']!r} is not a number"
    failed = bool(row.get("error"))
    for name in _NUMBERS:
        value = row.get(name)
        if not (_number(value) or (value is None and (failed or name in _MAY_BE_NULL))):
            return f"{name} {value!r} is not a number"
    if row.get("same_answer") not in (True, False, None):
        return f"same_answer {row['same_answer']!r} is not true, false or null"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
