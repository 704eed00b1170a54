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
from pathlib import Path
from typing import Any

from runkit.files import read_jsonl


class SettingsMismatch(ValueError):
    """An output folder holds records (or state) made with other settings."""


def settings_digest(settings: dict[str, Any]) -> str:
    """A short hex digest of JSON-able settings (key order does not matter; tuples and lists alike)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=list).encode()).hexdigest()[:16]


def load_records(path: str | Path, key: str = "key") -> list[dict[str, Any]]:
    """The records of a JSONL file, first copy of each ``key`` only ([] if there is none).

    A record written twice (two runs sharing a folder, a retried append) counts once; a
    line cut off by an interrupted write is skipped with one warning.
    """
    records, seen = [], set()
    for record in read_jsonl(path):
        if record.get(key) not in seen:
            seen.add(record.get(key))
            records.append(record)
    return records


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
        name = first_difference(settings, theirs) or "digest"
        raise SettingsMismatch(f"{where} holds records made with {name}={theirs.get(name)!r}, this run has "
                               f"{name}={settings.get(name)!r}; use another {flag} or the same settings")
