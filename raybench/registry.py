"""One small generic registry; the project keeps one instance per kind.

Entries are either objects or lazy ``"module:attr"`` strings, so that registering a loader
that needs torch or open_clip costs nothing until the entry is used.
"""

from __future__ import annotations

import importlib
from typing import Generic, Iterator, TypeVar

from raybench.errors import UnknownNameError

T = TypeVar("T")


def import_target(target: str):
    """Resolve ``"package.module:attr"`` to the object it names."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"lazy target must look like 'module:attr', got {target!r}")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Name -> entry, for one kind of thing (dataset adapters, model loaders, ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, entry: T | str) -> T | str:
        """Add ``entry`` under ``name``; a string entry is a lazy ``"module:attr"`` target.

        Registering a name twice raises: there is one source of truth per name.
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None
        if isinstance(entry, str):
            entry = import_target(entry)
            self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests use this to clean up what they registered)."""
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self._entries)
        del self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
