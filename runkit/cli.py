"""One-line errors for every command-line entry point of the repository (both halves).

A user who passes a bad path, a damaged checkpoint or an unreadable image should read
one line naming the file or flag and what was expected, and get exit code 2, not a JAX
traceback. Programming errors (anything else) still raise with their traceback. A command
that saves work as it goes can turn SIGTERM into an exception (``sigterm_raises``) and say
what is saved, as it does on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

# Every error the code raises for bad input derives from one of these: WorkdirError,
# BadImageError, DataLayoutError, CheckpointError (ValueError); missing or unwritable
# paths (OSError); a diverged run (FloatingPointError).
EXPECTED_ERRORS = (ValueError, OSError, ArithmeticError)

Main = Callable[[Sequence[str] | None], int | None]


class UsageError(ValueError):
    """A bad command-line argument (argparse's own complaint, as one line)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with errors raised as UsageError, so they print as one line like every other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def one_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def one_line_errors(prog: str) -> Callable[[Main], Callable[[Sequence[str] | None], int]]:
    """Decorate ``main(argv) -> exit code``: an expected error prints ``prog: error: ...`` and returns 2."""

    def decorate(main: Main) -> Callable[[Sequence[str] | None], int]:
        @functools.wraps(main)
        def run(argv: Sequence[str] | None = None) -> int:
            try:
                return main(argv) or 0
            except EXPECTED_ERRORS as err:
                print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
                return 2

        return run

    return decorate


class Terminated(BaseException):
    """SIGTERM as an exception, so a command ends as on Ctrl-C (saying what is saved) instead of silently."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated in the main thread; the previous handler after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
