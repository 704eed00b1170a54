"""A training run's folder: its config (to rebuild the model) and its orbax checkpoints.

Layout: ``DIR/config.json`` (model preset/variant/overrides + the training settings),
``DIR/checkpoints/<step>/{state,data,digest}`` (orbax; ``data`` is the grain iterator
state, ``digest`` a SHA-256 per state tensor), ``DIR/metrics.jsonl``. evaluate.py and
restore.py need only ``--workdir`` (or ``--checkpoint DIR/checkpoints/<step>``) to
rebuild the exact model.

``config.json`` also keeps the history of training settings per step range
(``history``: ``[{"from_step": N, "train": {...}}, ...]``); one written before histories
existed (a single ``train``) reads as a one-entry history from step 0.

Checkpoints restore into abstract targets carrying the current devices' shardings, so a
run saved on a TPU slice loads on a laptop. A step that cannot be read, whose tensors
do not match their digest or whose parameters are not those of the model in
``config.json`` (another program's checkpoint, another variant) is skipped with a warning
for the newest step that is fine; non-finite weights are an error, never a silent NaN model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from cea_jax.checkpoint_saves import remove_unfinished_saves
from cea_jax.configs import ModelConfig, get_config
from cea_jax.model_overrides import check_override
from cea_jax.run_lock import holds_lock
from cea_jax.summary import abstract_params
from runkit.files import atomic_write

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"


class WorkdirError(ValueError):
    """A workdir or checkpoint that cannot be used (missing, or from a different model)."""


class CorruptCheckpoint(WorkdirError):
    """A checkpoint step that cannot be read back, or reads back other bytes than were saved."""


def _freeze(value: Any) -> Any:
    """JSON lists -> tuples (recursively), so an override compares equal after a round trip."""
    return tuple(_freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a model: ``get_config(preset, variant, **overrides)``."""

    preset: str = "tiny"
    variant: str = "cea"
    overrides: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        # One canonical form (sorted keys, tuples for lists): what config.json gives back.
        object.__setattr__(self, "overrides", tuple(sorted((k, _freeze(v)) for k, v in dict(self.overrides).items())))

    def config(self) -> ModelConfig:
        return get_config(self.preset, self.variant, **dict(self.overrides))

    def to_json(self) -> dict[str, Any]:
        return {"preset": self.preset, "variant": self.variant, "overrides": dict(self.overrides)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(data["preset"], data["variant"], tuple(data["overrides"].items()))


def _json(value: Any) -> Any:
    """``value`` as config.json gives it back (tuples as lists)."""
    return json.loads(json.dumps(value))


def _read_payload(workdir: Path) -> dict[str, Any]:
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise WorkdirError(f"{path}: not found; is {workdir} a train.py --workdir?")
    try:
        payload = json.loads(path.read_text())
        ModelSpec.from_json(payload["model"])
        if not isinstance(payload["train"], dict):
            raise TypeError("'train' is not an object")
        for key, value in payload["model"]["overrides"].items():  # a hand edit gets --set's type check
            check_override(key, value, source="override")
        return payload
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as err:
        raise WorkdirError(f"{path}: unreadable run config ({err})") from None


def load_run_config(workdir: Path) -> tuple[ModelSpec, dict[str, Any]]:
    """(model spec, training settings now in force) saved by train.py in ``workdir``."""
    payload = _read_payload(workdir)
    return ModelSpec.from_json(payload["model"]), payload["train"]


def settings_history(workdir: Path) -> list[dict[str, Any]]:
    """``[{"from_step": N, "train": settings}, ...]``, oldest first: the settings each step range ran with."""
    payload = _read_payload(workdir)
    return payload.get("history") or [{"from_step": 0, "train": payload["train"]}]


def setting_changes(saved: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any]) -> dict[str, tuple]:
    """{name: (saved, current)} for each setting of ``current`` that differs from ``saved``.

    A setting ``saved`` lacks (added to the code after that run started) counts as its default.
    """
    current = _json(current)
    return {k: (saved.get(k, _json(defaults.get(k))), v) for k, v in current.items()
            if saved.get(k, _json(defaults.get(k))) != v}


def save_run_config(workdir: Path, model: ModelSpec, train: dict[str, Any], from_step: int = 0,
                    defaults: dict[str, Any] | None = None) -> None:
    """Write config.json: the model, the settings in force from ``from_step`` on, and their history.

    History entries from ``from_step`` on are replaced (those steps run again); ``train`` is
    appended unless it equals the entry still in force. The resolved ModelConfig is included
    for people reading the file.
    """
    history = settings_history(workdir) if (Path(workdir) / CONFIG_FILE).is_file() else []
    history = [entry for entry in history if entry["from_step"] < from_step]
    if not history or setting_changes(history[-1]["train"], train, defaults or {}):
        history.append({"from_step": from_step, "train": train})
    payload = {"model": model.to_json(), "train": train, "history": history,
               "resolved_model": dataclasses.asdict(model.config())}
    atomic_write(Path(workdir) / CONFIG_FILE, json.dumps(payload, indent=2, sort_keys=True) + "\n", durable=True)


