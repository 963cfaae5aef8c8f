"""PKU-Reid: every person seen from eight orientations in each of two cameras.

Reference: Ma et al. Orientation Driven Bag of Appearances for Person Re-identification.
arXiv:1605.02464, 2016.
URL: https://github.com/charliememory/PKU-Reid-Dataset

Published statistics (``PUBLISHED``): 114 identities, 1,824 images (114 x 2 cameras x 8
orientations), normalised to 128x48 pixels. There is no official train/query/gallery split:
the split counts are those of raybench's split (below), whatever the seed.

Layout: PKUv1a_128x48/<pid>_<camera>_<image>.png, e.g. 001_1_3.png. Camera labels are
mapped to camids 0 and 1 in sorted order, whatever their base.

raybench's split (the study's depended on glob order, defect 7), fixed by ``seed``:
1. identities sorted by number; a generator seeded with ``seed`` permutes them and the
   first round(train_fraction x 114) train, the rest test (57 / 57 with the defaults);
2. for each test identity, a generator seeded with (seed, pid) picks
   ``queries_per_camera`` images of each camera (among that camera's images sorted by
   path) as queries; every other image of the identity goes to the gallery.
Queries are scored with camera filtering (the identity's gallery images from the query's
own camera are set aside), so a query's true matches are the other camera's
8 - queries_per_camera gallery images of its identity (7 with the defaults: that camera's
own query is not in the gallery): cross-camera, cross-orientation retrieval. Nothing
depends on the order in which the file system lists the files.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import DatasetNotFoundError, absolute, match_name, require_images, rows_to_manifest, touch
from raybench.errors import DatasetError

LAYOUT = "PKUv1a_128x48/<pid>_<camera>_<image>.png (e.g. 001_1_3.png)"
NAMES = ("PKUv1a_128x48", "pku", "PKU-Reid")
PATTERN = re.compile(r"^(\d+)_(\d+)_(\d+)")
PUBLISHED = Published(
    {"images": 1824, "train": {"ids": 57, "images": 912}, "query": {"ids": 57, "images": 114, "cameras": 2},
     "gallery": {"ids": 57, "images": 798, "cameras": 2}},
    source="Ma et al. arXiv:1605.02464 (114 ids x 2 cameras x 8 orientations); the split is raybench's, seed 0",
    options={"train_fraction": 0.5, "queries_per_camera": 1})


def parse(root: Path, seed: int = 0, train_fraction: float = 0.5, queries_per_camera: int = 1) -> pa.Table:
    base = _folder(root)
    images = []
    for path in require_images(base, "pku", LAYOUT):
        found = match_name(PATTERN, path, "pku", "001_1_3.png")
        images.append((absolute(path), int(found.group(1)), int(found.group(2))))
    cameras = {cam: i for i, cam in enumerate(sorted({cam for _, _, cam in images}))}
    by_pid = defaultdict(list)
    for path, pid, cam in images:
        by_pid[pid].append((path, cameras[cam]))
    train_ids = _train_ids(sorted(by_pid), seed, train_fraction)
    rows = []
    for pid, items in by_pid.items():
        queries = set() if pid in train_ids else _queries(items, seed, pid, queries_per_camera)
        for path, camid in items:
            split = "train" if pid in train_ids else "query" if path in queries else "gallery"
            rows.append({"path": path, "pid": pid, "camid": camid, "split": split})
    return rows_to_manifest(rows, "pku", LAYOUT)


def _folder(root: Path) -> Path:
    """PKU has no sub-folders: the root is the image folder or a parent of PKUv1a_128x48."""
    root = Path(root).expanduser()
    canonical = root / NAMES[0]
    if canonical.is_dir():
        return canonical
    if root.is_dir() and any(PATTERN.match(p.name) and p.suffix.lower() == ".png" for p in root.iterdir()):
        return root
    where = "does not exist" if not root.exists() else f"holds neither {NAMES[0]}/ nor <pid>_<camera>_<image>.png images"
    raise DatasetNotFoundError(f"pku: {root} {where}. Expected layout: {LAYOUT}")


def _train_ids(pids: list[int], seed: int, fraction: float) -> set[int]:
    if not 0 <= fraction < 1:
        raise DatasetError(f"pku: train_fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(pids))
    return {pids[i] for i in order[: round(fraction * len(pids))]}


def _queries(items: list[tuple[str, int]], seed: int, pid: int, per_camera: int) -> set[str]:
    rng = np.random.default_rng([seed, pid])
    chosen = set()
    for camid in sorted({c for _, c in items}):
        paths = sorted(p for p, c in items if c == camid)
        picks = rng.choice(len(paths), size=min(per_camera, len(paths)), replace=False)
        chosen.update(paths[i] for i in sorted(picks))
    return chosen


def tiny_copy(folder: Path) -> TinyCopy:
    """6 identities x 2 cameras x 4 images."""
    touch(folder / "PKUv1a_128x48", *(f"{pid:03d}_{cam}_{img}.png" for pid in range(1, 7) for cam in (1, 2)
                                      for img in range(1, 5)))
    return TinyCopy(folder, {"seed": 0}, splits={"train": (24, 3, 2), "query": (6, 3, 2), "gallery": (18, 3, 2)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(128, 48), tiny_copies=(tiny_copy,))
