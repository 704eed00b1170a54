"""The command every experiment's report shares: write its results page(s) from the committed records."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

WritePages = Callable[[Path], list[Path]]


def page_command(doc: str | None, here: Path, write_pages: WritePages,
                 when_empty: str | None = None) -> Callable[[list[str] | None], int]:
    """``main(argv)`` for ``python -m experiments.NAME.report [--out DIR]`` (default: the experiment's folder).

    ``when_empty`` is printed when there were no records to write a page from.
    """

    def main(argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--out", type=Path, default=here, help="where the pages and figures go (default: here)")
        pages = write_pages(parser.parse_args(argv).out)
        for page in pages:
            print(f"wrote {page}")
        if not pages and when_empty:
            print(when_empty)
        return 0

    return main


def between_marks(text: str, marks: tuple[str, str], body: str, where: Path) -> str:
    """``text`` with what lies between its two ``marks`` (each present once) replaced by ``body``:
    a README's generated block."""
    start, end = marks
    if text.count(start) != 1 or text.count(end) != 1:
        raise SystemExit(f"{where}: expected the marks {start!r} and {end!r} once each")
    head, rest = text.split(start)
    return head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1]
