"""Chunk-KV store in tiers, as LMCache keeps them: device memory, host RAM, then disk.

Entries stay in the dtype they were stored in (a bf16 model's chunk KVs are bf16 end to end)
and the memory tiers hand back the very arrays they hold, so a hit costs no conversion and
no copy. Each memory tier is a least-recently-used cache capped in bytes: an entry evicted
from the device tier moves to the host tier, a hit in a lower tier is promoted to the top.
An entry that leaves the last memory tier while no disk file holds it is reported (once
per store, with the caps to raise) and will be recomputed on its next use.

The disk tier is safetensors files written atomically (temp file, fsync, rename) with a
checksum of their tensor bytes, verified on every read: a corrupted or truncated file is
reported once, deleted and treated as a miss. Total size on disk is capped with LRU
eviction (a read refreshes the file's mtime); several processes may share one directory.
Keys are the project's own SHA-256 hex digests (:func:`chunk_key`), checked before any
path is built; eviction and clean-up only ever look at real files in real folders under
the root, never through a symbolic link. A root that cannot be written is reported once
and the store keeps working from memory.
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
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from runkit.files import atomic_write

log = logging.getLogger(__name__)

FORMAT = "prophetkv-chunk-v2"  # v2: keys as the layer computed them (v1 un-rotated them), rows padded
_KEY = re.compile(r"[0-9a-f]{64}")
_FOLDER = re.compile(r"[0-9a-f]{2}")
_FILE = re.compile(r"[0-9a-f]{64}\.safetensors")
STORE_DTYPES = ("float32", "float16", "bfloat16")
GIB = 1 << 30
DEFAULT_DEVICE_BYTES, DEFAULT_HOST_BYTES, DEFAULT_DISK_BYTES = 1 * GIB, 2 * GIB, 8 * GIB


@dataclasses.dataclass(frozen=True)
class SegmentKV:
    """K (before RoPE) and V [L, rows, KV, hd] of one segment encoded alone at local positions.

    Rows past ``num_tokens`` are padding: segments travel in row buckets, so assembling a
    new chunk length compiles nothing. The arrays are NumPy (host) or JAX (device) arrays.
    """

    k: Any
    v: Any
    num_tokens: int | None = None  # None: every row is a token

    @property
    def length(self) -> int:
        return self.k.shape[1] if self.num_tokens is None else self.num_tokens

    @property
    def nbytes(self) -> int:
        return int(self.k.nbytes) + int(self.v.nbytes)

    @property
    def dtype(self) -> str:
        return str(self.k.dtype)


@dataclasses.dataclass(frozen=True)
class EntrySpec:
    """What an entry must look like to be served for one chunk of one model."""

    shape: tuple[int, ...]  # [L, rows, KV, hd]
    length: int
    dtype: str

    def mismatch(self, entry: SegmentKV) -> str | None:
        """Why ``entry`` cannot be this chunk's KV, or None."""
        found = (tuple(entry.k.shape), tuple(entry.v.shape), entry.length, entry.dtype, str(entry.v.dtype))
        wanted = (self.shape, self.shape, self.length, self.dtype, self.dtype)
        if found == wanted:
            return None
        return (f"k {found[0]}, v {found[1]}, {found[2]} tokens, {found[3]}/{found[4]}; expected "
                f"{self.shape}, {self.length} tokens, {self.dtype}")


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
    _check_dtype(dtype)
    digest = hashlib.sha256()
    digest.update(fingerprint.encode())
    digest.update(np.asarray(token_ids, np.int64).tobytes())
    digest.update(b"bos" if chunk_bos else b"nobos")
    digest.update(dtype.encode())
    return digest.hexdigest()


def _check_dtype(dtype: str) -> None:
    if dtype not in STORE_DTYPES:
        raise ValueError(f"store dtype must be one of {STORE_DTYPES}, got {dtype!r}")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"chunk store key must be a 64-character lowercase hex digest (chunk_key), got {key!r:.80}")


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


def _gib(n: int) -> str:
    return f"{n / GIB:.3g} GiB"


class CorruptEntry(Exception):
    """A store file that exists but cannot be trusted."""


class _MemoryTier:
    """Entries kept as they are, least recently used first out once the bytes exceed ``cap``."""

    def __init__(self, name: str, cap: int) -> None:
        if cap < 0:
            raise ValueError(f"the {name} tier's cap must be >= 0 bytes, got {cap}")
        self.name, self.cap = name, cap
        self.entries: collections.OrderedDict[str, SegmentKV] = collections.OrderedDict()
        self.bytes = 0

    def get(self, key: str) -> SegmentKV | None:
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def add(self, key: str, entry: SegmentKV) -> list[tuple[str, SegmentKV]]:
        """Hold ``entry``; returns what no longer fits (``entry`` itself when it exceeds the cap)."""
        if key in self.entries:
            self.entries.move_to_end(key)
            return []
        if entry.nbytes > self.cap:
            return [(key, entry)]
        self.entries[key] = entry
        self.bytes += entry.nbytes
        evicted = []
        while self.bytes > self.cap:
            old_key, old = self.entries.popitem(last=False)
            self.bytes -= old.nbytes
            evicted.append((old_key, old))
        return evicted

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def discard(self, key: str) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.nbytes


def _to_device(entry: SegmentKV) -> SegmentKV:
    import jax

    k, v = jax.device_put((entry.k, entry.v))
    return dataclasses.replace(entry, k=k, v=v)


def _to_host(entry: SegmentKV) -> SegmentKV:
    if isinstance(entry.k, np.ndarray):
        return entry
    return dataclasses.replace(entry, k=np.asarray(entry.k), v=np.asarray(entry.v))


