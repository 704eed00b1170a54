"""Chunk-KV store in tiers, as LMCache keeps them: device memory, host RAM, then disk.

Entries stay in the dtype they were stored in (a bf16 model's chunk KVs are bf16 end to end)
and the memory tiers hand back the very arrays they hold, so a hit costs no conversion and
no copy. The host tier holds its entries in pinned host memory where the backend offers it
(:mod:`prophetkv_jax.host_memory`), so that their copies to the device overlap other work. Each
memory tier is a least-recently-used cache capped in bytes: an entry evicted
from the device tier moves to the host tier, a hit in a lower tier is promoted to the top.
An entry that leaves the last memory tier while no disk file holds it is reported (once
per store, with the caps to raise) and will be recomputed on its next use. The disk tier
(:mod:`prophetkv_jax.disk_tier`) is shared between processes; a root that cannot be written
is reported once and the store keeps working from memory.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from prophetkv_jax.disk_tier import KEY_PATTERN, DiskTier
from prophetkv_jax.host_memory import default_host_kind, on_device, to_device, to_host
from prophetkv_jax.segment_kv import STORE_DTYPES, EntrySpec, SegmentKV, check_dtype

__all__ = ["ChunkStore", "EntrySpec", "SegmentKV", "STORE_DTYPES", "chunk_key", "model_fingerprint",
           "GIB", "DEFAULT_DEVICE_BYTES", "DEFAULT_HOST_BYTES", "DEFAULT_DISK_BYTES"]

log = logging.getLogger(__name__)

GIB = 1 << 30
DEFAULT_DEVICE_BYTES, DEFAULT_HOST_BYTES, DEFAULT_DISK_BYTES = 1 * GIB, 2 * GIB, 8 * GIB


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
    check_dtype(dtype)
    digest = hashlib.sha256()
    digest.update(fingerprint.encode())
    digest.update(np.asarray(token_ids, np.int64).tobytes())
    digest.update(b"bos" if chunk_bos else b"nobos")
    digest.update(dtype.encode())
    return digest.hexdigest()


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"chunk store key must be a 64-character lowercase hex digest (chunk_key), got {key!r:.80}")


def _gib(n: int) -> str:
    return f"{n / GIB:.3g} GiB"


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
            check_dtype(dtype)
        self.dtype = dtype
        self._device = _MemoryTier("device", max_device_bytes)
        self._host = _MemoryTier("host", max_host_bytes)
        self._reported: set[str] = set()
        self.dropped = 0  # entries that left every tier (recomputed on their next use)
        self._disk: DiskTier | None = None
        if root is not None:
            try:
                self._disk = DiskTier(root, max_disk_bytes, dtype)
            except OSError as err:
                self._use_memory_only(f"cannot write to {root} ({err.strerror or err})")

    @property
    def root(self) -> Path | None:
        """The disk tier's folder; None while entries live in memory only."""
        return None if self._disk is None else self._disk.root

    def _use_memory_only(self, reason: str) -> None:
        log.warning("chunk store: %s; keeping chunk KVs in memory only for this run", reason)
        self._disk = None

    # -- public API -------------------------------------------------------------------

    @property
    def host_memory_kind(self) -> str:
        """What the host tier keeps entries in: ``pinned_host``, ``unpinned_host`` or ``numpy``."""
        return default_host_kind()

    def get(self, key: str, expect: EntrySpec | None = None) -> SegmentKV | None:
        """The entry under ``key`` (promoted to the device tier), or None on a miss.

        With ``expect``, an entry of another shape, length or dtype is refused: reported
        once, removed from every tier, and None is returned so the caller recomputes it.
        """
        found = self.fetch(key, expect)
        return None if found is None else found[0]

    def fetch(self, key: str, expect: EntrySpec | None = None) -> tuple[SegmentKV, str] | None:
        """As :meth:`get`, with the tier that held the entry (``device``, ``host`` or ``disk``). An entry
        promoted from a lower tier comes back with its copy to the device issued, not waited for."""
        _check_key(key)
        tier = "device"
        entry = self._device.get(key)
        if entry is None:
            tier, entry = "host", self._host.get(key)
        if entry is None:
            tier, entry = "disk", None if self._disk is None else self._disk.read(key)
            if entry is None:
                return None
        problem = None if expect is None else expect.mismatch(entry)
        if problem is not None:  # refused before it is promoted (and pushes other entries down)
            self._refuse(key, problem)
            return None
        if tier == "disk":
            entry = to_host(entry)
            self._place(self._host, key, entry)
        if tier != "device" and self._device.cap:
            entry = to_device(entry)
            self._place(self._device, key, entry)
        return entry, tier

    def put(self, key: str, entry: SegmentKV) -> None:
        """Keep ``entry`` in the top memory tier that takes it, and on disk when there is a root."""
        _check_key(key)
        if self.dtype is not None and (entry.dtype, str(entry.v.dtype)) != (self.dtype, self.dtype):
            raise ValueError(f"this chunk store holds {self.dtype} entries, got {entry.dtype}/{entry.v.dtype}")
        if self._disk is not None:
            try:
                self._disk.write(key, entry)
            except OSError as err:  # e.g. the disk filled up or the folder became read-only
                self._use_memory_only(f"cannot write {self._disk.path_for(key)} ({err.strerror or err})")
        if self._device.cap and on_device(entry):
            self._place(self._device, key, entry)
        else:
            self._place(self._host, key, to_host(entry))

    def path_for(self, key: str) -> Path:
        """The entry's file; ValueError for a key that is not a chunk_key digest or would leave the root."""
        _check_key(key)
        if self._disk is None:
            raise ValueError("this chunk store keeps entries in memory only")
        return self._disk.path_for(key)

    def disk_bytes(self) -> int:
        return 0 if self._disk is None else self._disk.total_bytes()

    def memory_bytes(self) -> dict[str, int]:
        return {"device": self._device.bytes, "host": self._host.bytes}

    # -- memory tiers -----------------------------------------------------------------

    def _place(self, tier: _MemoryTier, key: str, entry: SegmentKV) -> None:
        """Add to ``tier``; what it evicts moves down (device to host) or leaves the store."""
        for old_key, old in tier.add(key, entry):
            if tier is self._device and old_key not in self._host:
                self._place(self._host, old_key, to_host(old))
            elif tier is self._host and old_key not in self._device:
                self._dropped(old_key, old)

    def _dropped(self, key: str, entry: SegmentKV) -> None:
        if self._disk is not None and self._disk.holds(key):
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
        if self._disk is not None:
            self._disk.remove(key)
