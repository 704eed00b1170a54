"""``train.py --set KEY=VALUE``: each value checked against its config field, and the model against memory.

A ``--set`` value is JSON, so ``rank=1e9`` is a float and ``dim=true`` a bool, and the
configs' range checks (``rank >= 1``) let both through: the first fails deep inside JAX,
the second divides by zero, each after the run folder was created. Here a value must have
its field's type (an int field takes no float or bool; a float field a finite number), and
a model whose training state alone (float32 weights, gradients and Adam's two moments of
what is trained) cannot fit in one device's memory is refused, both before the folder
exists. The type check runs before JAX loads; the memory check counts parameters from
shapes only (nothing is allocated).
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from typing import Any

from cea_jax.configs import AdapterConfig, ModelConfig

_HINTS = {**typing.get_type_hints(ModelConfig), **typing.get_type_hints(AdapterConfig)}
_HINTS.pop("adapter")  # a whole AdapterConfig cannot come from the command line
_HINTS.pop("variant")  # chosen with --variant
TRAINING_BYTES_PER_PARAM = 16  # float32 weight, gradient, Adam's first and second moments
FROZEN_BYTES_PER_PARAM = 4  # float32 weight only


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value can stand for a field annotated ``hint`` (bools are not ints here)."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        return (isinstance(value, (list, tuple)) and len(value) == len(items)
                and all(_matches(v, item) for v, item in zip(value, items)))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return value is None if hint is type(None) else isinstance(value, hint)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {len(typing.get_args(hint))} {_describe(typing.get_args(hint)[0])}s"
    return {float: "a finite number", type(None): "null"}.get(hint, getattr(hint, "__name__", str(hint)))


def check_override(key: str, value: Any, source: str = "--set") -> None:
    """ValueError naming ``source KEY`` (the flag, or the file it was read from) unless ``value`` has the
    type of the model config field ``key``.

    Unknown keys pass here: ``get_config`` names them with the list of known ones.
    """
    hint = _HINTS.get(key.removeprefix("adapter."))
    if hint is not None and not _matches(value, hint):
        raise ValueError(f"{source} {key}: expected {_describe(hint)}, got {type(value).__name__} {json.dumps(value)}")


def _device_memory() -> tuple[int, str]:
    """(bytes, what) one device can hold: an accelerator's memory limit, or the host's RAM for CPUs."""
    import jax

    device = jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"one {device.device_kind}"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this host's RAM"


def check_fits(config: ModelConfig, adapter_only: bool, describe: str) -> None:
    """ValueError unless the training state of ``config`` (``describe``: the flags naming it) fits one device.

    Every device holds the whole state (data parallel), so this is a lower bound of what
    training needs: refused here, the run could not have started.
    """
    from cea_jax.summary import count_params

    counts = count_params(config)
    trained = counts["adapter"] if adapter_only else counts["total"]
    needed = TRAINING_BYTES_PER_PARAM * trained + FROZEN_BYTES_PER_PARAM * (counts["total"] - trained)
    available, where = _device_memory()
    if needed > available:
        raise ValueError(f"{describe}: the model has {counts['total']:,} parameters, whose training state alone "
                         f"needs {needed / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB of {where}; "
                         "use smaller values")
