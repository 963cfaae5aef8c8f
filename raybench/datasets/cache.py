"""Generated data in the cache (synthetic datasets, extracted CUHK03 images), built once.

A folder is built in a temporary sibling and renamed into place under a file lock, so two
processes (two Ray workers, two terminals) never see half a dataset and never build it twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def params_hash(params: Any) -> str:
    """A short stable hash of JSON-able parameters (the cache folder's name suffix)."""
    text = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextlib.contextmanager
def _locked(lock_path: Path):
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the atomic rename alone still guards readers
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _discard(folder: Path) -> None:
    """Remove a temporary folder this module created (and nothing else)."""
    for dirpath, dirnames, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            os.rmdir(os.path.join(dirpath, name))
    os.rmdir(folder)


def build_once(final: Path, build: Callable[[Path], None]) -> Path:
    """``final`` if it exists; else ``build(tmp)`` into a fresh temp folder, then rename it to
    ``final``. A failed build leaves nothing behind."""
    final = Path(final)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = final.parent / f".{final.name}.lock"
    with _locked(lock):
        if final.is_dir():  # another process finished while this one waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            build(tmp)
            os.rename(tmp, final)
        except BaseException:
            _discard(tmp)
            raise
    # Safe to remove: whoever takes the lock from now on finds ``final`` and returns.
    with contextlib.suppress(OSError):
        lock.unlink()
    return final
