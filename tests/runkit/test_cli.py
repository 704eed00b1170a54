"""The one-line error helper shared by every command-line entry point."""

import os
import signal

import pytest

from runkit.cli import ArgumentParser, Terminated, one_line_errors, sigterm_raises


def _main_raising(error):
    @one_line_errors("tool")
    def main(argv=None):
        parser = ArgumentParser(prog="tool")
        parser.add_argument("--n", type=int, required=True)
        parser.parse_args(argv)
        raise error

    return main


@pytest.mark.parametrize("error", [ValueError("bad.png: cannot read image\n  detail"), FileNotFoundError(2, "gone"),
                                   FloatingPointError("loss became nan at step 3")])
def test_expected_errors_print_one_line_and_exit_2(capsys, error):
    assert _main_raising(error)(["--n", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tool: error: ")
    assert str(error).splitlines()[0] in err


def test_argument_errors_are_one_line_too(capsys):
    assert _main_raising(ValueError())(["--n", "x"]) == 2
    err = capsys.readouterr().err
    assert err == "tool: error: argument --n: invalid int value: 'x' (see tool --help)\n"


def test_programming_errors_keep_their_traceback():
    with pytest.raises(KeyError):
        _main_raising(KeyError("bug"))(["--n", "1"])


def test_sigterm_raises_inside_the_block_and_the_old_handler_returns():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *_: seen.append(1))
    try:
        with pytest.raises(Terminated), sigterm_raises():
            os.kill(os.getpid(), signal.SIGTERM)
        assert not seen
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [1]
    finally:
        signal.signal(signal.SIGTERM, previous)
