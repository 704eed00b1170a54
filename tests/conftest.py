"""Suite-wide set-up: JAX's persistent compilation cache, outside the repository.

Compilation, not execution, dominates these tests on a 2-core CPU; the cache lets a second
run (and the subprocesses the tests start, which inherit the environment) skip it. The cache
is keyed by the compiled program and JAX's version, so it can never serve a stale program.
"""

import errno
import os
from pathlib import Path
from typing import Any, Callable

import pytest

_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cea-prophetkv-jax" / "jax"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE_DIR))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


def _inside(path: Any, folder: Path) -> bool:
    where = Path(os.path.abspath(os.fsdecode(path)))
    return where == folder or folder in where.parents


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], Path]:
    """read_only(folder): make ``folder`` refuse new files and folders, even for root.

    Root ignores folder permissions (and CI runs as root), so a chmod alone would let the
    write succeed there. Besides the chmod, the calls that create entries, ``os.open`` with
    a write flag and ``os.mkdir``, raise PermissionError inside the folder as they would for
    a user; tempfile and pathlib create files and folders through them.
    """
    folders: list[Path] = []
    real_open, real_mkdir = os.open, os.mkdir
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def refuse(path: Any) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    def guarded_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & writes and any(_inside(path, folder) for folder in folders):
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        # The folder itself exists already (mkdir(exist_ok=True) on it must still succeed).
        if any(_inside(path, folder) and Path(os.path.abspath(os.fsdecode(path))) != folder for folder in folders):
            refuse(path)
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        folders.append(Path(os.path.abspath(folder)))
        return folder

    return make
