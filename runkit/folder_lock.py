"""One writer per output folder: an exclusive lock held while a command writes into it.

Two runs with different settings appending to one folder at once would both pass the
settings check (the folder is empty when each starts) and interleave their records, so the
tables on disk would match no reproducible run. The lock is a file in the folder locked
with ``flock``: the kernel releases it when its process dies, however it dies, so a lock
left by a killed run is simply taken over (its old holder named in a warning). The file
records who holds it, for the refusal message, and is removed when the run ends.
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

_HELD: set[Path] = set()  # folders whose lock this process holds now (flock taken)


class FolderLocked(OSError):
    """Another live process holds the folder's lock."""


def _holder(fd: int) -> dict:
    """What the lock file says about its last holder ({} if empty or unreadable)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {since})"


def _acquire(path: Path, refusal: str, program: str | None) -> int | None:
    """An open descriptor on ``path`` holding its flock (retried if the file was replaced meanwhile);
    None on a filesystem without ``flock``, with a warning. Never opened through a link."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise OSError(f"{path}: a symbolic link, not a lock file; remove it") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                who = f"another {program} ({_describe(holder)})" if program else _describe(holder)
                raise FolderLocked(f"{path.parent}: in use by {who}; {refusal}") from None
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                log.warning("%s: this filesystem cannot lock files; a second %s on it would not be refused",
                            path.parent, program or "run")
                return None
            raise
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # its holder removed it between our open and our lock
            same = False
        if same:
            return fd
        os.close(fd)


def holds_lock(folder: str | os.PathLike) -> bool:
    """Whether this process holds ``folder``'s lock (False where the filesystem cannot lock), so clean-ups
    that are safe only with no other writer can ask."""
    return Path(folder).resolve() in _HELD


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, lock_name: str, refusal: str, program: str | None = None) -> Iterator[None]:
    """Hold ``folder/lock_name`` for the block (creating ``folder``); FolderLocked, whose message
    names ``program`` and ends with ``refusal`` (what to do instead), if a live process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / lock_name
    fd = _acquire(path, refusal, program)
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
