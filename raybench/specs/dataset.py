"""A dataset spec: its adapter and options, where the user's copy lives, and how it is scored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from raybench.specs.schema import key, merge_over_base, read


@dataclass(frozen=True)
class Protocol:
    """How a dataset is scored."""

    camera_filter: bool = True  # drop same-pid same-camera gallery items per query
    cuhk03_metric: bool = False  # the classic single-shot CUHK03 CMC
    trials: int = 1  # > 1: published splits, reported as mean and spread


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset adapter, its options, where the user's copy lives, and how it is scored."""

    name: str
    adapter: str
    layout_dir: str = key(absent="")  # canonical folder name under $RAYBENCH_DATA
    root: str | None = None
    protocol: Protocol = Protocol()
    options: Mapping[str, Any] = key(default_factory=dict, hash=False, parse=merge_over_base)
    stats: Mapping[str, Any] = key(default_factory=dict, hash=False)  # published statistics
    description: str = ""
    #: a folder of images (or a CSV of their paths) that join the gallery as identities no query
    #: has (raybench.datasets.distractors); a relative path is relative to the dataset's root
    distractors: str | None = None


def parse_dataset(data: Any, where: str, base: DatasetSpec | None = None) -> DatasetSpec:
    """A DatasetSpec from a YAML mapping; with ``base`` (a catalog entry) keys override it, its
    ``protocol`` key by key and its ``options`` merged under the entry's."""
    return read(DatasetSpec, data, where, base=base)
