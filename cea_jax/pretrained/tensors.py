"""A model's variables as a flat ``{"params.enc.kernel": array}`` table (a safetensors file's content) and back.

Names are the variables' dict keys joined with dots. Reading back maps the table onto the
abstract variables of the model the manifest describes, so every name, shape and dtype is
checked against that model, and a key that itself holds a dot cannot be split wrongly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import traverse_util

from cea_jax.pretrained.manifest import PretrainedError


def _flat(tree: Any) -> dict[tuple[str, ...], Any]:
    return traverse_util.flatten_dict(dict(tree))


def flat_tensors(variables: Any) -> dict[str, np.ndarray]:
    """Every variable as a contiguous host array, by dotted name (scalars stay 0-d: ascontiguousarray would not)."""
    return {".".join(key): np.asarray(leaf, order="C") for key, leaf in _flat(variables).items()}


def tensors_to_variables(tensors: dict[str, np.ndarray], abstract: Any, where: str) -> Any:
    """The variables pytree of ``abstract``'s structure filled from ``tensors``.

    PretrainedError naming ``where`` unless the tensors are exactly the model's (names,
    shapes, dtypes), or when one holds a NaN or an infinity (never a silent NaN model).
    """
    wanted = {".".join(key): (key, leaf) for key, leaf in _flat(abstract).items()}
    differ = sorted(name for name in wanted.keys() | tensors.keys()
                    if name not in tensors or name not in wanted
                    or (tensors[name].shape, tensors[name].dtype) != (wanted[name][1].shape, wanted[name][1].dtype))
    if differ:
        name = differ[0]
        found = f"{tensors[name].dtype}{list(tensors[name].shape)}" if name in tensors else "missing"
        expected = f"{wanted[name][1].dtype}{list(wanted[name][1].shape)}" if name in wanted else "not in the model"
        raise PretrainedError(f"{where}: the weights are not those of the model the manifest describes "
                              f"({len(differ)} tensors differ, e.g. {name}: {found} in the file, {expected}); "
                              "reinstall or re-export")
    bad = [name for name, array in tensors.items()
           if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all()]
    if bad:
        raise PretrainedError(f"{where}: non-finite weights ({bad[0]}); re-export from an intact checkpoint")
    return traverse_util.unflatten_dict({key: tensors[name] for name, (key, _) in wanted.items()})