def check_resume(workdir: Path, spec: ModelSpec, train: dict[str, Any], defaults: dict[str, Any],
                 free: Collection[str] = (), allow_changed: bool = False) -> None:
    """Refuse (WorkdirError) to train in ``workdir`` when that would mix two runs, before writing anything.

    Refused: checkpoints without config.json (another program's, or a run whose config was
    lost); a run of another model; a run trained with other settings, unless ``allow_changed``
    (settings named in ``free`` do not change what is learnt and may change).
    """
    workdir = Path(workdir)
    if not (workdir / CONFIG_FILE).is_file():
        root = workdir / CHECKPOINTS
        if root.is_dir() and any(root.iterdir()):
            raise WorkdirError(f"{root} holds checkpoints but {workdir / CONFIG_FILE} is missing (not a train.py run, "
                               "or its config was deleted); use another --workdir")
        return
    saved, saved_train = load_run_config(workdir)
    if saved != spec:
        raise WorkdirError(f"{workdir} holds a run of {saved.to_json()}, not {spec.to_json()}; use another --workdir")
    changed = {k: v for k, v in setting_changes(saved_train, train, defaults).items() if k not in free}
    if not changed:
        return
    text = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
    if not allow_changed:
        raise WorkdirError(f"{workdir} was trained with other settings ({text}); resume with the saved ones "
                           f"(see {CONFIG_FILE}), or add --allow-changed-settings to go on with these")
    log.warning("%s: going on with changed settings (%s); %s records them", workdir, text, CONFIG_FILE)


def _manager(root: Path, options: ocp.CheckpointManagerOptions) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(root, options=options, item_handlers={
        "state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler(),
        "digest": ocp.JsonCheckpointHandler(),
    })


class _DropReadOnlyNotice(logging.Filter):
    """Drops orbax's notice that a read-only manager's directory is read only: the caller asked for exactly that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Given directory is read only")


def _read_only_manager(root: Path) -> ocp.CheckpointManager:
    """A manager that never writes to the run (inference), without orbax's warnings about it.

    ``save_interval_steps=0`` is what read-only implies (orbax warns when it has to set it
    itself); its notice that the directory is read only has no option, so only that record
    is filtered, only while the manager is built.
    """
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
    absl_logger, notice = logging.getLogger("absl"), _DropReadOnlyNotice()
    absl_logger.addFilter(notice)
    try:
        return _manager(root, options)
    finally:
        absl_logger.removeFilter(notice)


def checkpoint_manager(workdir: Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """Orbax manager over DIR/checkpoints: a ``state`` pytree, a grain ``data`` item and a ``digest``.

    Saves a killed run left unfinished are removed first, but only by the holder of the
    folder's lock (train.py's host 0), so never a save another live process is writing.
    """
    root = Path(workdir).absolute() / CHECKPOINTS
    if holds_lock(workdir):
        remove_unfinished_saves(root)
    return _manager(root, ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def _leaf_name(path: tuple[Any, ...]) -> str:
    """``opt_state.0.mu.params.w``: the same name whether a node is a namedtuple, a dict or a list."""
    return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _to_host(leaf: Any) -> np.ndarray:
    """A replicated array's local copy (every host holds one, even when the array spans several hosts)."""
    if isinstance(leaf, jax.Array) and leaf.sharding.is_fully_replicated:
        return np.asarray(leaf.addressable_data(0))
    return np.asarray(leaf)


def _host_leaves(state: Any) -> list[tuple[str, np.ndarray]]:
    return [(_leaf_name(path), _to_host(leaf)) for path, leaf in jax.tree_util.tree_leaves_with_path(state)]


def state_digest(state: Any) -> dict[str, str]:
    """SHA-256 of every tensor's dtype, shape and bytes, by leaf name (the checkpoint's checksum)."""
    digest = {}
    for name, array in _host_leaves(state):
        h = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).tobytes())
        digest[name] = h.hexdigest()
    return digest


def checkpoint_args(state: Any, data_iterator: Any) -> ocp.args.Composite:
    """What a checkpoint holds: model/optimizer state, its digest and the data iterator position."""
    return ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
        digest=ocp.args.JsonSave({"sha256": state_digest(state)}),
    )


def _verified_restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any, data_iterator: Any) -> Any:
    """Restore one step; CorruptCheckpoint if unreadable or its bytes differ from the digest saved with it."""
    has_digest = (Path(manager.directory) / str(step) / "digest").is_dir()
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if has_digest:
        items["digest"] = ocp.args.JsonRestore()
    if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as err:  # orbax/TensorStore raise many types for a damaged step
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CorruptCheckpoint(f"checkpoint step {step} is unreadable ({detail})") from None
    state = restored["state"]
    if has_digest:
        saved = restored["digest"]["sha256"]
        actual = state_digest(state)
        bad = sorted(name for name in saved.keys() | actual.keys() if saved.get(name) != actual.get(name))
        if bad:
            raise CorruptCheckpoint(f"checkpoint step {step} fails its checksum ({len(bad)} tensors, e.g. {bad[0]})")
    else:
        log.warning("checkpoint step %d has no digest (written by an older version): not verified", step)
    bad = [name for name, array in _host_leaves(state)
           if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all()]
    if bad:
        raise WorkdirError(f"{manager.directory}: checkpoint step {step} holds non-finite weights ({bad[0]}); "
                           "resume from an earlier --checkpoint or retrain with a lower --lr")
    return state


