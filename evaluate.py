"""Evaluate either half of the project: ``python evaluate.py --task ruler|longbench|aio3|aio5|cdd11|mixed``.

The ``--task`` flag picks the half; every other flag belongs to that half's own parser
(``python evaluate.py --task ruler --help`` lists them).
"""

from __future__ import annotations

import sys

from runkit.cli import ArgumentParser, one_line_errors

LLM_TASKS = ("ruler", "longbench")
RESTORATION_TASKS = ("aio3", "aio5", "cdd11", "mixed")


@one_line_errors("evaluate.py")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser(prog="evaluate.py", description=__doc__, add_help=False)
    parser.add_argument("--task", required=True, choices=LLM_TASKS + RESTORATION_TASKS)
    known, rest = parser.parse_known_args(argv)
    if known.task in LLM_TASKS:
        from prophetkv_jax.evaluation import main as run
    else:
        from cea_jax.evaluation import main as run
    return run(["--task", known.task, *rest])


if __name__ == "__main__":
    sys.exit(main())
