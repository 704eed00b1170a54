"""Records stamped with the settings that made them, so resumed runs never mix settings.

A run that resumes from the records (or checkpoints) already in its output folder must have
made them with the same settings; otherwise old numbers would be reported under new
settings. Every stamped record carries its settings and their digest; a run whose settings
differ is refused with the name of the first differing setting. One digest function serves
the whole repository, so a digest means the same thing wherever it is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from runkit.files import read_jsonl

log = logging.getLogger(__name__)


class SettingsMismatch(ValueError):
    """An output folder holds records (or state) made with other settings."""


def settings_digest(settings: dict[str, Any]) -> str:
    """A short hex digest of JSON-able settings (key order does not matter; tuples and lists alike)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=list).encode()).hexdigest()[:16]


def files_digest(paths: Iterable[Path]) -> str | None:
    """A short hex digest of files' names and bytes (None for no file): what a run read, not where
    it was, so a moved folder resumes and an edited file does not."""
    digest, any_file = hashlib.sha256(), False
    for path in paths:
        any_file = True
        digest.update(Path(path).name.encode() + b"\0")
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()[:16] if any_file else None


def load_records(path: str | Path, key: str = "key",
                 check: Callable[[dict[str, Any]], str | None] | None = None) -> list[dict[str, Any]]:
    """The records of a JSONL file, first copy of each ``key`` only ([] if there is none).

    A record written twice (two runs sharing a folder, a retried append) counts once; a
    line cut off by an interrupted write is skipped with one warning. So is a row that is
    not a record: no string ``key``, or one ``check`` describes a problem with (a string
    score, say), so a hand-edited line costs that line, never a traceback.
    """
    records, seen, skipped = [], set(), []
    for record in read_jsonl(path):
        problem = _key_problem(record, key) or (check(record) if check else None)
        if problem:
            skipped.append(f"line {record.line}: {problem}")
        elif record[key] not in seen:
            seen.add(record[key])
            records.append(record)
    if skipped:
        log.warning("%s: skipped %d record(s) (%s)", path, len(skipped),
                    "; ".join(skipped[:5]) + ("; ..." if len(skipped) > 5 else ""))
    return records


def _key_problem(record: dict[str, Any], key: str) -> str | None:
    if key not in record:
        return f"no {key!r}"
    return None if isinstance(record[key], str) else f"{key!r} is not a string"


def first_difference(ours: dict[str, Any], theirs: dict[str, Any]) -> str | None:
    """The first setting (sorted by name) whose value differs between two settings dicts."""
    return next((k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)), None)


def check_settings(records: list[dict[str, Any]], settings: dict[str, Any], where: str | Path,
                   flag: str = "--out") -> None:
    """Refuse (SettingsMismatch) when any record was made with settings other than ``settings``.

    ``flag`` names the command-line option that chose ``where``, so the message says what to change.
    """
    digest = settings_digest(settings)
    for record in records:
        if record.get("settings_digest") == digest:
            continue
        theirs = record.get("settings")
        if not isinstance(theirs, dict):
            raise SettingsMismatch(f"{where} holds records without a settings digest (an older run); "
                                   f"use another {flag} or remove it")
        name = first_difference(settings, theirs)
        if name is None:  # same settings, another digest: the line was edited or written by other code
            line = f", line {record.line}" if getattr(record, "line", 0) else ""
            raise SettingsMismatch(f"{where}{line}: record {record.get('key')!r} has settings_digest "
                                   f"{record.get('settings_digest')!r}, but its settings (this run's) give {digest}; "
                                   f"use another {flag} or remove that line")
        raise SettingsMismatch(f"{where} holds records made with {name}={theirs.get(name)!r}, this run has "
                               f"{name}={settings.get(name)!r}; use another {flag} or the same settings")
