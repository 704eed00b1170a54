"""The records file of an evaluation run: append-only JSON lines, each stamped with the run's settings.

A run resumes from the records already in its output folder; ``runkit.records`` checks that
they were made with the same settings and counts a record written twice once.

A run that measured nothing (non-finite logits) is still a record, with an ``error`` field
and None in place of its score and fidelity numbers: it is kept (a resumed run does not redo
it), left out of every mean and counted under the tables, so a broken run is never averaged
in as agreement.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runkit.files import append_jsonl


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