def _layout(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    return {_leaf_name(path): (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _saved_state_metadata(manager: ocp.CheckpointManager, step: int, expected_params: Any) -> Any:
    """The step's saved state metadata; CorruptCheckpoint unless its params have ``expected_params``' names and shapes.

    Read before any tensor: another program's checkpoint, or a checkpoint of another
    variant, is told apart from the model config.json describes without loading it.
    """
    try:
        tree = manager.item_metadata(step)["state"].tree
    except Exception as err:  # a damaged metadata file is a damaged step
        raise CorruptCheckpoint(f"checkpoint step {step} has unreadable metadata ({type(err).__name__})") from None
    if not isinstance(tree, dict) or "params" not in tree:
        raise CorruptCheckpoint(f"checkpoint step {step} holds no model parameters (not written by train.py)")
    saved, wanted = _layout(tree["params"]), _layout(expected_params)
    differ = sorted(name for name in saved.keys() | wanted.keys() if saved.get(name) != wanted.get(name))
    if differ:
        raise CorruptCheckpoint(f"checkpoint step {step} holds another model than {CONFIG_FILE} describes "
                                f"({len(differ)} parameters differ, e.g. {differ[0]})")
    return tree


def restore_newest_valid(manager: ocp.CheckpointManager, expected_params: Any, abstract_state: Any | None = None,
                         data_iterator: Any = None, steps: list[int] | None = None) -> tuple[Any, int] | None:
    """(state, step) of the newest step that reads back intact, warning about each skipped one; None if none.

    ``abstract_state`` carries the target shardings; None builds one from the checkpoint's
    own metadata, placed on the default device (for inference). A step whose parameters are
    not shaped as ``expected_params`` is skipped like a damaged one.
    """
    steps = sorted(manager.all_steps() if steps is None else steps, reverse=True)
    problems = []
    for step in steps:
        try:
            tree = _saved_state_metadata(manager, step, expected_params)
            target = abstract_state if abstract_state is not None else _abstract_from_metadata(tree)
            return _verified_restore(manager, step, target, data_iterator), step
        except CorruptCheckpoint as err:
            problems.append(str(err))
            if step != steps[-1]:
                log.warning("%s; falling back to the previous step", err)
    if problems:
        raise WorkdirError(f"{manager.directory}: no intact checkpoint ({'; '.join(problems)})")
    return None


def restore_checkpoint(manager: ocp.CheckpointManager, abstract_state: Any, data_iterator: Any) -> Any | None:
    """Restore the newest intact checkpoint into ``abstract_state``'s shardings (and the iterator); None if none.

    Damaged newer steps are renamed ``<step>.corrupt-<time>`` (kept for inspection), so the
    resumed run can write those steps again.
    """
    found = restore_newest_valid(manager, abstract_state["params"], abstract_state, data_iterator)
    if found is None:
        return None
    newer = [s for s in manager.all_steps() if s > found[1]]
    if newer and jax.process_index() == 0:
        for step in newer:
            path = Path(manager.directory) / str(step)
            path.rename(path.with_name(f"{step}.corrupt-{time.time_ns()}"))
    if newer:
        manager.reload()
    return found[0]


def _abstract_from_metadata(tree: Any) -> Any:
    """The saved state metadata ``tree`` as ShapeDtypeStructs on this process's default device."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)


def resolve_checkpoint(workdir: str | None, checkpoint: str | None) -> tuple[Path, Path]:
    """(run folder, step folder) from ``--workdir`` (latest step) or ``--checkpoint DIR/checkpoints/<step>``."""
    if checkpoint:
        step_dir = Path(checkpoint).absolute()
        if not step_dir.name.isdigit() or not (step_dir / "state").is_dir():
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
        raise WorkdirError(f"{workdir}: no checkpoints under {root}; "
                           f"train first with python train.py --workdir {workdir}")
    return Path(workdir), root / str(steps[-1])


def load_params(workdir: str | None = None, checkpoint: str | None = None) -> tuple[ModelConfig, Any, int]:
    """(model config, params on the default device, step) for inference.

    With ``--workdir`` the newest intact step is used (damaged newer ones are skipped with
    a warning); an explicit ``--checkpoint`` step is used or refused, never replaced.
    """
    run_dir, step_dir = resolve_checkpoint(workdir, checkpoint)
    spec, _ = load_run_config(run_dir)
    config = spec.config()
    manager = _read_only_manager(step_dir.parent)
    try:
        state, step = restore_newest_valid(manager, abstract_params(config),
                                           steps=[int(step_dir.name)] if checkpoint else None)
    finally:
        manager.close()
    return config, state["params"], step
