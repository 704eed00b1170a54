"""The chunk store's disk tier: safetensors files that several processes may share.

Files are written atomically (temp file, fsync, rename) with a checksum of their tensor
bytes, verified on every read: a corrupted or truncated file is reported once, deleted and
treated as a miss. Total size is capped with LRU eviction (a read refreshes the file's
mtime). Keys are the project's own SHA-256 hex digests, checked before any path is built;
eviction and clean-up only ever look at real files in real folders under the root, never
through a symbolic link, and nothing is opened through a link or as anything but a regular
file (a FIFO planted as the lock or an entry would block every put).

Each process keeps a running size of the store instead of listing it on every put: the
store is listed (one stat per entry) at start and when the running size passes the cap,
and eviction then frees a tenth of the cap, so a put costs O(1) amortised however many
entries the store holds. Other processes' writes are seen at the next listing, so a
shared store may pass its cap by up to a tenth per other writer in between.

Several users may share one store through a group (docs/prophetkv/usage.md): an entry
another user wrote is served when it can be read even if its time cannot be refreshed,
and one that cannot be read is a warned miss that is left in place, never replaced.
"""

from __future__ import annotations

import contextlib
import errno
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
from safetensors import SafetensorError
from safetensors.numpy import load, save

from prophetkv_jax.segment_kv import STORE_DTYPES, SegmentKV
from runkit.files import atomic_write

log = logging.getLogger(__name__)

FORMAT = "prophetkv-chunk-v2"  # v2: keys as the layer computed them (v1 un-rotated them), rows padded
KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
_FOLDER = re.compile(r"[0-9a-f]{2}")
_FILE = re.compile(r"[0-9a-f]{64}\.safetensors")
_TEMPORARY = re.compile(r"\.[0-9a-f]{64}\.safetensors\..*\.tmp")
_LISTED = re.compile(f"{_FILE.pattern}|{_TEMPORARY.pattern}")
_LOW_WATER = 0.9  # eviction frees down to this share of the cap, so the next listings are far apart
_STALE_S = 3600.0
_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class CorruptEntry(Exception):
    """A store file that exists but cannot be trusted."""


class _NotAFile(Exception):
    """Something other than a regular file (a folder, a FIFO, a link) sits where an entry belongs."""


