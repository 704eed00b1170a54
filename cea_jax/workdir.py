"""A training run's folder: its config (to rebuild the model) and its orbax checkpoints.

Layout: ``DIR/config.json`` (model preset/variant/overrides + the training settings),
``DIR/checkpoints/<step>/{state,data}`` (orbax; ``data`` is the grain iterator state),
``DIR/metrics.jsonl``. evaluate.py and restore.py need only ``--workdir`` (or
``--checkpoint DIR/checkpoints/<step>``) to rebuild the exact model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from cea_jax.configs import ModelConfig, get_config

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"


class WorkdirError(ValueError):
    """A workdir or checkpoint that cannot be used (missing, or from a different model)."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a model: ``get_config(preset, variant, **overrides)``."""

    preset: str = "tiny"
    variant: str = "cea"
    overrides: tuple[tuple[str, Any], ...] = ()

    def config(self) -> ModelConfig:
        return get_config(self.preset, self.variant, **dict(self.overrides))

    def to_json(self) -> dict[str, Any]:
        return {"preset": self.preset, "variant": self.variant, "overrides": dict(self.overrides)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        overrides = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in data["overrides"].items()))
        return cls(data["preset"], data["variant"], overrides)


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` via a temporary file + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_run_config(workdir: Path, model: ModelSpec, train: dict[str, Any]) -> None:
    """Write config.json (the resolved ModelConfig is included for people reading it)."""
    payload = {"model": model.to_json(), "train": train, "resolved_model": dataclasses.asdict(model.config())}
    atomic_write(Path(workdir) / CONFIG_FILE, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def load_run_config(workdir: Path) -> tuple[ModelSpec, dict[str, Any]]:
    """(model spec, training settings) saved by train.py in ``workdir``."""
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise WorkdirError(f"{path}: not found; is {workdir} a train.py --workdir?")
    try:
        payload = json.loads(path.read_text())
        return ModelSpec.from_json(payload["model"]), payload["train"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise WorkdirError(f"{path}: unreadable run config ({err})") from None


def checkpoint_manager(workdir: Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """Orbax manager over DIR/checkpoints with a ``state`` pytree item and a grain ``data`` item."""
    return ocp.CheckpointManager(
        Path(workdir).absolute() / CHECKPOINTS,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_handlers={"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()},
    )


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state: Any, data_iterator: Any) -> None:
    """Save model/optimizer state and the data iterator position at ``step`` (async for the arrays)."""
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator)
    ), force=True)


def restore_checkpoint(manager: ocp.CheckpointManager, abstract_state: Any, data_iterator: Any) -> Any | None:
    """Restore the latest checkpoint into ``abstract_state``'s shardings (and the iterator); None if none."""
    step = manager.latest_step()
    if step is None:
        return None
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=grain.checkpoint.CheckpointRestore(data_iterator)
    ))
    return restored["state"]


def resolve_checkpoint(workdir: str | None, checkpoint: str | None) -> tuple[Path, Path]:
    """(run folder, step folder) from ``--workdir`` (latest step) or ``--checkpoint DIR/checkpoints/<step>``."""
    if checkpoint:
        step_dir = Path(checkpoint).absolute()
        if not (step_dir / "state").is_dir():
            raise WorkdirError(f"{checkpoint}: not a checkpoint step folder (expected {checkpoint}/state)")
        run_dir = Path(workdir) if workdir else step_dir.parent.parent
        return run_dir, step_dir
    if not workdir:
        raise WorkdirError("give --workdir DIR (latest checkpoint) or --checkpoint DIR/checkpoints/STEP")
    if not (Path(workdir) / CONFIG_FILE).is_file():
        raise WorkdirError(f"{Path(workdir) / CONFIG_FILE}: not found; is {workdir} a train.py --workdir?")
    root = Path(workdir).absolute() / CHECKPOINTS
    steps = sorted(int(p.name) for p in root.glob("*") if p.name.isdigit() and (p / "state").is_dir()) \
        if root.is_dir() else []
    if not steps:
        raise WorkdirError(f"{workdir}: no checkpoints under {root}; train first with python train.py --workdir {workdir}")
    return Path(workdir), root / str(steps[-1])


def load_params(workdir: str | None = None, checkpoint: str | None = None) -> tuple[ModelConfig, Any, int]:
    """(model config, params on the default device, step) for inference."""
    run_dir, step_dir = resolve_checkpoint(workdir, checkpoint)
    spec, _ = load_run_config(run_dir)
    state = ocp.StandardCheckpointer().restore(step_dir / "state")
    params = jax.device_put(state["params"])
    return spec.config(), params, int(step_dir.name)
