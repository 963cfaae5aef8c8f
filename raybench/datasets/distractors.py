"""Distractor sets: images that join a dataset's gallery as identities that no query has.

A dataset names its set with ``distractors:`` (DatasetSpec.distractors): a folder of images,
searched recursively (any of datasets.common.IMAGE_SUFFIXES), or a CSV whose ``path`` column
lists them (a path relative to the CSV's folder; other columns are ignored). A relative
``distractors:`` is relative to the dataset's root. When the set joins a dataset's gallery,
each image's camera is read from its file name with that dataset's naming (its adapter's
``naming``: Market-1501's ``0000_c3s1_...``) where the name follows it, else it is -1
(unknown): ``cameras``. A distractor's camera never changes a score (no query shares its
identity); it is kept for what shows the rows.

The set is embedded once per model, not once per dataset: its images are a cell of their own,
``embeddings/distractors-<digest>/<model>/``, whose name hashes every image's path and size in
bytes (``set_name``), so every dataset (and every run) that names the same images reuses it,
and a changed set gets a new one. The model's spec hash, preprocessing included, keys the
cell's embeddings as it keys every cell's. The reducer joins the set to the dataset's gallery
when it scores (raybench.pipeline.shards), with pid ``eval.protocol.DISTRACTOR_PID``.

Market-1501+500k (Zheng et al., ICCV 2015; ``distractors_500k.zip`` on the dataset's project
page): 500,000 extra gallery images. torchreid reads the archive unpacked under the Market copy
as a flat folder ``images/`` (Market-1501-v15.09.15/images/*.jpg), parsing each name with
Market's regex and asserting a pid in 0..1501 and a camera in 1..6, so the names follow
Market's own convention. The catalog's ``market1501-500k`` is that layout (``distractors:
images``); ``raybench datasets check`` counts the set against the published 500,000 images
(``PUBLISHED_500K``) and says how many names follow Market's naming. Unlike torchreid, every
image of the set is a distractor here, whatever pid its name carries.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from raybench.datasets.common import IMAGE_SUFFIXES, absolute, list_images, read_text
from raybench.datasets.manifest import make_manifest
from raybench.errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from raybench.specs import DatasetSpec

#: The store name of a distractor set: this prefix and its digest.
PREFIX = "distractors-"
#: Images in Market-1501+500k's distractor folder, as published.
PUBLISHED_500K = 500_000
LAYOUT = "a folder of images (searched recursively) or a CSV with a 'path' column"


def distractor_source(spec: "DatasetSpec") -> Path:
    """Where ``spec``'s distractor set is: its ``distractors:``, relative to the dataset's root
    unless absolute."""
    from raybench.datasets import resolve_root

    if not spec.distractors:
        raise DatasetError(f"{spec.name}: no distractors: in its spec")
    path = Path(spec.distractors).expanduser()
    return path if path.is_absolute() else resolve_root(spec) / path


def load_distractors(spec: "DatasetSpec") -> pa.Table:
    """The distractor set of ``spec`` as manifest rows: path, pid 0, camid -1 (its cameras are
    the naming's of each dataset it joins: ``cameras``), split ``gallery``; in path order. The
    rows hold nothing but the images, so the set's cell is the same for every dataset."""
    from raybench.datasets import has_captions

    if has_captions(spec):
        raise DatasetError(f"{spec.name}: distractors join an image gallery; a text-to-person dataset has none "
                           "(its images are scored leave-one-out)")
    source = distractor_source(spec)
    paths = _csv_paths(source, spec.name) if source.suffix.lower() == ".csv" else _folder_paths(source, spec.name)
    n = len(paths)
    return make_manifest({"path": paths, "pid": [0] * n, "camid": [-1] * n, "split": ["gallery"] * n})


def set_name(table: pa.Table) -> str:
    """``distractors-<digest>``: a digest of every image's path and size in bytes."""
    digest = hashlib.sha256()
    for path in table.column("path").to_pylist():
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise DatasetError(f"distractor image {path} cannot be read ({exc.strerror or exc})") from None
        digest.update(f"{path}\t{size}\n".encode())
    return PREFIX + digest.hexdigest()[:16]


def cameras(paths, naming) -> "np.ndarray":
    """int32 [len(paths)]: each image's 0-based camera read from its file name with ``naming``
    (group 2: the 1-based camera), -1 where the name does not follow it (or there is none)."""
    import numpy as np

    def camera(path: str) -> int:
        found = naming.search(os.path.basename(path)) if naming is not None and naming.groups >= 2 else None
        return int(found.group(2)) - 1 if found else -1

    return np.array([camera(str(p)) for p in paths], np.int32)


def _folder_paths(folder: Path, dataset: str) -> list[str]:
    if not folder.is_dir():
        raise DatasetError(f"{dataset}: distractors {folder} is not a folder or a .csv file. Expected: {LAYOUT}")
    paths = [absolute(p) for p in list_images(folder, recursive=True)]
    if not paths:
        raise DatasetError(f"{dataset}: no images ({', '.join(IMAGE_SUFFIXES)}) under the distractors folder {folder}")
    return paths


def _csv_paths(path: Path, dataset: str) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{dataset}: distractors {path} does not exist. Expected: {LAYOUT}")
    reader = csv.DictReader(io.StringIO(read_text(path, dataset, LAYOUT), newline=""))
    if "path" not in (reader.fieldnames or []):
        raise DatasetError(f"{dataset}: {path} has no 'path' column; expected: {LAYOUT}")
    paths = []
    for number, record in enumerate(reader, 2):
        image = Path((record["path"] or "").strip())
        image = image if image.is_absolute() else path.parent / image
        if not image.is_file():
            raise DatasetError(f"{dataset}: {path}:{number}: distractor image {image} does not exist")
        paths.append(absolute(image))
    if not paths:
        raise DatasetError(f"{dataset}: {path} lists no images")
    return sorted(paths)
