"""LaST: Large-Scale Spatio-Temporal person re-identification (frames from movies).

Reference: Shu et al. Large-Scale Spatio-Temporal Person Re-identification: Algorithm and
Benchmark. IEEE TCSVT 2022 (arXiv:2105.15076).
URL: https://github.com/shuxjweb/last

Published statistics (the repository's README): 228k images of 10,862 identities. Train
5,000 ids / 71,248 images; val 56 ids / 21,379 images (100 of them queries); test 5,806 ids
/ 135,529 images. (The loader's docstring in the same repository lists smaller counts,
e.g. 70,923 train images, from an earlier release.)

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

from raybench.datasets import Adapter
from raybench.datasets.common import locate, one_camera_per_image, rows_to_manifest, scan
from raybench.errors import DatasetError

LAYOUT = "last/{train/<pid>/, val/{query,gallery/<pid>/}, test/{query,gallery/<pid>/}}/<pid>_<...>.jpg"
NAMES = ("last", "LaST")
SUBSETS = ("test", "val")
PATTERN = re.compile(r"^(-?\d+)_")


def parse(root: Path, subset: str = "test") -> pa.Table:
    if subset not in SUBSETS:
        raise DatasetError(f"last: subset {subset!r}; allowed: {', '.join(SUBSETS)}")
    base = locate(root, [f"{subset}/query", f"{subset}/gallery"], NAMES, "last", LAYOUT)
    folders = {"train": base / "train", "query": base / subset / "query", "gallery": base / subset / "gallery"}
    rows = scan(folders, PATTERN, dataset="last", layout=LAYOUT, example="000001_0_0.jpg", recursive=True)
    return one_camera_per_image(rows_to_manifest(rows, f"last-{subset}", LAYOUT))


ADAPTER = Adapter(parse=parse, layout=LAYOUT)
