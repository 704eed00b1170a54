"""Saves a killed run left unfinished (``STEP.orbax-checkpoint-tmp``) are removed by the next run, and only then.

Removal is safe only while no live process may be writing one: the run folder's lock says
so, so without that lock (held elsewhere, or a filesystem that cannot lock) nothing goes.
"""

import errno
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from data_helpers import copy_run, train_command

import train as train_cli
from cea_jax import workdir as wd
from cea_jax.run_lock import run_lock
from runkit import folder_lock

ROOT = Path(__file__).resolve().parents[2]
HOLDER = Path(__file__).with_name("lock_holder_worker.py")


def _plant_unfinished_save(workdir: Path) -> Path:
    """What a save killed mid-write leaves: a full copy of a step under orbax's temporary name."""
    root = workdir / wd.CHECKPOINTS
    newest = max(int(p.name) for p in root.iterdir() if p.name.isdigit())
    unfinished = root / f"{newest + 1}.orbax-checkpoint-tmp"
    shutil.copytree(root / str(newest), unfinished)
    return unfinished


def test_the_next_run_removes_an_unfinished_save_and_nothing_else(tmp_path, capsys, caplog):
    workdir = copy_run(tmp_path)
    root = workdir / wd.CHECKPOINTS
    unfinished = _plant_unfinished_save(workdir)
    size = sum(f.stat().st_size for f in unfinished.rglob("*") if f.is_file())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the run's")
    (root / "90.orbax-checkpoint-tmp").symlink_to(outside)  # the name, but a link: never followed nor removed
    (root / "91.orbax-checkpoint-tmp").write_text("a file")  # the name, but not a folder
    for name in ("x92.orbax-checkpoint-tmp", "93.orbax-checkpoint-tmp-mine", "notes"):  # other names
        (root / name).mkdir()
    others = sorted(p.name for p in root.iterdir() if p != unfinished)
    with caplog.at_level(logging.WARNING, logger="cea_jax.checkpoint_saves"):
        code = train_cli.main(train_command(workdir))  # the same command again: the run is complete
    assert code == 0, capsys.readouterr().err
    assert not unfinished.exists()
    assert sorted(p.name for p in root.iterdir()) == others
    assert (outside / "keep.txt").read_text() == "not the run's"
    assert (f"{root}: removed {unfinished.name} ({size / 1e6:.1f} MB), a checkpoint save that never finished"
            in caplog.text)


def test_an_unfinished_save_is_kept_while_another_process_holds_the_lock(tmp_path, capsys):
    workdir = copy_run(tmp_path)
    unfinished = _plant_unfinished_save(workdir)
    holder = subprocess.Popen([sys.executable, str(HOLDER), str(workdir), "hold"], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert train_cli.main(train_command(workdir)) == 2
        assert "in use by another train.py" in capsys.readouterr().err
        wd.checkpoint_manager(workdir).close()  # a manager opened without the lock removes nothing either
        assert unfinished.is_dir()
    finally:
        holder.kill()
        holder.wait()


def test_an_unfinished_save_is_kept_where_the_filesystem_cannot_lock(tmp_path, monkeypatch):
    workdir = copy_run(tmp_path)
    unfinished = _plant_unfinished_save(workdir)

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(folder_lock.fcntl, "flock", no_locks)
    with run_lock(workdir):  # the run goes on unguarded: another train.py could be saving here
        wd.checkpoint_manager(workdir).close()
    assert unfinished.is_dir()
    monkeypatch.undo()
    with run_lock(workdir):
        wd.checkpoint_manager(workdir).close()
    assert not unfinished.exists()