class ChunkStore:
    """Chunk-KV cache: a device tier, a host-RAM tier and (with ``root``) a disk tier.

    ``dtype`` fixes the stored precision (entries of another dtype are refused); None keeps
    each entry's own dtype, the one its model computed it in. Caps are in bytes; a cap of 0
    turns a memory tier off (``max_device_bytes=0`` serves chunk KVs from host RAM).
    """

    def __init__(
        self, root: str | os.PathLike | None = None, *, dtype: str | None = None,
        max_device_bytes: int = DEFAULT_DEVICE_BYTES, max_host_bytes: int = DEFAULT_HOST_BYTES,
        max_disk_bytes: int = DEFAULT_DISK_BYTES,
    ) -> None:
        if dtype is not None:
            _check_dtype(dtype)
        self.dtype = dtype
        self.root = Path(root) if root is not None else None
        self.max_disk_bytes = max_disk_bytes
        self._device = _MemoryTier("device", max_device_bytes)
        self._host = _MemoryTier("host", max_host_bytes)
        self._reported: set[str] = set()
        self.dropped = 0  # entries that left every tier (recomputed on their next use)
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

    def get(self, key: str, expect: EntrySpec | None = None) -> SegmentKV | None:
        """The entry under ``key`` (promoted to the device tier), or None on a miss.

        With ``expect``, an entry of another shape, length or dtype is refused: reported
        once, removed from every tier, and None is returned so the caller recomputes it.
        """
        _check_key(key)
        on_device = self._device.get(key)
        entry = on_device if on_device is not None else self._host.get(key)
        from_disk = entry is None
        if from_disk:
            entry = self._read_disk(key)
            if entry is None:
                return None
        problem = None if expect is None else expect.mismatch(entry)
        if problem is not None:  # refused before it is promoted (and pushes other entries down)
            self._refuse(key, problem)
            return None
        if from_disk:
            self._place(self._host, key, entry)
        if on_device is None and self._device.cap:
            entry = _to_device(entry)
            self._place(self._device, key, entry)
        return entry

    def put(self, key: str, entry: SegmentKV) -> None:
        """Keep ``entry`` in the top memory tier that takes it, and on disk when there is a root."""
        _check_key(key)
        if self.dtype is not None and (entry.dtype, str(entry.v.dtype)) != (self.dtype, self.dtype):
            raise ValueError(f"this chunk store holds {self.dtype} entries, got {entry.dtype}/{entry.v.dtype}")
        if self.root is not None:
            self._write_disk(key, entry)
        if self._device.cap and not isinstance(entry.k, np.ndarray):
            self._place(self._device, key, entry)
        else:
            self._place(self._host, key, _to_host(entry))

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

    def memory_bytes(self) -> dict[str, int]:
        return {"device": self._device.bytes, "host": self._host.bytes}

    # -- memory tiers -----------------------------------------------------------------

    def _place(self, tier: _MemoryTier, key: str, entry: SegmentKV) -> None:
        """Add to ``tier``; what it evicts moves down (device to host) or leaves the store."""
        for old_key, old in tier.add(key, entry):
            if tier is self._device and old_key not in self._host:
                self._place(self._host, old_key, _to_host(old))
            elif tier is self._host and old_key not in self._device:
                self._dropped(old_key, old)

    def _dropped(self, key: str, entry: SegmentKV) -> None:
        if self.root is not None and self.path_for(key).is_file():
            return  # the disk tier still holds it
        self.dropped += 1
        if "dropped" not in self._reported:
            self._reported.add("dropped")
            disk = f"disk store {self.root}" if self.root is not None else "no disk store"
            log.warning(
                "chunk store: a %.3g MiB entry fits no tier (device cap %s, host cap %s, %s); it and any later such "
                "entry will be recomputed on next use. Raise max_host_bytes / max_device_bytes (--store-host-gib, "
                "--store-device-gib) or keep a disk store (--store DIR)",
                entry.nbytes / (1 << 20), _gib(self._device.cap), _gib(self._host.cap), disk,
            )

    def _refuse(self, key: str, problem: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            log.warning("chunk store: entry %s does not fit this chunk and model (%s); refused, it will be "
                        "recomputed", key[:16], problem)
        self._device.discard(key)
        self._host.discard(key)
        if self.root is not None:
            self.path_for(key).unlink(missing_ok=True)

    # -- disk tier --------------------------------------------------------------------

    def _read_disk(self, key: str) -> SegmentKV | None:
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
        return entry

    def _write_disk(self, key: str, entry: SegmentKV) -> None:
        k, v = _to_bytes_view(entry.k), _to_bytes_view(entry.v)
        metadata = {"format": FORMAT, "key": key, "dtype": entry.dtype, "tokens": str(entry.length),
                    "checksum": _checksum(k, v)}
        payload = save({"k": k, "v": v}, metadata=metadata)
        path = self.path_for(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, payload, durable=True)
            self._evict_disk()
        except OSError as err:  # e.g. the disk filled up or the folder became read-only
            self._use_memory_only(f"cannot write {path} ({err.strerror or err})")

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

    def _disk_entries(self) -> list[tuple[Path, int, float]]:
        return [(path, info.st_size, info.st_mtime) for path, info in _real_files(self.root, _FILE)]

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


_TEMPORARY = re.compile(r"\.[0-9a-f]{64}\.safetensors\..*\.tmp")


def _remove_stale_temporaries(root: Path, max_age_s: float = 3600.0) -> None:
    """Temp files left by writers that died mid-write are never read; clear old ones."""
    now = time.time()
    for path, info in _real_files(root, _TEMPORARY):
        if now - info.st_mtime > max_age_s:
            path.unlink(missing_ok=True)
