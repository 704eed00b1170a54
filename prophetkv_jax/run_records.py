"""The records file of an evaluation run: append-only JSON lines, each stamped with the run's settings.

A run resumes from the records already in its output folder, so those records must have
been made with the same settings; otherwise old numbers would be reported under new
settings. Every record carries the settings and their digest; a run whose settings differ
is refused with the name of the first differing setting, and a record written twice
(e.g. by two runs sharing a folder) counts once.
"""

from __future__ import annotations

import hashlib
import json
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
    append_jsonl(path, record)


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
