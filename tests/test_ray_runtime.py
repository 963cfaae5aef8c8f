"""One place starts Ray: raybench.ray_runtime."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ray_is_started_in_one_place():
    """run (pipeline/driver via runtime), train and bench all go through ray_runtime.connect."""
    calls = [f"{path.relative_to(REPO)}:{node.lineno}"
             for path in sorted((REPO / "raybench").rglob("*.py")) if path.name != "ray_runtime.py"
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and ast.unparse(node.func) in ("ray.init", "init")]
    assert calls == [], f"ray.init outside raybench/ray_runtime.py: {calls}"
    assert "ray.init(" in (REPO / "raybench" / "ray_runtime.py").read_text()
