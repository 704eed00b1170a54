"""Start a run from another run's weights and train only the conditioning module.

This is how every module is compared on one shared, already trained backbone.

``--init-from WORKDIR`` copies the weights of WORKDIR's newest intact checkpoint into the
new model (every backbone tensor must be there with the same shape; adapter tensors are
copied where they fit, else keep their fresh initialisation). The source's step and a
SHA-256 of its weights are saved with the run's settings, and a resumed run whose source
now holds other weights is refused, so a run never silently mixes two backbones.

``--train adapter`` gives updates only to the ``adapter_*`` parameters (the variant's own
module); the backbone is passed through the step untouched, so it stays bit-identical.
The optimizer state then covers the trainable part only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from cea_jax import workdir as wd
from cea_jax.train_config import TRAINABLE

ADAPTER_PREFIX = "adapter_"


def is_adapter(path: tuple[Any, ...]) -> bool:
    """Whether a flattened parameter path belongs to a conditioning module."""
    return any(str(key).startswith(ADAPTER_PREFIX) for key in path)


def split_params(params: Any, train: str) -> tuple[Any, Any]:
    """(trainable, frozen) parts of a variables dict; ``train="all"`` returns (params, {})."""
    if train == "all":
        return params, {}
    if train != "adapter":
        raise ValueError(f"train must be one of {TRAINABLE}, got {train!r}")
    flat = traverse_util.flatten_dict(params)
    trainable = {k: v for k, v in flat.items() if is_adapter(k)}
    frozen = {k: v for k, v in flat.items() if not is_adapter(k)}
    return traverse_util.unflatten_dict(trainable), traverse_util.unflatten_dict(frozen)


def join_params(trainable: Any, frozen: Any) -> Any:
    """Inverse of :func:`split_params`."""
    if not frozen:
        return trainable
    flat = traverse_util.flatten_dict(frozen)
    flat.update(traverse_util.flatten_dict(trainable))
    return traverse_util.unflatten_dict(flat)


def graft(target: Any, source: Any, origin: str) -> Any:
    """``target`` with every tensor that ``source`` holds at the same path (shapes must agree).

    Every backbone tensor of ``target`` must come from ``source``; a source tensor the
    target lacks is an error unless it is an adapter's (a backbone taken from a CEA run).
    """
    flat_target = traverse_util.flatten_dict(target)
    flat_source = traverse_util.flatten_dict(source)
    missing = [k for k in flat_target if not is_adapter(k) and k not in flat_source]
    foreign = [k for k in flat_source if k not in flat_target and not is_adapter(k)]
    if missing or foreign:
        name = "/".join(map(str, (missing or foreign)[0]))
        problem = "has no" if missing else "holds a tensor this model lacks:"
        raise wd.WorkdirError(f"--init-from {origin}: its checkpoint {problem} {name} (a different backbone? "
                              "use the same --config and --set model fields)")
    for key, value in flat_source.items():
        if key not in flat_target:
            continue
        if tuple(value.shape) != tuple(flat_target[key].shape):
            raise wd.WorkdirError(f"--init-from {origin}: {'/'.join(map(str, key))} is {tuple(value.shape)} there, "
                                  f"{tuple(flat_target[key].shape)} here (a different backbone?)")
        flat_target[key] = value
    return traverse_util.unflatten_dict(flat_target)


def weights_sha256(params: Any) -> str:
    """One SHA-256 over every tensor's digest (names sorted): the identity of a set of weights."""
    digest = hashlib.sha256()
    for name, value in sorted(wd.state_digest(params).items()):
        digest.update(f"{name}={value};".encode())
    return digest.hexdigest()


def load_source(init_from: str, sharding: jax.sharding.Sharding) -> tuple[Any, dict[str, Any]]:
    """(params placed with ``sharding``, record) of the newest intact checkpoint of ``init_from``;
    the record (path, step, weights SHA-256) is saved with the run's settings."""
    if not (Path(init_from) / wd.CONFIG_FILE).is_file():
        raise wd.WorkdirError(f"--init-from {init_from}: not a train.py --workdir (no {wd.CONFIG_FILE})")
    _, params, step = wd.load_params(workdir=init_from)
    record = {"workdir": str(Path(init_from).absolute()), "step": step, "sha256": weights_sha256(params)}
    placed = jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), params)
    return placed, record

