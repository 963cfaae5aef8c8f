"""User-facing errors.

Every error a person can cause (a wrong name, a missing dataset root, weights that cannot be
fetched offline) is a `RaybenchError`: the CLI prints its message and exits non-zero, with no
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class RaybenchError(Exception):
    """An error caused by input or environment, with a message that says how to fix it."""

    exit_code = 2


class UnknownNameError(RaybenchError, KeyError):
    """A registry lookup of a name that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(known) if len(known) <= 30 else f"{len(known)} names; see `raybench list`"
        super().__init__(f"unknown {kind} {name!r}.{hint} Known: {listing}.")
        self.kind, self.name, self.suggestions = kind, name, close

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class SpecError(RaybenchError):
    """A YAML file or inline spec that does not validate."""


class DatasetError(RaybenchError):
    """A dataset root that is missing, empty or not in the expected layout."""


class WeightsUnavailableError(RaybenchError):
    """Model weights that are neither cached nor reachable."""


class EvaluationError(RaybenchError):
    """Inputs the metrics cannot score (for example, no query with a valid match)."""


class ImageError(RaybenchError):
    """An image file that is missing or cannot be decoded; the message names the file."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path, self.reason = path, reason
