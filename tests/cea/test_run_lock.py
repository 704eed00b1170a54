"""One train.py per run folder: a second one is refused in one line; a dead holder's lock is taken over."""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from data_helpers import copy_run, snapshot, train_command, trained_run

import train as train_cli
from cea_jax.run_lock import LOCK_FILE, RunLocked, run_lock

ROOT = Path(__file__).resolve().parents[2]
HOLDER = Path(__file__).with_name("lock_holder_worker.py")


def _hold(folder: Path, how: str) -> subprocess.Popen:
    """A process holding ``folder``'s lock (``how``: "hold" until killed, "die" at once by SIGKILL)."""
    proc = subprocess.Popen([sys.executable, str(HOLDER), str(folder), how], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_train_on_a_locked_workdir_is_refused_in_one_line(tmp_path, capsys):
    workdir = copy_run(tmp_path)
    holder = _hold(workdir, "hold")
    try:
        before = snapshot(workdir)
        code = train_cli.main(train_command(workdir))
        err = capsys.readouterr().err
        assert snapshot(workdir) == before  # nothing written: no config, metrics or checkpoint
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"train.py: error: {workdir}: in use by another train.py (pid {holder.pid} on ")


def test_a_lock_left_by_a_killed_run_is_taken_over_and_removed_after(tmp_path, caplog):
    holder = _hold(tmp_path, "die")
    assert holder.wait() == -signal.SIGKILL and (tmp_path / LOCK_FILE).is_file()
    with caplog.at_level(logging.WARNING, logger="cea_jax.run_lock"):
        with run_lock(tmp_path):
            with pytest.raises(RunLocked, match="in use by another train.py"):
                with run_lock(tmp_path):
                    pass
    assert f"taking over the lock left by pid {holder.pid} " in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_finished_run_leaves_no_lock():
    assert not (trained_run()[0] / LOCK_FILE).exists()
