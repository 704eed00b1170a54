"""The README stays an index a newcomer can read, and no page links to a file that is not there."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCED_CODE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def relative_link_targets(page: Path) -> list[str]:
    """Targets of the page's inline links that point into the repository (code blocks are not links)."""
    text = FENCED_CODE.sub("", page.read_text(encoding="utf-8"))
    targets = []
    for target in INLINE_LINK.findall(text):
        path = target.split("#", 1)[0]
        if path and not EXTERNAL.match(path):
            targets.append(path)
    return targets


def test_readme_is_short_enough_to_be_an_index():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files_in_the_tree(page):
    missing = [target for target in relative_link_targets(page) if not (page.parent / target).exists()]
    assert missing == [], f"{page.relative_to(ROOT)} links to missing files"


def test_links_are_found_in_text_but_not_in_code_blocks(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "See [usage](docs/usage.md#train), ![figure](fig.png \"title\") and [site](https://example.org).\n"
        "```\n[not a link](nowhere.md)\n```\n[anchor only](#section)\n",
        encoding="utf-8",
    )
    assert relative_link_targets(page) == ["docs/usage.md", "fig.png"]
