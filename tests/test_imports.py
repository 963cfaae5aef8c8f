"""No import cycle between raybench's top-level modules and subpackages.

Read from the source with ast, so every import counts: module level, inside functions, under
TYPE_CHECKING, and lazy ``"raybench.pkg.mod:attr"`` registry targets written as strings. A cycle
is a layering error even where Python happens to get away with it at run time (a function-level
import that breaks the loop today breaks the first time someone hoists it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "raybench"
#: a lazy registry target: "raybench.models.timm:LOADER"
TARGET = re.compile(r"^raybench(\.\w+)+:[\w.]+$")


def group(module: str) -> str | None:
    """raybench.models.timm -> models; raybench -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "raybench" else None


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, package_dir: Path) -> set[str]:
    """Every raybench module ``path`` names, by import statement or by lazy target string."""
    name = module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from raybench import x`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and TARGET.match(node.value):
            found.add(node.value.partition(":")[0])
    return {m for m in found if m.startswith("raybench.")}


def group_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """group -> the other groups its modules import (``from raybench import __version__``
    names no group)."""
    groups = {p.stem for p in package.glob("*.py")} | {p.parent.name for p in package.glob("*/__init__.py")}
    edges: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        source = group(module_name(path, package))
        if source is None:
            continue
        targets = ({group(m) for m in imported(path, package)} & groups) - {source}
        edges.setdefault(source, set()).update(targets)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, sorted for a stable answer)."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        path = path + [node]
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path)
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state:
            cycle = visit(start, [])
            if cycle:
                return cycle
    return None


def test_no_import_cycle_between_raybench_groups():
    edges = group_graph()
    assert {"specs", "catalog", "models", "train"} <= set(edges)  # the walk saw the package
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_specs_is_the_schema_only():
    """specs imports nothing of raybench but its errors: everything else builds on it."""
    assert group_graph()["specs"] <= {"errors"}


@pytest.mark.parametrize("files, cycle", [
    ({"a.py": "from raybench import b\n", "b.py": "def f():\n    import raybench.a\n"}, ["a", "b", "a"]),
    ({"a/__init__.py": "from .x import y\n", "a/x.py": "T = 'raybench.b.m:LOADER'\n",
      "b/__init__.py": "", "b/m.py": "from ..a import x\n"}, ["a", "b", "a"]),
    ({"a.py": "from raybench import b\n", "b.py": "from raybench import c\n", "c.py": "import raybench.a\n"},
     ["a", "b", "c", "a"]),
    ({"a.py": "from raybench import b\n", "b.py": "import raybench.errors\n", "errors.py": ""}, None),
])
def test_the_check_finds_cycles_through_functions_strings_and_relative_imports(tmp_path, files, cycle):
    package = tmp_path / "raybench"
    for name, text in {"__init__.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    assert find_cycle(group_graph(package)) == cycle
