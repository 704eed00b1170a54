"""One writer per run folder: an exclusive lock held while ``train.py`` runs in it.

Two trainers on one folder would both write checkpoints and metrics (every step twice).
The lock is ``DIR/.train.lock``, locked with ``flock``: the kernel releases it when its
process dies, however it dies, so a lock left by a killed run is simply taken over (and
its old holder named in a warning). The file records who holds it, for the refusal
message; it is removed when the run ends. :func:`holds_lock` tells whether this process
holds a folder's lock, so clean-ups that are safe only with no other writer can ask.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = ".train.lock"
_HELD: set[Path] = set()  # folders whose lock this process holds now (flock taken)


class RunLocked(OSError):
    """Another live process holds the run folder's lock."""


def _holder(fd: int) -> dict:
    """What the lock file says about its last holder ({} if empty or unreadable)."""
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {since})"


def _acquire(path: Path) -> int | None:
    """An open descriptor on ``path`` holding its flock (retried if the file was replaced meanwhile).

    None on a filesystem without ``flock`` (some network mounts): the run goes on unguarded,
    with a warning.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise RunLocked(f"{path.parent}: in use by another train.py ({_describe(holder)}); "
                                "wait for it to finish or stop it, or use another --workdir") from None
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                log.warning("%s: this filesystem cannot lock files; a second train.py on it would not be refused",
                            path.parent)
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # its holder removed it between our open and our lock
            same = False
        if same:
            return fd
        os.close(fd)


def holds_lock(folder: str | os.PathLike) -> bool:
    """Whether this process holds ``folder``'s lock (False where the filesystem cannot lock)."""
    return Path(folder).resolve() in _HELD


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (creating ``folder``); RunLocked if a live process holds it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: is a file; --workdir needs a folder (new or from train.py)")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = _acquire(path)
    if fd is None:
        yield
        return
    try:
        stale = _holder(fd)
        if stale:
            log.warning("%s: taking over the lock left by %s, which is no longer running", folder, _describe(stale))
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me, 0)
        _HELD.add(folder.resolve())
        yield
    finally:
        _HELD.discard(folder.resolve())
        path.unlink(missing_ok=True)  # before the unlock, so no one locks a file about to vanish
        os.close(fd)
