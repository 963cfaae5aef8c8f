"""Where raybench looks for configs, data, weights and caches (all overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

#: The project checkout: configs/, jobs/ and cluster/ live beside the package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def configs_dir() -> Path:
    """configs/ of the checkout, or $RAYBENCH_CONFIGS."""
    return Path(os.environ.get("RAYBENCH_CONFIGS", PROJECT_ROOT / "configs"))


def cache_dir() -> Path:
    """Generated data (synthetic datasets, extracted CUHK03 images): $RAYBENCH_CACHE or ~/.cache/raybench."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "raybench"
    return Path(os.environ.get("RAYBENCH_CACHE", default))


def weights_dir() -> Path:
    """Downloaded checkpoints: $RAYBENCH_WEIGHTS (shared storage on clusters) or <cache>/weights."""
    return Path(os.environ.get("RAYBENCH_WEIGHTS", cache_dir() / "weights"))


def data_dir() -> Path | None:
    """The parent of the user's dataset copies: $RAYBENCH_DATA, or None when unset."""
    value = os.environ.get("RAYBENCH_DATA")
    return Path(value) if value else None


def trained_dir() -> Path:
    """Finished `raybench train` runs, one folder each: $RAYBENCH_TRAINED, else runs/train
    (relative to the working directory, like `raybench run`'s runs/<matrix>)."""
    return Path(os.environ.get("RAYBENCH_TRAINED", "runs/train"))
