"""LaST: Large-Scale Spatio-Temporal person re-identification (frames from movies).

Reference: Shu et al. Large-Scale Spatio-Temporal Person Re-identification: Algorithm and
Benchmark. IEEE TCSVT 2022 (arXiv:2105.15076).
URL: https://github.com/shuxjweb/last

Published statistics (``PUBLISHED``, from the repository's README): 228k images of 10,862
identities; val 56 ids, test 5,806 ids. (The loader's docstring in the same repository lists
smaller counts, e.g. 70,923 train images, from an earlier release.) Frame crops vary in
size: the adapter's ``crop`` is a round typical value.

Layout: last/train/<pid>/<name>.jpg, last/{val,test}/query/<name>.jpg and
last/{val,test}/gallery/<pid>/<name>.jpg; the pid is the first "_" field of the name.
Two protocols: ``subset="test"`` (the benchmark) and ``subset="val"``. Movies have no
cameras: like the authors' loader, raybench gives every image its own camera id and
scores LaST without camera filtering. (The study gave every gallery image camera 0, so
same-camera filtering could drop true matches: defect 9.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import locate, one_camera_per_image, rows_to_manifest, scan, touch
from raybench.errors import DatasetError

LAYOUT = "last/{train/<pid>/, val/{query,gallery/<pid>/}, test/{query,gallery/<pid>/}}/<pid>_<...>.jpg"
NAMES = ("last", "LaST")
SUBSETS = ("test", "val")
PATTERN = re.compile(r"^(-?\d+)_")
_README = "Shu et al. TCSVT 2022, README of github.com/shuxjweb/last"
PUBLISHED = (
    Published({"train": {"images": 71248, "ids": 5000}, "eval_images": 135529}, source=f"{_README} (test 5,806 ids)",
              options={"subset": "test"}),
    Published({"train": {"images": 71248, "ids": 5000}, "query": {"images": 100}, "eval_images": 21379},
              source=f"{_README} (val 56 ids)", options={"subset": "val"}),
)


def parse(root: Path, subset: str = "test") -> pa.Table:
    if subset not in SUBSETS:
        raise DatasetError(f"last: subset {subset!r}; allowed: {', '.join(SUBSETS)}")
    base = locate(root, [f"{subset}/query", f"{subset}/gallery"], NAMES, "last", LAYOUT)
    folders = {"train": base / "train", "query": base / subset / "query", "gallery": base / subset / "gallery"}
    rows = scan(folders, PATTERN, dataset="last", layout=LAYOUT, example="000001_0_0.jpg", recursive=True)
    return one_camera_per_image(rows_to_manifest(rows, f"last-{subset}", LAYOUT))


def tiny_copy(folder: Path, subset: str = "test") -> TinyCopy:
    """Both subsets on disk, ``subset`` read; gallery images in per-pid folders."""
    base = folder / "last"
    touch(base / "train", "000001/000001_0_0.jpg", "000001/000001_1_0.jpg", "000002/000002_0_0.jpg")
    for sub, ids in (("val", (10, 11)), ("test", (20, 21, 22))):
        touch(base / sub / "query", *(f"{pid:06d}_0_0.jpg" for pid in ids))
        touch(base / sub / "gallery", *(f"{pid:06d}/{pid:06d}_{k}_1.jpg" for pid in ids for k in (1, 2)))
    splits = ({"train": (3, 2, 3), "query": (3, 3, 3), "gallery": (6, 3, 6)} if subset == "test"
              else {"train": (3, 2, 3), "query": (2, 2, 2), "gallery": (4, 2, 4)})
    return TinyCopy(folder, {"subset": subset}, splits=splits)


def tiny_copy_val(folder: Path) -> TinyCopy:
    return tiny_copy(folder, "val")


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=PUBLISHED, crop=(256, 128),
                  tiny_copies=(tiny_copy, tiny_copy_val))
