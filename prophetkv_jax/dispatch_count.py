"""Counts of what a request costs the host: compiled-program launches and waits for the device.

A prefill is fast on an accelerator only if the host queues its programs and waits once; every
host round trip (a value read back mid-request) and every extra launch is latency on the critical
path. ``counting()`` instruments, for the duration of a ``with`` block:

* launches: calls of every jitted program held by a loaded ``prophetkv_jax`` module, plus every
  primitive run eagerly (an op outside a program is a launch of its own);
* host syncs: ``jax.device_get`` and ``jax.block_until_ready`` calls (one each, whatever they
  fetch), every NumPy function that this package's modules call on a device array (on CPU NumPy
  reads one through the buffer protocol, unseen by JAX), and every other read of a device
  array's value (``int()``, ``float()``, ``.item()``, ...).

jax.numpy's own jitted helpers called outside a program are not seen as launches (they run in
JAX's C++ dispatch); this package calls its programs, not those, on a request's path.

Host-to-device transfers (``device_put``) are counted apart, as ``transfers``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax._src import array as jax_array
from jax._src import core as jax_core

_PJIT_TYPE = type(jax.jit(lambda x: x))


@dataclasses.dataclass
class Counts:
    launches: int = 0
    host_syncs: int = 0
    transfers: int = 0
    programs: dict[str, int] = dataclasses.field(default_factory=dict)  # launches per program name


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """Count launches and host syncs inside the block (see the module docstring)."""
    counts, depth = Counts(), [0]  # depth > 0: inside a counted call, whose inner work is not counted again
    patches: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, value: Any) -> None:
        patches.append((owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)))
        setattr(owner, name, value)

    def counted(kind: str, fn: Any, label: str) -> Any:
        def call(*args, **kwargs):
            if depth[0] == 0:
                setattr(counts, kind, getattr(counts, kind) + 1)
                if kind == "launches":
                    counts.programs[label] = counts.programs.get(label, 0) + 1
            depth[0] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
        return call

    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("prophetkv_jax") or module is None or module_name == __name__:
            continue
        for name, value in list(vars(module).items()):
            if isinstance(value, _PJIT_TYPE):
                patch(module, name, counted("launches", value, f"{module_name}.{name}"))
        if getattr(module, "np", None) is np:
            patch(module, "np", _CountingNumpy(counts, depth))
    process = jax_core.EvalTrace.process_primitive

    def eager(self, primitive, args, params):
        if depth[0] == 0:
            if primitive.name == "device_put":
                counts.transfers += 1
            else:
                counts.launches += 1
                counts.programs[f"eager {primitive.name}"] = counts.programs.get(f"eager {primitive.name}", 0) + 1
        depth[0] += 1
        try:
            return process(self, primitive, args, params)
        finally:
            depth[0] -= 1

    patch(jax_core.EvalTrace, "process_primitive", eager)
    patch(jax, "device_get", counted("host_syncs", jax.device_get, "device_get"))
    patch(jax, "block_until_ready", counted("host_syncs", jax.block_until_ready, "block_until_ready"))
    value = jax_array.ArrayImpl.__dict__["_value"]
    patch(jax_array.ArrayImpl, "_value", property(counted("host_syncs", value.fget, "value")))
    try:
        yield counts
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


class _CountingNumpy:
    """NumPy for one module, counting each call that is handed a device array as a host sync."""

    def __init__(self, counts: Counts, depth: list[int]) -> None:
        self._counts, self._depth = counts, depth

    def __getattr__(self, name: str) -> Any:
        value = getattr(np, name)
        if not callable(value) or isinstance(value, type):
            return value

        def call(*args, **kwargs):
            reads = any(isinstance(a, jax.Array) for a in (*args, *kwargs.values()))
            if reads and self._depth[0] == 0:
                self._counts.host_syncs += 1
            self._depth[0] += reads
            try:
                return value(*args, **kwargs)
            finally:
                self._depth[0] -= reads
        return call
