"""The records file of an evaluation run: append-only JSON lines, each stamped with the run's settings.

A run resumes from the records already in its output folder, so those records must have
been made with the same settings; otherwise old numbers would be reported under new
settings. Every record carries the settings and their digest; a run whose settings differ
is refused with the name of the first differing setting, and a record written twice
(e.g. by two runs sharing a folder) counts once.

A run that measured nothing (non-finite logits) is still a record, with an ``error`` field
and None in place of its score and fidelity numbers: it is kept (a resumed run does not redo
it), left out of every mean and counted under the tables, so a broken run is never averaged
in as agreement.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cea_jax.files import append_jsonl, read_jsonl


class SettingsMismatch(ValueError):
    """The output folder holds records made with other settings."""


def settings_digest(settings: dict[str, Any]) -> str:
    """A short hex digest of the settings (key order does not matter)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def load_records(path: Path) -> list[dict[str, Any]]:
    """Records written so far, first copy of each key only; a line cut off by an interrupted
    write is skipped (with one warning)."""
    records, seen = [], set()
    for record in read_jsonl(path):
        if record.get("key") not in seen:
            seen.add(record.get("key"))
            records.append(record)
    return records


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


def check_settings(records: list[dict[str, Any]], settings: dict[str, Any], where: Path) -> None:
    """Refuse (SettingsMismatch) when any record was made with settings other than ``settings``."""
    digest = settings_digest(settings)
    for record in records:
        if record.get("settings_digest") == digest:
            continue
        theirs = record.get("settings")
        if not isinstance(theirs, dict):
            raise SettingsMismatch(f"{where} holds records without a settings digest (an older run); "
                                   f"use another --out or remove it")
        name = next((k for k in sorted(set(settings) | set(theirs)) if settings.get(k) != theirs.get(k)), "digest")
        raise SettingsMismatch(f"{where} holds records made with {name}={theirs.get(name)!r}, this run has "
                               f"{name}={settings.get(name)!r}; use another --out or the same settings")
