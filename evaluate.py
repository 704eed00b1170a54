"""Evaluate either half of the project: ``python evaluate.py --task ruler|longbench|aio3|aio5|cdd11|mixed``.

The ``--task`` flag picks the half; every other flag belongs to that half's own parser
(``python evaluate.py --task ruler --help`` lists them; ``python evaluate.py --help`` lists both).
"""

from __future__ import annotations

import argparse
import sys

from runkit.cli import ArgumentParser, one_line_errors

LLM_TASKS = ("ruler", "longbench")
RESTORATION_TASKS = ("aio3", "aio5", "cdd11", "mixed")


def full_help(parser: argparse.ArgumentParser) -> str:
    """This parser's help followed by each half's flags (their parsers load no JAX)."""
    from cea_jax import evaluation as restoration
    from prophetkv_jax import evaluation as llm

    halves = [(LLM_TASKS, llm.build_parser()), (RESTORATION_TASKS, restoration.build_parser())]
    parts = [parser.format_help()]
    for tasks, half in halves:
        half.description = None  # the halves' docstrings repeat the overview above
        parts.append(f"\nflags with --task {'|'.join(tasks)}:\n\n{half.format_help()}")
    return "".join(parts)


@one_line_errors("evaluate.py")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser(prog="evaluate.py", description=__doc__, add_help=False,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=LLM_TASKS + RESTORATION_TASKS, help="the benchmark, and so the half")
    parser.add_argument("-h", "--help", action="store_true", help="show this help (both halves' flags) and exit")
    known, rest = parser.parse_known_args(argv)
    if known.task is None:
        if known.help:
            print(full_help(parser))
            return 0
        parser.error("the following arguments are required: --task")
    if known.task in LLM_TASKS:
        from prophetkv_jax.evaluation import main as run
    else:
        from cea_jax.evaluation import main as run
    return run(["--task", known.task, *rest, *(["--help"] if known.help else [])])


if __name__ == "__main__":
    sys.exit(main())
