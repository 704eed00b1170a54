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
