"""What a checkpoint must satisfy before its weights are trusted.

A damaged or mismatched checkpoint must never load as a model that quietly answers wrong:
non-finite or integer weights, a config that names more or fewer layers than the weights hold,
a tensor the loader would silently drop, a size of zero in a config, a config field that
changes the math in a way this model does not implement, a tokenizer with ids the embedding
has no row for, or an index file that points outside the model folder are each refused with
one line naming the file and what is wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and what was expected."""


def finite(weight: np.ndarray, file: Path | str, name: str) -> np.ndarray:
    """``weight`` unchanged, or CheckpointError when it holds NaN or inf."""
    bad = int(weight.size - np.count_nonzero(np.isfinite(weight)))
    if bad:
        raise CheckpointError(f"{file}: tensor {name} holds {bad} non-finite value(s) (NaN/inf); refusing to load it")
    return weight


# safetensors dtypes of weights the model can use: anything else (integers, bools, fp8 without its
# scales) would be cast to float and run as a model nobody trained.
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")

# config.json fields that change what a layer computes, and the values this model implements:
# any other value would load and quietly compute another function (gelu run as silu, ...).
IMPLEMENTED = {"hidden_act": ("silu",), "hidden_activation": ("silu",), "partial_rotary_factor": (1,),
               "attn_logit_softcapping": (None,), "final_logit_softcapping": (None,)}


def float_weight(dtype: str, file: Path | str, name: str) -> None:
    """A tensor's safetensors dtype must be a float type (checked before it is read)."""
    if dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{file}: tensor {name} is {dtype}; expected floating-point weights "
                              f"({', '.join(FLOAT_DTYPES)}); refusing to cast it")


def implemented_math(cfg: dict[str, Any], source: Path | str) -> None:
    """Refuse a config field (see ``IMPLEMENTED``) whose value this model does not compute."""
    for field, allowed in IMPLEMENTED.items():
        if field in cfg and cfg[field] not in allowed:
            raise CheckpointError(f"{source}: {field}={cfg[field]!r} is not supported (this model implements "
                                  f"{' or '.join(map(repr, allowed))})")


def tokenizer_fits(ids: int, vocab_size: int, tokenizer_file: Path | str, config_file: Path | str) -> None:
    """Every id the tokenizer can produce needs an embedding row: a prompt with a larger one would
    fail far from here, as if the weights had overflowed."""
    if ids > vocab_size:
        raise CheckpointError(f"{tokenizer_file}: holds {ids} ids, but {config_file} vocab_size={vocab_size}; "
                              "the ids past it have no embedding row (tokenizer and weights of two models?)")


def positive_int(value: Any, source: Path | str, key: str) -> int:
    """A config size (layers, heads, widths): an integer >= 1, else an error naming the file and field."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CheckpointError(f"{source}: {key} must be a positive integer, got {value!r}")
    return int(value)


def positive_float(value: Any, source: Path | str, key: str) -> float:
    """A config scale (rope theta, norm epsilon, scaling factors): a finite number > 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise CheckpointError(f"{source}: {key} must be a finite number > 0, got {value!r}")
    return number


def check_layers(names: Iterable[str], pattern: str, num_layers: int, file: Path | str,
                 config_field: str) -> None:
    """The layer indices in tensor ``names`` (``pattern``'s one group) must be exactly 0..num_layers-1.

    ``config_field`` names where ``num_layers`` came from (``config.json's num_hidden_layers``,
    ``GGUF block_count``), so either side of a mismatch can be fixed.
    """
    regex = re.compile(pattern)
    by_layer: dict[int, str] = {}
    for name in sorted(names):
        match = regex.match(name)
        if match:
            by_layer.setdefault(int(match.group(1)), name)
    held = f"the weights hold {len(by_layer)} layer(s)"
    extra = sorted(i for i in by_layer if i >= num_layers)
    if extra:
        raise CheckpointError(f"{file}: tensor {by_layer[extra[0]]} is layer {extra[0]}, but {config_field}="
                              f"{num_layers} ({held}); refusing to drop layers")
    missing = [i for i in range(num_layers) if i not in by_layer]
    if missing:
        raise CheckpointError(f"{file}: no tensors of layer {missing[0]}, but {config_field}={num_layers} ({held})")


def check_all_read(available: Iterable[str], read: set[str], file: Path | str, ignorable: Iterable[str] = ()) -> None:
    """Every tensor the checkpoint holds was read into the model, except those in ``ignorable``
    (e.g. a rotary buffer recomputed anyway): a dropped tensor is a model other than the one saved."""
    skip = set(ignorable)
    unread = sorted(n for n in available if n not in read and n not in skip and not n.endswith("rotary_emb.inv_freq"))
    if unread:
        raise CheckpointError(f"{file}: tensor {unread[0]} is not part of the model its config describes "
                              f"({len(unread)} such tensor(s)); refusing to ignore weights")


def inside_folder(folder: Path, name: Any, index: Path) -> Path:
    """The file an index entry names, refused unless it lies inside ``folder`` (after following
    symlinks). One exception: in a Hugging Face hub cache, a snapshot's files are links into the
    model's own ``blobs`` folder (``snapshots/REV/x -> ../../blobs/SHA``), which is allowed."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise CheckpointError(f"{index}: names {name!r}; index files may only name files inside the model folder")
    target = (folder / name).resolve()
    roots = [folder.resolve()]
    if folder.resolve().parent.name == "snapshots":
        roots.append(folder.resolve().parent.parent / "blobs")
    if not any(target.is_relative_to(root) for root in roots):
        raise CheckpointError(f"{index}: {name!r} resolves to {target}, outside the model folder {folder}; "
                              "index files may only name files inside it")
    return folder / name
