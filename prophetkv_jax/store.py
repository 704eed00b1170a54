"""Persistent per-chunk KV store: safetensors files behind an in-memory LRU.

Entries are written atomically (temp file, fsync, rename), carry a checksum of their
tensor bytes, and are verified on every disk read: a corrupted or truncated entry is
reported once, deleted and treated as a miss, so the caller recomputes it. Total size
on disk is capped with least-recently-used eviction (a read refreshes the file's mtime).
Several processes may share one directory: readers only ever see whole files.

Keys are the project's own SHA-256 hex digests (:func:`chunk_key`); anything else is
refused before a path is built, and every path is checked to lie inside the root. A root
that cannot be created or written is reported once and the store works from memory.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from cea_jax.files import atomic_write

log = logging.getLogger(__name__)

FORMAT = "prophetkv-chunk-v1"
_KEY = re.compile(r"[0-9a-f]{64}")
STORE_DTYPES = ("float32", "float16", "bfloat16")


@dataclasses.dataclass(frozen=True)
class SegmentKV:
    """K (no RoPE) and V of one segment encoded alone at local positions 0..n-1."""

    k: np.ndarray  # [L, n, KV, hd]
    v: np.ndarray  # [L, n, KV, hd]

    @property
    def length(self) -> int:
        return self.k.shape[1]

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


def model_fingerprint(config: Any, params: Any) -> str:
    """SHA-256 of the architecture and every byte of every weight (run once per loaded model).

    A stored chunk KV is valid only for the exact weights that produced it: editing a
    single embedding row must change the fingerprint. Tensors reach the host one at a time.
    """
    import jax  # local: keeps the store importable without touching a backend

    digest = hashlib.sha256(repr(config).encode())
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()[:32]


def chunk_key(fingerprint: str, token_ids: np.ndarray, chunk_bos: bool, dtype: str) -> str:
    """Store key: (model fingerprint, chunk token ids, chunk-BOS flag, dtype)."""
    if dtype not in STORE_DTYPES:
        raise ValueError(f"store dtype must be one of {STORE_DTYPES}, got {dtype!r}")
    digest = hashlib.sha256()
    digest.update(fingerprint.encode())
    digest.update(np.asarray(token_ids, np.int64).tobytes())
    digest.update(b"bos" if chunk_bos else b"nobos")
    digest.update(dtype.encode())
    return digest.hexdigest()


def _to_storage(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":  # safetensors' numpy API has no bf16: keep the raw 16 bits
        import ml_dtypes

        return np.asarray(array, ml_dtypes.bfloat16).view(np.uint16)
    return np.asarray(array, dtype)


def _from_storage(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        import ml_dtypes

        return array.view(ml_dtypes.bfloat16).astype(np.float32)
    return array.astype(np.float32)


def _checksum(k: np.ndarray, v: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(k).tobytes())
    digest.update(np.ascontiguousarray(v).tobytes())
    return digest.hexdigest()


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"chunk store key must be a 64-character lowercase hex digest (chunk_key), got {key!r:.80}")


class CorruptEntry(Exception):
    """A store file that exists but cannot be trusted."""


class ChunkStore:
    """Chunk-KV cache on disk (optional) with an in-memory LRU in front.

    ``root=None`` keeps entries in memory only. ``dtype`` is the storage precision;
    entries come back as float32 arrays.
    """

    def __init__(
        self, root: str | os.PathLike | None = None, *, dtype: str = "float32",
        max_disk_bytes: int = 8 << 30, max_memory_bytes: int = 1 << 30,
    ) -> None:
        if dtype not in STORE_DTYPES:
            raise ValueError(f"store dtype must be one of {STORE_DTYPES}, got {dtype!r}")
        self.dtype = dtype
        self.root = Path(root) if root is not None else None
        self.max_disk_bytes = max_disk_bytes
        self.max_memory_bytes = max_memory_bytes
        self._memory: collections.OrderedDict[str, SegmentKV] = collections.OrderedDict()
        self._memory_bytes = 0
        self._reported: set[str] = set()
        if self.root is not None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=self.root):
                    pass  # the folder is writable
            except OSError as err:
                self._use_memory_only(f"cannot write to {self.root} ({err.strerror or err})")

    def _use_memory_only(self, reason: str) -> None:
        log.warning("chunk store: %s; keeping chunk KVs in memory only for this run", reason)
        self.root = None

    # -- public API -------------------------------------------------------------------

    def get(self, key: str) -> SegmentKV | None:
        _check_key(key)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if self.root is None:
            return None
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
        self._remember(key, entry)
        return entry

    def put(self, key: str, entry: SegmentKV) -> None:
        _check_key(key)
        self._remember(key, entry)
        if self.root is None:
            return
        k, v = _to_storage(entry.k, self.dtype), _to_storage(entry.v, self.dtype)
        metadata = {"format": FORMAT, "key": key, "dtype": self.dtype, "checksum": _checksum(k, v)}
        payload = save({"k": k, "v": v}, metadata=metadata)
        path = self.path_for(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, payload, durable=True)
            self._evict_disk()
        except OSError as err:  # e.g. the disk filled up or the folder became read-only
            self._use_memory_only(f"cannot write {path} ({err.strerror or err})")

    def path_for(self, key: str) -> Path:
        """The entry's file; ValueError for a key that is not a chunk_key digest or would leave the root."""
        _check_key(key)
        if self.root is None:
            raise ValueError("this chunk store keeps entries in memory only")
        root = self.root.resolve()
        path = (root / key[:2] / f"{key}.safetensors").resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"chunk store key {key!r} resolves outside the store root {root}")
        return path

    def disk_bytes(self) -> int:
        return sum(size for _, size, _ in self._disk_entries())

    # -- internals --------------------------------------------------------------------

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
            raise CorruptEntry("header does not describe this entry")
        if metadata.get("dtype") != self.dtype:
            raise CorruptEntry(f"stored as {metadata.get('dtype')}, store expects {self.dtype}")
        if metadata.get("checksum") != _checksum(k, v):
            raise CorruptEntry("checksum mismatch")
        return SegmentKV(_from_storage(k, self.dtype), _from_storage(v, self.dtype))

    def _remember(self, key: str, entry: SegmentKV) -> None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return
        self._memory[key] = entry
        self._memory_bytes += entry.nbytes
        while self._memory_bytes > self.max_memory_bytes and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            self._memory_bytes -= dropped.nbytes

    def _disk_entries(self) -> list[tuple[Path, int, float]]:
        entries = []
        for path in self.root.glob("*/*.safetensors"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((path, stat.st_size, stat.st_mtime))
        return entries

    def _evict_disk(self) -> None:
        """Delete least-recently-used files until the store fits its cap (one process at a time)."""
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _remove_stale_temporaries(self.root)
            entries = sorted(self._disk_entries(), key=lambda e: e[2])
            total = sum(size for _, size, _ in entries)
            for path, size, _ in entries[:-1]:  # never evict the entry just written
                if total <= self.max_disk_bytes:
                    break
                path.unlink(missing_ok=True)
                total -= size


def _remove_stale_temporaries(root: Path, max_age_s: float = 3600.0) -> None:
    """Temp files left by writers that died mid-write are never read; clear old ones."""
    now = time.time()
    for tmp in root.glob("*/.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()
        except FileNotFoundError:
            pass
