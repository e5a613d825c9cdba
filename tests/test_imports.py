"""No import cycle among cxql's modules, counting imports inside functions and under TYPE_CHECKING.

A cycle means a lower layer knows a higher one (the search code climbing back
into the session, a builder importing the CLI); data should flow one way:
parse -> plan -> run (searcher + metric) -> result -> render -> front ends.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cxql"



def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package (packages by their __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The cxql modules ``name`` imports anywhere in its file (``from . import x`` counts x)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            module = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known)
    # a module's own package (its __init__ runs first anyway) is not an edge
    return {t for t in found if t != name and not name.startswith(t + ".")}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    mods = modules(root)
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the current path, 2 done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        colour[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if colour[w] == 1:
                return path[path.index(w):] + [w]
            if colour[w] == 0 and (cycle := visit(w)):
                return cycle
        path.pop()
        colour[v] = 2
        return None

    for v in sorted(graph):
        if colour[v] == 0 and (cycle := visit(v)):
            return cycle
    return None


def test_cxql_has_no_import_cycle() -> None:
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("files, cycle", [
    ({"a.py": "from . import b", "b.py": "def f():\n    from .a import x"}, True),
    ({"a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B", "b.py": "import pkg.a"}, True),
    ({"a.py": "from .b import x", "b.py": "import os", "__init__.py": "from .a import x"}, False),
    ({"a.py": "from .sub import c", "sub/__init__.py": "", "sub/c.py": "from ..a import y"}, True),
])
def test_the_cycle_finder_sees_imports_anywhere(tmp_path, files, cycle) -> None:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert (find_cycle(import_graph(root)) is not None) == cycle
