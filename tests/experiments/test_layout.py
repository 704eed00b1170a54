"""benchmarks/ and experiments/ are packages run as modules: no sys.path edits, no import circles."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TREES = ("benchmarks", "experiments")


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for tree in TREES for p in sorted((ROOT / tree).rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("tree", TREES)
def test_every_folder_is_a_package_and_no_file_edits_sys_path(tree):
    for folder in [ROOT / tree, *(p for p in (ROOT / tree).rglob("*") if p.is_dir() and any(p.glob("*.py")))]:
        assert (folder / "__init__.py").is_file(), f"{folder.relative_to(ROOT)} is not a package"
    for path in (ROOT / tree).rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "sys.path" not in text and "noqa: E402" not in text, path.relative_to(ROOT)


def test_no_import_circles_and_benchmarks_never_import_experiments():
    modules = _modules()
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    assert not [n for n in graph if n.startswith("benchmarks") and any(m.startswith("experiments") for m in graph[n])]

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, " -> ".join((*trail, name))
        for nxt in graph[name]:
            visit(nxt, (*trail, name))

    for name in graph:
        visit(name, ())
