"""benchmarks/ and experiments/ are packages run as modules: no sys.path edits (circles: tests/test_house.py)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TREES = ("benchmarks", "experiments")


@pytest.mark.parametrize("tree", TREES)
def test_every_folder_is_a_package_and_no_file_edits_sys_path(tree):
    for folder in [ROOT / tree, *(p for p in (ROOT / tree).rglob("*") if p.is_dir() and any(p.glob("*.py")))]:
        assert (folder / "__init__.py").is_file(), f"{folder.relative_to(ROOT)} is not a package"
    for path in (ROOT / tree).rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "sys.path" not in text and "noqa: E402" not in text, path.relative_to(ROOT)
