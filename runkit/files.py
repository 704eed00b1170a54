"""Writing files so that no reader, and no crash, ever sees half of one.

One helper per concern for both halves of the repository (run configs, result tables,
images, the chunk-KV store, JSONL records).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    For writers that need a file name (PIL, safetensors). ``durable`` fsyncs the data first,
    so a power cut leaves the old file or the new one, never an empty one. Temporary names
    are ``.NAME.*.tmp`` (hidden, and recognisable to clean-ups).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _new_temporary(path: Path) -> Path:
    """Create an empty, uniquely named file beside ``path`` with the mode the umask gives.

    ``tempfile.mkstemp`` would create it 0600 whatever the umask, so every atomically
    written file (tables, configs, store entries) would be private to its writer, unlike a
    file written in place; ``os.open`` with 0o666 lets the umask decide, as ``open()`` does.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def atomic_write(path: str | os.PathLike, data: str | bytes, durable: bool = False) -> None:
    """Write text or bytes to ``path`` through a temporary file and a rename."""
    with atomic_path(path, durable) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")


def append_jsonl(path: str | os.PathLike, row: dict[str, Any], durable: bool = True) -> None:
    """Append one JSON line, starting on a fresh line; ``durable`` flushes it to disk first.

    A process killed mid-append leaves a torn last line without its newline; the next row
    then starts on a line of its own instead of being glued to (and lost with) the torn one.
    The row is written with one ``write`` call on an ``O_APPEND`` descriptor, so rows of
    concurrent writers never interleave.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        if os.write(fd, line) != len(line):
            raise OSError(f"{path}: short write (disk full?)")
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


class Row(dict):
    """A JSON object read from a JSONL file, with the line it came from (``line``), for messages."""

    line: int = 0


def read_jsonl(path: str | os.PathLike) -> list[Row]:
    """The JSON objects of a JSONL file, in order ([] if it does not exist), each knowing its line.

    Lines that are not a JSON object (a row torn by a killed process, stray bytes) are
    skipped and reported in one warning naming the file, so one bad line never costs the
    rows around it.
    """
    path = Path(path)
    if not path.exists():
        return []
    rows, bad = [], []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            row = None
        if isinstance(row, dict):
            rows.append(Row(row))
            rows[-1].line = number
        else:
            bad.append(number)
    if bad:
        log.warning("%s: skipped %d unreadable line(s) (line %s; a write cut off by a killed process?)",
                    path, len(bad), ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else ""))
    return rows
