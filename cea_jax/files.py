"""Writing files so that no reader, and no crash, ever sees half of one.

One helper per concern for both halves of the repository (run configs, result tables,
images, the chunk-KV store, JSONL records). It lives in ``cea_jax`` beside ``cli.py``
because the design card fixes the top-level packages to the two halves.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    For writers that need a file name (PIL, safetensors). ``durable`` fsyncs the data first,
    so a power cut leaves the old file or the new one, never an empty one. Temporary names
    are ``.NAME.*.tmp`` (hidden, and recognisable to clean-ups).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: str | bytes, durable: bool = False) -> None:
    """Write text or bytes to ``path`` through a temporary file and a rename."""
    with atomic_path(path, durable) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")


def append_jsonl(path: str | os.PathLike, row: dict[str, Any], durable: bool = True) -> None:
    """Append one JSON line; ``durable`` flushes it to disk first (an interrupted run loses at most it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        if durable:
            f.flush()
            os.fsync(f.fileno())
