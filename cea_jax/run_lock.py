"""One writer per run folder: an exclusive lock held while ``train.py`` runs in it.

Two trainers on one folder would both write checkpoints and metrics (every step twice). The
lock is ``DIR/.train.lock``, held with ``runkit.folder_lock`` (flock: a lock left by a killed
run is taken over, its old holder named in a warning).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from runkit.folder_lock import FolderLocked, folder_lock, holds_lock

__all__ = ["LOCK_FILE", "RunLocked", "holds_lock", "run_lock"]

LOCK_FILE = ".train.lock"
RunLocked = FolderLocked  # another live train.py holds the run folder


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (creating ``folder``); RunLocked if a live process holds it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: is a file; --workdir needs a folder (new or from train.py)")
    with folder_lock(folder, LOCK_FILE, "wait for it to finish or stop it, or use another --workdir", "train.py"):
        yield
