"""No import cycle between raybench's top-level modules and subpackages, nor between modules.

Read from the source with ast, so every import counts: module level, inside functions and under
TYPE_CHECKING. A cycle is a layering error even where Python happens to get away with it at run
time (a function-level import that breaks the loop today breaks the first time someone hoists
it). Between groups (top-level modules and subpackages), the lazy ``"raybench.pkg.mod:attr"``
registry targets written as strings count too; between modules they do not: a registry reaches
its plugins by name, and a plugin importing its registry's package is the intended direction.
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


def statements(path: Path, package_dir: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Every import statement of ``path`` as (module, names): ``import a.b`` is ("a.b", ()),
    ``from a import b, c`` is ("a", ("b", "c")), a relative import made absolute."""
    name = module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.append((base, tuple(alias.name for alias in node.names)))
    return found


def imported(path: Path, package_dir: Path) -> set[str]:
    """Every raybench module ``path`` names, by import statement or by lazy target string."""
    found = {f"{base}.{name}" if name else base  # `from raybench import x`: x
             for base, names in statements(path, package_dir) for name in names or ("",)}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and TARGET.match(node.value):
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


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` by dotted name (a package by its own name: its __init__)."""
    return {module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def imported_modules(path: Path, package: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports by statement (never by string):
    ``from raybench.p import x`` is module raybench.p.x where that is a module, else the
    package raybench.p (whose __init__ defines x); ``import raybench.p.x`` is raybench.p.x."""
    found = {f"{base}.{name}" if f"{base}.{name}" in known else base
             for base, names in statements(path, package) for name in names or ("",)}
    return (found & known) - {module_name(path, package)}


def module_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the raybench modules it imports."""
    found = modules(package)
    return {name: imported_modules(path, package, set(found)) for name, path in found.items()}


def circles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The import circles: the strongly connected components of more than one module, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:  # node is the first of its component: pop the component
            component = set()
            while node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found, key=sorted)


def test_no_import_cycle_between_raybench_modules():
    edges = module_graph()
    assert {"raybench.models", "raybench.models.base", "raybench.eval.protocol"} <= set(edges)  # the walk saw them
    found = circles(edges)
    assert not found, "import cycle: " + " -> ".join(find_cycle({m: edges[m] & found[0] for m in found[0]}))


def test_eval_knows_nothing_of_the_run_folder_or_the_pipeline():
    """raybench.eval takes arrays and returns blocks: it imports nothing from rundir/ or pipeline/."""
    edges = module_graph()
    reaching = sorted(f"{m} -> {t}" for m, targets in edges.items() if group(m) == "eval"
                      for t in targets if group(t) in ("rundir", "pipeline"))
    assert not reaching, "eval imports the run folder or the pipeline: " + "; ".join(reaching)


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
    assert find_cycle(group_graph(write_package(tmp_path, files))) == cycle


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "raybench"
    for name, text in {"__init__.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


@pytest.mark.parametrize("files, cycle", [
    # inside a package, through a function-level import
    ({"p/__init__.py": "", "p/x.py": "def f():\n    from raybench.p import y\n", "p/y.py": "from raybench.p.x import f\n"},
     ["raybench.p.x", "raybench.p.y", "raybench.p.x"]),
    # under TYPE_CHECKING, and by relative imports
    ({"p/__init__.py": "", "p/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .y import Y\n",
      "p/y.py": "from . import x\n"}, ["raybench.p.x", "raybench.p.y", "raybench.p.x"]),
    # a name that is no module is its package's __init__: a package and its own module
    ({"p/__init__.py": "from raybench.p.x import f\n", "p/x.py": "def f():\n    from raybench.p import g\n"},
     ["raybench.p", "raybench.p.x", "raybench.p"]),
    # a registry's lazy target is no import: the plugin may import its registry's package
    ({"p/__init__.py": "LOADERS = {'x': 'raybench.p.x:LOADER'}\n", "p/x.py": "from raybench.p import LOADERS\n"}, None),
    # modules of one package that import each other in one direction only
    ({"p/__init__.py": "", "p/x.py": "from raybench.p import y\n", "p/y.py": "import raybench.errors\n",
      "errors.py": ""}, None),
])
def test_the_check_finds_cycles_between_modules(tmp_path, files, cycle):
    edges = module_graph(write_package(tmp_path, files))
    found = circles(edges)
    assert (find_cycle(edges) if found else None) == cycle
    assert found == ([set(cycle)] if cycle else [])
