"""Spec files: YAML read with errors that name the file, and a catalog's name -> entry mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from raybench.errors import SpecError


def load_yaml(path: str | Path) -> Any:
    import yaml

    path = Path(path)
    try:
        with path.open() as stream:  # a stream, so YAML's error marks name the file
            return yaml.safe_load(stream)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None


def parse_entries(data: Any, where: str, parse: Callable[[Any, str], Any], kind: str) -> dict:
    """A catalog file's content (name -> fields) -> name -> spec, with ``parse`` per entry."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a mapping of {kind} name -> fields")
    out = {}
    for name, fields in data.items():
        if not isinstance(fields, Mapping):
            raise SpecError(f"{where}: {kind} {name!r}: expected a mapping of fields")
        out[name] = parse({"name": name, **fields}, f"{where}: {kind} {name!r}")
    return out
