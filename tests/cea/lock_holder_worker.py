"""Run by test_run_lock.py as a second process that holds a run folder's lock.

Usage: python lock_holder_worker.py FOLDER hold|die

Prints "locked" once the lock is held. "hold" then sleeps until the test kills it; "die"
kills itself with SIGKILL, so no clean-up runs and the lock file stays behind, as after a
crashed train.py.
"""

import os
import signal
import sys
import time

from cea_jax.run_lock import run_lock


def main(folder: str, how: str) -> None:
    with run_lock(folder):
        print("locked", flush=True)
        if how == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(120)


if __name__ == "__main__":
    main(*sys.argv[1:])
