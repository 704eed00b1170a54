"""Where host-tier chunk KVs live, and their copies to the device.

A copy from pageable memory must be staged by the driver and cannot overlap other work; one
from pinned (page-locked) memory is a DMA that runs beside the computation. So the host tier
keeps its entries in the backend's pinned host memory when it offers one (JAX memory kind
``pinned_host``), else in its other host memory (``unpinned_host``), else as NumPy arrays.
Copies to the device are issued as soon as a request knows its segments (JAX dispatch is
asynchronous) and waited for only where a write reads them (:func:`wait_for`), which reports
how long the request was held up.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Any

import numpy as np

from prophetkv_jax.segment_kv import SegmentKV

log = logging.getLogger(__name__)

HOST_KINDS = ("pinned_host", "unpinned_host")  # in order of preference
NUMPY = "numpy"  # what the host tier holds where the backend offers no host memory kind


def host_memory_kind(device: Any) -> str:
    """The memory kind for host-tier entries of those the device offers: pinned (its copies to the device
    can overlap other work), else unpinned, else NumPy arrays."""
    offered = {memory.kind for memory in device.addressable_memories()}
    return next((kind for kind in HOST_KINDS if kind in offered), NUMPY)


@functools.lru_cache(maxsize=1)
def _default_placement() -> tuple[Any, str]:
    """(the device NumPy arrays go to by default, its host memory kind), chosen once per process."""
    import jax  # local: keeps the store importable without touching a backend

    device = jax.devices()[0]
    kind = host_memory_kind(device)
    log.info("chunk store: the host tier keeps entries in %s memory (%s offers %s)", kind, device,
             ", ".join(memory.kind for memory in device.addressable_memories()))
    return device, kind


def default_host_kind() -> str:
    """The host memory kind the host tier uses in this process (for reports)."""
    return _default_placement()[1]


def _memory_kind(array: Any) -> str:
    return NUMPY if isinstance(array, np.ndarray) else array.sharding.memory_kind


def on_device(entry: SegmentKV) -> bool:
    """Whether both arrays are in device memory (neither NumPy nor a host memory kind)."""
    return all(_memory_kind(x) not in (NUMPY, *HOST_KINDS) for x in (entry.k, entry.v))


def to_host(entry: SegmentKV) -> SegmentKV:
    """``entry`` in host memory (unchanged if it is there already); a device entry keeps its layout
    over devices, a NumPy one goes to the default device's host memory. The copy is asynchronous."""
    device, kind = _default_placement()
    if kind == NUMPY:
        return entry if isinstance(entry.k, np.ndarray) else dataclasses.replace(
            entry, k=np.asarray(entry.k), v=np.asarray(entry.v))
    if _memory_kind(entry.k) in HOST_KINDS:
        return entry
    import jax

    target = (entry.k.sharding.with_memory_kind(kind) if isinstance(entry.k, jax.Array)
              else jax.sharding.SingleDeviceSharding(device, memory_kind=kind))
    k, v = jax.device_put((entry.k, entry.v), target)
    return dataclasses.replace(entry, k=k, v=v)


def to_device(entry: SegmentKV) -> SegmentKV:
    """``entry`` in device memory (unchanged if it is there already), on the devices its host copy
    belongs to; the copy is issued now and runs while the caller goes on."""
    if on_device(entry):
        return entry
    import jax

    if isinstance(entry.k, np.ndarray):
        k, v = jax.device_put((entry.k, entry.v))
    else:
        device = next(iter(entry.k.sharding.device_set))
        k, v = jax.device_put((entry.k, entry.v), entry.k.sharding.with_memory_kind(device.default_memory().kind))
    return dataclasses.replace(entry, k=k, v=v)


def wait_for(arrays: Any) -> float:
    """Block until ``arrays`` have landed; the seconds this took (what a copy still costs the request
    after the work issued before it)."""
    import jax

    start = time.perf_counter()
    jax.block_until_ready(arrays)
    return time.perf_counter() - start