class DiskTier:
    """Entries as files under ``root``/<first two hex digits>/<key>.safetensors, capped at ``max_bytes``.

    Raises OSError at construction when ``root`` cannot be written or its lock file is not a
    regular file, and from :meth:`write` when a write fails; the store then keeps working from memory.
    """

    def __init__(self, root: str | os.PathLike, max_bytes: int, dtype: str | None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.dtype = dtype
        self._reported: set[str] = set()
        self._bypassed: set[str] = set()  # keys whose file this process must neither read nor replace
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.root):
            pass  # the folder is writable
        _check_lock(self.root / ".lock")
        self._known = self.total_bytes()  # running size: the last listing plus this process's writes

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
        _discard(self.path_for(key))

    def total_bytes(self) -> int:
        return sum(info.st_size for _, info in _real_files(self.root, _FILE))

    def read(self, key: str) -> SegmentKV | None:
        """The entry, or None when there is no usable file (a corrupt one is deleted, see the module doc)."""
        path = self.path_for(key)
        try:
            entry = self._parse(_read_regular(path), key)
        except FileNotFoundError:
            return None
        except PermissionError:
            self._bypass(key, path, "is not readable by this user")
            return None
        except _NotAFile:
            self._bypass(key, path, "is not a regular file")
            return None
        except (CorruptEntry, OSError) as err:  # OSError: e.g. an I/O error reading it
            self._warn_once(key, "chunk store: discarding corrupt entry %s (%s); it will be recomputed", path, err)
            _discard(path)
            return None
        with contextlib.suppress(OSError):  # another user's read-only entry: served, its recency not refreshed
            os.utime(path)
        return entry

    def write(self, key: str, entry: SegmentKV) -> None:
        path = self.path_for(key)
        replaced = self._replaceable(key, path)
        if replaced is None:
            return
        k, v = _to_bytes_view(entry.k), _to_bytes_view(entry.v)
        metadata = {"format": FORMAT, "key": key, "dtype": entry.dtype, "tokens": str(entry.length),
                    "checksum": _checksum(k, v)}
        payload = save({"k": k, "v": v}, metadata=metadata)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, payload, durable=True)
        self._known += len(payload) - replaced
        if self._known > self.max_bytes:
            self._evict()

    def _replaceable(self, key: str, path: Path) -> int | None:
        """The size of the file a write would replace (0: none), or None when it must be left alone."""
        if key in self._bypassed:
            return None
        try:
            info = path.lstat()
        except FileNotFoundError:
            return 0
        if not stat.S_ISREG(info.st_mode):
            self._bypass(key, path, "is not a regular file")
            return None
        if not os.access(path, os.R_OK):  # another user's private entry: replacing it would ping-pong
            self._bypass(key, path, "is not readable by this user")
            return None
        return info.st_size

    def _bypass(self, key: str, path: Path, problem: str) -> None:
        self._bypassed.add(key)
        try:
            owner = f", owned by uid {path.lstat().st_uid}"
        except OSError:
            owner = ""
        self._warn_once(key, "chunk store: %s %s%s; it is a miss here and is left in place (this entry stays in "
                        "memory only)", path, problem, owner)

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._reported:
            self._reported.add(key)
            log.warning(message, *args)

    def _parse(self, data: bytes, key: str) -> SegmentKV:
        try:
            header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
            metadata = header.get("__metadata__") or {}
            tensors = load(data)
            k, v = tensors["k"], tensors["v"]
        except (SafetensorError, ValueError, KeyError, TypeError, AttributeError) as err:
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

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock (one evicting process at a time); never through a link or a non-file."""
        path = self.root / ".lock"
        try:
            fd = os.open(path, _NO_FOLLOW | os.O_CREAT, 0o666)  # read-only is enough for flock
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise _not_a_lock(path) from err
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _not_a_lock(path)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _evict(self) -> None:
        """List the store once: clear stale temporaries and, over the cap, delete least-recently-used
        files down to the low-water mark; the listing resets the running size."""
        with self._locked():
            now, entries = time.time(), []
            for path, info in _real_files(self.root, _LISTED):
                if _FILE.fullmatch(path.name):
                    entries.append((info.st_mtime, info.st_size, path))
                elif now - info.st_mtime > _STALE_S:  # left by a writer that died mid-write; never read
                    _discard(path)
            entries.sort()
            total = sum(size for _, size, _ in entries)
            if total > self.max_bytes:
                for _, size, path in entries[:-1]:  # never evict the entry just written
                    if total <= self.max_bytes * _LOW_WATER:
                        break
                    if _discard(path):
                        total -= size
            self._known = total


def _check_lock(path: Path) -> None:
    """Refuse a lock file that is there but is not a regular file (checked at start, so the
    store falls back to memory before any work)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise _not_a_lock(path)


def _not_a_lock(path: Path) -> OSError:
    return OSError(f"{path} is not a regular file (a link, FIFO or folder planted there?); refusing to lock it")


def _read_regular(path: Path) -> bytes:
    """The bytes of ``path``, opened without following a link or blocking on a FIFO."""
    try:
        fd = os.open(path, _NO_FOLLOW)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise _NotAFile(path) from err
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _NotAFile(path)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _discard(path: Path) -> bool:
    """Delete a regular file; False when it is gone already or cannot be deleted (another user's, a folder)."""
    try:
        path.unlink()
    except OSError:
        return False
    return True


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
        except OSError:  # gone, replaced, or another user's private folder
            continue
        for file in files:
            if not name.fullmatch(file.name):
                continue
            try:
                info = file.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield Path(file.path), info
