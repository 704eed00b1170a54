"""The repository's layout rules: two halves that stand alone on a shared kit, no import circles."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runkit", "cea_jax", "prophetkv_jax", "benchmarks", "experiments")
LIBRARY = {"runkit", "cea_jax", "prophetkv_jax"}
# Which top-level packages each package may import (besides itself and third-party code): the halves stand
# on runkit alone; benchmarks measure the library and never depend on a claim experiment.
ALLOWED = {"runkit": set(), "cea_jax": {"runkit"}, "prophetkv_jax": {"runkit"},
           "benchmarks": LIBRARY, "experiments": LIBRARY}


def _imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_it_stands_on(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imported_modules(path):
            top = name.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(tops: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the repository modules it imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    paths = {_module_name(p): p for top in tops if (ROOT / top).is_dir() for p in (ROOT / top).rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        edges = set()
        for imported in _imported_modules(path):
            if imported in paths:
                edges.add(imported)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                edges.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in paths)
        graph[name] = edges - {name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules on it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circles():
    graph = _import_graph(PACKAGES)
    assert _find_cycle(graph) is None
