"""Train and score bookkeeping shared by the CEA experiments.

Each run is a train.py workdir (an interrupted run resumes from its checkpoint) and each
score a JSONL record carrying the digest of the settings it depends on. A workdir or record
made with other settings is refused, never reused: otherwise a changed ``--steps`` would
report old numbers under new settings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cea_jax.train_lib import FREE_ON_RESUME, TrainConfig, train
from cea_jax.workdir import ModelSpec, WorkdirError, check_resume
from runkit.records import SettingsMismatch, load_records, settings_digest


def run_digest(spec: ModelSpec, config: TrainConfig, scoring: Any) -> str:
    """Digest of a run's model, training and scoring settings (what its record depends on)."""
    return settings_digest({"model": spec.to_json(), "train": dataclasses.asdict(config), "test": scoring})


def check_workdir(run: dict[str, Any], workdir: Path) -> None:
    """Refuse a workdir holding another run than ``run`` (it would resume the wrong run), by train.py's rule."""
    try:
        check_resume(workdir, run["spec"], dataclasses.asdict(run["config"]), dataclasses.asdict(TrainConfig()),
                     FREE_ON_RESUME)
    except WorkdirError as err:  # its advice names train.py's flags: replaced by the runner's
        raise SettingsMismatch(f"{str(err).rsplit('; ', 1)[0]}; remove it or use another --runs") from None


def train_run(run: dict[str, Any], runs: Path, progress: bool = True) -> None:
    """Train (or resume) ``run`` in ``runs``/its name; an interrupted training is a KeyboardInterrupt."""
    workdir = runs / run["name"]
    check_workdir(run, workdir)
    last = train(workdir, run["spec"], run["config"], progress=progress)
    if last.get("interrupted"):
        raise KeyboardInterrupt


def scored_records(path: Path, runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Finished records by run name; a record whose digest differs from its planned run's is refused.

    A line cut off by a killed write is skipped with a warning, so only that run is scored again.
    """
    digests = {run["name"]: run["digest"] for run in runs}
    records = {}
    for record in load_records(path, key="name"):
        if record["name"] in digests and record.get("digest") != digests[record["name"]]:
            raise SettingsMismatch(f"{path}: {record['name']} was scored with other settings "
                                   "(digest mismatch); use another --out")
        records[record["name"]] = record
    return records
