"""Load a shipped model, verified: the file's SHA-256 against its manifest, every tensor against the model.

A damaged or swapped weights file, or a manifest edited to describe another model, is
refused in one line naming the file; a model that loads is exactly the one exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
from safetensors.numpy import load as load_safetensors

from cea_jax.configs import ModelConfig
from cea_jax.pretrained.manifest import (
    DEFAULT_NAME,
    PretrainedError,
    find_manifest,
    read_manifest,
    sha256_hex,
)
from cea_jax.pretrained.tensors import tensors_to_variables
from cea_jax.summary import abstract_params
from cea_jax.workdir import ModelSpec


def load_pretrained(name: str = DEFAULT_NAME, folder: str | Path | None = None) -> tuple[ModelConfig, Any, dict]:
    """(model config, variables on the default device, manifest) of shipped model ``name``.

    ``folder`` defaults to ``$CEA_PRETRAINED_DIR`` or the package's own folder.
    """
    path = find_manifest(name, None if folder is None else Path(folder))
    manifest = read_manifest(path)
    weights = path.parent / manifest["weights"]
    try:
        data = weights.read_bytes()
    except OSError as err:
        raise PretrainedError(f"{weights}: cannot read ({err.strerror or err}); reinstall or re-export") from None
    digest = sha256_hex(data)
    if digest != manifest["weights_sha256"]:
        raise PretrainedError(f"{weights}: weights sha256 {digest[:16]}... does not match manifest "
                              f"{path.name} ({str(manifest['weights_sha256'])[:16]}...); reinstall or re-export")
    try:
        config = ModelSpec.from_json(manifest["model"]).config()
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise PretrainedError(f"{path}: its model config cannot be rebuilt ({err}); reinstall or re-export") from None
    try:
        tensors = load_safetensors(data)
    except Exception as err:  # safetensors raises its own error types for a malformed header
        raise PretrainedError(f"{weights}: not a safetensors file ({err}); reinstall or re-export") from None
    variables = tensors_to_variables(tensors, abstract_params(config), str(weights))
    return config, jax.device_put(variables), manifest
