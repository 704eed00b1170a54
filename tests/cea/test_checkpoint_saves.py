"""A checkpoint that cannot be written (disk full) stops training with one line; earlier checkpoints stay.

The fault is injected where a full disk strikes: in orbax's background commit of the state
arrays, which then fails with ENOSPC while the training loop goes on.
"""

import dataclasses
import errno
import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from data_helpers import SMALL_TRAIN, train_command, trained_run

import train as train_cli
from cea_jax import workdir as wd
from cea_jax.checkpoint_saves import CheckedSaves, CheckpointSaveError

CONFIG = dataclasses.replace(SMALL_TRAIN, checkpoint_every=2)
FULL_AT = 4  # the save of this step finds the disk full


class _DiskFull:
    """A commit future that fails as TensorStore does when the disk is full."""

    def result(self, timeout=None):
        raise OSError(errno.ENOSPC, "No space left on device")


class _FakeManager:
    """A CheckpointManager that counts waits; its save stays in flight until ``finish``."""

    def __init__(self, directory, fail_with=None):
        self.directory, self.fail_with = directory, fail_with
        self.in_flight, self.waits = False, 0

    def save(self, step, args, force):
        self.in_flight = True

    def finish(self):
        self.in_flight = False

    def is_saving_in_progress(self):
        return self.in_flight

    def wait_until_finished(self):
        self.waits += 1
        self.in_flight = False
        if self.fail_with:
            raise self.fail_with


def test_saves_are_waited_for_once_each_and_never_with_none_in_flight(tmp_path):
    manager = _FakeManager(tmp_path)
    saves = CheckedSaves(manager)
    for _ in range(5):  # steps before any save: orbax would log "No Save Finalize thread" per wait
        saves.check()
    assert manager.waits == 0
    saves.save(2, args=None)
    saves.check()  # still being written: not waited for
    assert manager.waits == 0
    manager.finish()
    for _ in range(5):
        saves.check()
    assert manager.waits == 1
    saves.check(wait=True)
    assert manager.waits == 1


def test_a_write_failure_is_one_line_and_a_programming_error_keeps_its_type(tmp_path):
    saves = CheckedSaves(_FakeManager(tmp_path, fail_with=ValueError("ENOSPC writing a chunk")))
    saves.save(2, args=None)
    with pytest.raises(CheckpointSaveError, match="could not be written \\(ENOSPC writing a chunk\\)"):
        saves.check(wait=True)
    saves = CheckedSaves(_FakeManager(tmp_path, fail_with=KeyError("state")))
    saves.save(2, args=None)
    with pytest.raises(KeyError):
        saves.check(wait=True)


@pytest.fixture
def disk_full_at_step(monkeypatch):
    real = ocp.StandardCheckpointHandler.async_save

    async def async_save(self, directory, *args, **kwargs):
        futures = await real(self, directory, *args, **kwargs) or []
        if f"/{FULL_AT}.orbax-checkpoint-tmp" in str(directory):
            futures = [*futures, _DiskFull()]
        return futures

    monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", async_save)


@pytest.mark.slow
def test_a_failed_save_stops_training_with_one_line_and_keeps_the_previous_checkpoint(
        tmp_path, capfd, monkeypatch, disk_full_at_step):
    workdir = tmp_path / "run"
    code = train_cli.main(train_command(workdir, config=CONFIG))
    err = capfd.readouterr().err
    assert code == 2
    assert err.splitlines()[-1] == (
        f"train.py: error: {workdir.absolute() / wd.CHECKPOINTS}: a checkpoint could not be written "
        f"(No space left on device); training stopped, step 2 is the newest checkpoint and the same command "
        f"resumes from it")
    assert "Traceback" not in err and "ERROR" not in err  # none of orbax's per-thread tracebacks
    logged = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert max(logged) < CONFIG.steps  # stopped soon after the failed save, not at the end of the run
    assert wd.load_params(str(workdir))[2] == 2  # the previous checkpoint is intact and restorable

    monkeypatch.undo()  # space again: the same command resumes and ends as an uninterrupted run
    assert train_cli.main(train_command(workdir, config=CONFIG)) == 0, capfd.readouterr().err
    _, expected, _ = wd.load_params(str(trained_run()[0]))
    _, actual, step = wd.load_params(str(workdir))
    assert step == CONFIG.steps
    for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(actual), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
