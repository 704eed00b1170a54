"""A shipped model's manifest: where its files are, what it is, and a one-line description.

Standard library only: restore.py checks the name (and that the model is there) before
JAX loads, so a typo or a missing model answers at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

FOLDER_VARIABLE = "CEA_PRETRAINED_DIR"  # another folder of shipped models (tests, a private model zoo)
DEFAULT_NAME = "default"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FORMAT = 1


class PretrainedError(ValueError):
    """A shipped model that is missing, damaged or inconsistent with its manifest."""


def check_name(name: str) -> str:
    """``name`` if it can name a file in the models folder (no path separators), else PretrainedError."""
    if not NAME_PATTERN.fullmatch(name):
        raise PretrainedError(f"model name {name!r}: use letters, digits, '_', '.' or '-' "
                              "(at most 64, starting with a letter or digit)")
    return name


def models_folder() -> Path:
    """The folder of shipped models: ``$CEA_PRETRAINED_DIR`` if set, else this package's folder."""
    return Path(os.environ.get(FOLDER_VARIABLE) or Path(__file__).parent)


def manifest_path(name: str, folder: Path) -> Path:
    return Path(folder) / f"{check_name(name)}.json"


def weights_path(name: str, folder: Path) -> Path:
    return Path(folder) / f"{check_name(name)}.safetensors"


def shipped_names(folder: Path) -> list[str]:
    """Names of the models in ``folder`` (those with a manifest)."""
    return sorted(p.stem for p in Path(folder).glob("*.json")) if Path(folder).is_dir() else []


def find_manifest(name: str, folder: Path | None = None) -> Path:
    """The manifest of model ``name``; PretrainedError saying how to get one when it is not there."""
    folder = models_folder() if folder is None else Path(folder)
    path = manifest_path(name, folder)
    if path.is_file():
        return path
    others = shipped_names(folder)
    if others:
        raise PretrainedError(f"no pretrained model {name!r} in {folder} (shipped: {', '.join(others)})")
    raise PretrainedError(f"no pretrained model is shipped in {folder} yet; train one with "
                          "python train.py --workdir DIR and pass --workdir DIR, or export one with "
                          f"python -m cea_jax.pretrained.export --workdir DIR --name {name}")


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path`` (PretrainedError naming it when it is not one)."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
        if manifest["format"] != FORMAT:
            raise KeyError(f"format {manifest['format']!r}, expected {FORMAT}")
        missing = [key for key in ("weights", "weights_sha256", "model", "training") if key not in manifest]
        if missing:
            raise KeyError(f"no {missing[0]!r}")
        if not isinstance(manifest["weights"], str) or Path(manifest["weights"]).name != manifest["weights"]:
            raise KeyError(f"weights {manifest['weights']!r} is not a file name beside the manifest")
        return manifest
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise PretrainedError(f"{path}: not a pretrained-model manifest ({err}); reinstall or re-export") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe(name: str, manifest: dict[str, Any]) -> str:
    """A few words a user reads before the output: which model, which bytes, how it was trained."""
    model, training = manifest["model"], manifest["training"]
    return (f"pretrained model {name!r} (sha256 {manifest['weights_sha256'][:12]}; {model['variant']} "
            f"{model['preset']}, {training.get('checkpoint_step')} steps of batch {training.get('batch_size')} "
            f"on {training.get('crop')}px {training.get('data')} {training.get('protocol')} crops, "
            f"seed {training.get('seed')})")
