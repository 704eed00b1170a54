"""The chunk store's disk tier: safetensors files that several processes may share.

Files are written atomically (temp file, fsync, rename) with a checksum of their tensor
bytes, verified on every read: a corrupted or truncated file is reported once, deleted and
treated as a miss. Total size is capped with LRU eviction (a read refreshes the file's
mtime). Keys are the project's own SHA-256 hex digests, checked before any path is built;
eviction and clean-up only ever look at real files in real folders under the root, never
through a symbolic link.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from prophetkv_jax.segment_kv import STORE_DTYPES, SegmentKV
from runkit.files import atomic_write

log = logging.getLogger(__name__)

FORMAT = "prophetkv-chunk-v2"  # v2: keys as the layer computed them (v1 un-rotated them), rows padded
KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
_FOLDER = re.compile(r"[0-9a-f]{2}")
_FILE = re.compile(r"[0-9a-f]{64}\.safetensors")
_TEMPORARY = re.compile(r"\.[0-9a-f]{64}\.safetensors\..*\.tmp")


class CorruptEntry(Exception):
    """A store file that exists but cannot be trusted."""


class DiskTier:
    """Entries as files under ``root``/<first two hex digits>/<key>.safetensors, capped at ``max_bytes``.

    Raises OSError at construction when ``root`` cannot be written, and from :meth:`write`
    when a write fails; the store then keeps working from memory.
    """

    def __init__(self, root: str | os.PathLike, max_bytes: int, dtype: str | None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.dtype = dtype
        self._reported: set[str] = set()
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.root):
            pass  # the folder is writable

    def path_for(self, key: str) -> Path:
        """The entry's file; ValueError for a key that would leave the root."""
        root = self.root.resolve()
        path = (root / key[:2] / f"{key}.safetensors").resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"chunk store key {key!r} resolves outside the store root {root}")
        return path

    def holds(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def remove(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def total_bytes(self) -> int:
        return sum(info.st_size for _, info in _real_files(self.root, _FILE))

    def read(self, key: str) -> SegmentKV | None:
        """The entry, or None when there is no file or it cannot be trusted (then it is deleted)."""
        path = self.path_for(key)
        try:
            entry = self._read(path, key)
        except FileNotFoundError:
            return None
        except CorruptEntry as err:
            if key not in self._reported:
                log.warning("chunk store: discarding corrupt entry %s (%s); it will be recomputed", path, err)
                self._reported.add(key)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # LRU recency on disk
        except FileNotFoundError:
            pass
        return entry

    def write(self, key: str, entry: SegmentKV) -> None:
        k, v = _to_bytes_view(entry.k), _to_bytes_view(entry.v)
        metadata = {"format": FORMAT, "key": key, "dtype": entry.dtype, "tokens": str(entry.length),
                    "checksum": _checksum(k, v)}
        payload = save({"k": k, "v": v}, metadata=metadata)
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, payload, durable=True)
        self._evict()

    def _read(self, path: Path, key: str) -> SegmentKV:
        try:
            with safe_open(str(path), framework="numpy") as f:
                metadata = f.metadata() or {}
                k, v = f.get_tensor("k"), f.get_tensor("v")
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise CorruptEntry(f"unreadable: {err}") from err
        if metadata.get("format") != FORMAT or metadata.get("key") != key:
            raise CorruptEntry(f"header does not describe this entry (format {metadata.get('format')!r})")
        dtype = metadata.get("dtype")
        if dtype not in STORE_DTYPES or (self.dtype is not None and dtype != self.dtype):
            raise CorruptEntry(f"stored as {dtype}, store expects {self.dtype or 'one of ' + str(STORE_DTYPES)}")
        if metadata.get("checksum") != _checksum(k, v):
            raise CorruptEntry("checksum mismatch")
        tokens = metadata.get("tokens", "")
        if not tokens.isdigit() or int(tokens) > k.shape[1]:
            raise CorruptEntry(f"token count {tokens!r} does not fit {k.shape[1]} rows")
        return SegmentKV(_from_bytes_view(k, dtype), _from_bytes_view(v, dtype), int(tokens))

    def _evict(self) -> None:
        """Delete least-recently-used files until the store fits its cap (one process at a time)."""
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _remove_stale_temporaries(self.root)
            entries = sorted(((path, info.st_size, info.st_mtime) for path, info in _real_files(self.root, _FILE)),
                             key=lambda e: e[2])
            total = sum(size for _, size, _ in entries)
            for path, size, _ in entries[:-1]:  # never evict the entry just written
                if total <= self.max_bytes:
                    break
                path.unlink(missing_ok=True)
                total -= size


def _to_bytes_view(array: Any) -> np.ndarray:
    """Host array in its own dtype; bf16 as its raw 16 bits (safetensors' NumPy API has no bf16)."""
    array = np.ascontiguousarray(np.asarray(array))
    return array.view(np.uint16) if array.dtype.name == "bfloat16" else array


def _from_bytes_view(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        import ml_dtypes

        return array.view(ml_dtypes.bfloat16)
    return array


def _checksum(k: np.ndarray, v: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(k).tobytes())
    digest.update(np.ascontiguousarray(v).tobytes())
    return digest.hexdigest()


def _real_files(root: Path, name: re.Pattern) -> Iterator[tuple[Path, os.stat_result]]:
    """Regular files named like ``name`` in the root's two-hex-digit folders; links are never followed."""
    try:
        folders = [e for e in os.scandir(root) if _FOLDER.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    for folder in folders:
        try:
            files = list(os.scandir(folder.path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for file in files:
            if not name.fullmatch(file.name):
                continue
            try:
                info = file.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield Path(file.path), info


def _remove_stale_temporaries(root: Path, max_age_s: float = 3600.0) -> None:
    """Temp files left by writers that died mid-write are never read; clear old ones."""
    now = time.time()
    for path, info in _real_files(root, _TEMPORARY):
        if now - info.st_mtime > max_age_s:
            path.unlink(missing_ok=True)
