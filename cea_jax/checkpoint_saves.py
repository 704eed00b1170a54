"""Checkpoint saves that fail (a full disk, a lost mount) stop training with one line.

Orbax writes a checkpoint's arrays in background threads while training goes on. When
such a write fails, orbax logs a traceback from each of its threads (hundreds of lines)
and the error only surfaces at the next save, after more steps whose work would be lost
with it. Here the run checks a save once it has been written, stops at once with one
line naming the folder and the newest checkpoint that was written, and orbax's own error
logs are left out (the one line carries their cause). A failed or interrupted save leaves
only a ``STEP.orbax-checkpoint-tmp`` folder (as large as a checkpoint), so the previous
checkpoints stay restorable and the same command resumes from them; the next run removes
such folders before it saves (:func:`remove_unfinished_saves`), as orbax would only replace
one when it saves that very step again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import orbax.checkpoint as ocp

from runkit.cli import one_line

log = logging.getLogger(__name__)

# The folder orbax writes a step into before renaming it to the step number (only that name).
UNFINISHED_SAVE = re.compile(r"[0-9]+\.orbax-checkpoint-tmp")


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; training stopped."""


class _DropOrbaxErrors(logging.Filter):
    """Drop orbax's ERROR records (tracebacks of its save threads); the run reports the cause itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or "orbax" not in record.pathname


def _written_steps(directory: Path) -> list[int]:
    """Steps whose checkpoint was finalised (orbax renames a step's folder to its number when complete)."""
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def _save_failed(manager: ocp.CheckpointManager, err: BaseException) -> CheckpointSaveError:
    directory = Path(manager.directory)
    cause = err.strerror if isinstance(err, OSError) and err.strerror else one_line(err).rsplit(": ", 1)[-1]
    steps = _written_steps(directory)
    kept = (f"step {steps[-1]} is the newest checkpoint and the same command resumes from it" if steps
            else "no checkpoint was written")
    return CheckpointSaveError(f"{directory}: a checkpoint could not be written ({cause[:200]}); "
                               f"training stopped, {kept}")


def remove_unfinished_saves(directory: Path) -> None:
    """Delete the ``STEP.orbax-checkpoint-tmp`` folders in ``directory``, with a warning naming each.

    Only for a caller that holds the run folder's lock: then no live process is writing a
    save there, and such a folder is what a killed or failed save left. Only real folders
    with exactly that name are removed (never a link, a file or another name).
    """
    if not directory.is_dir():
        return
    for entry in os.scandir(directory):
        if UNFINISHED_SAVE.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            size = sum(f.stat().st_size for f in Path(entry.path).rglob("*") if f.is_file() and not f.is_symlink())
            shutil.rmtree(entry.path)
            log.warning("%s: removed %s (%.1f MB), a checkpoint save that never finished", directory, entry.name,
                        size / 1e6)


# What orbax and TensorStore raise for a failed write (OSError, ValueError for ENOSPC); other
# errors are programming errors and keep their traceback.
WRITE_ERRORS = (OSError, ValueError)


@contextlib.contextmanager
def save_errors(manager: ocp.CheckpointManager) -> Iterator[None]:
    """Turn a write failure of the block (an orbax save, or a wait for one) into CheckpointSaveError.

    ``manager.save`` first waits for the previous save, so it is where a failed background
    write often surfaces.
    """
    try:
        yield
    except WRITE_ERRORS as err:
        raise _save_failed(manager, err) from None


class CheckedSaves:
    """Saves through ``manager``; each one's background write is checked once it has finished.

    Only a save issued and not yet checked is waited for: waiting with none in flight would
    cost an orbax log line per training step. (Orbax's own ``check_for_errors`` misses these
    failures: its finalising thread takes the error.)
    """

    def __init__(self, manager: ocp.CheckpointManager) -> None:
        self.manager = manager
        self.pending = False  # a save was issued and its outcome not yet checked

    def save(self, step: int, args: ocp.args.CheckpointArgs) -> None:
        """Start saving ``args`` at ``step``; raise CheckpointSaveError if it (or the previous save) failed."""
        with save_errors(self.manager):
            self.manager.save(step, args=args, force=True)
        self.pending = True

    def check(self, wait: bool = False) -> None:
        """Raise CheckpointSaveError if the pending save failed (``wait``: wait for it to finish first).

        Without ``wait`` this never blocks: a save still being written is checked on a later call.
        """
        if self.pending and (wait or not self.manager.is_saving_in_progress()):
            with save_errors(self.manager):
                self.manager.wait_until_finished()  # re-raises the error of a finished save that failed
            self.pending = False


@contextlib.contextmanager
def saving(manager: ocp.CheckpointManager) -> Iterator[ocp.CheckpointManager]:
    """Use ``manager`` for the block and close it after; orbax's error logs are dropped meanwhile.

    Closing waits for a pending save: its failure is raised as CheckpointSaveError, unless
    the block already failed (then the block's error is the one reported).
    """
    absl_logger = logging.getLogger("absl")
    quiet = _DropOrbaxErrors()
    absl_logger.addFilter(quiet)
    try:
        try:
            yield manager
        except BaseException:
            with contextlib.suppress(Exception):
                manager.close()
            raise
        with save_errors(manager):
            manager.close()
    finally:
        absl_logger.removeFilter(quiet)
