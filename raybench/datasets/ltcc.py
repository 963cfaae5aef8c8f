"""LTCC: Long-Term Cloth-Changing person re-identification (indoor, 12 cameras, over months).

Reference: Qian et al. Long-Term Cloth-Changing Person Re-identification. ACCV 2020
(arXiv:2005.12633).
URL: https://naiq.github.io/LTCC_Perosn_ReID.html

Published statistics (``PUBLISHED``): 17,119 images of 152 identities, 12 cameras (the
project page). Per folder, from the dataset's README as quoted by the CC codebases
(QizaoWang/CAMC-CCReID dataset/LTCC.py): train/ 9,576 images of 77 identities (46 change
clothes, 31 do not), test/ (the gallery) 7,050 images of 75 identities, query/ 493 images of
the same 75 ("one query image for each camera and each outfit"); 9,576 + 7,050 + 493 =
17,119, the page's total. Per-folder camera counts are not published.

Layout: LTCC_ReID/{train,query,test}/001_1_c11_015861.png: pid 001, outfit 1 of that
person, camera 11 (camid 10), frame. The clothes key is the name's ``{pid}_{clothes}``
prefix ("001_1"), as Simple-CCReID reads it (``(\\w+)_c``) but from the file's name only: its
regexes run on the whole path, so a root whose folders hold ``_c`` change the key.

Scoring (configs/datasets.yaml): the settings ``standard``, ``cc`` (the headline: the
clothes-changing setting every CC paper reports) and ``sc``, raybench.eval.clothes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, locate, require_images, rows_to_manifest, touch
from raybench.errors import DatasetError

LAYOUT = "LTCC_ReID/{train,query,test}/001_1_c11_015861.png ({pid}_{clothes}_c{cam}_{frame})"
NAMES = ("LTCC_ReID", "LTCC", "ltcc")
FOLDERS = {"train": "train", "query": "query", "gallery": "test"}
PATTERN = re.compile(r"^((\d+)_(\d+))_c(\d+)")
NO_CLOTHES = re.compile(r"^\d+_c\d+")
EXAMPLE = "001_1_c11_015861.png"
_SOURCE = ("naiq.github.io/LTCC_Perosn_ReID.html (17,119 images, 152 ids, 12 cameras); per folder: the LTCC "
           "README as quoted by QizaoWang/CAMC-CCReID dataset/LTCC.py (third-party copy)")
PUBLISHED = Published(
    {"train": {"images": 9576, "ids": 77}, "query": {"images": 493, "ids": 75},
     "gallery": {"images": 7050, "ids": 75}, "images": 17119},
    source=_SOURCE)


def parse(root: Path) -> pa.Table:
    base = locate(root, ["query", "test"], NAMES, "ltcc", LAYOUT)
    rows = []
    for split, folder in FOLDERS.items():
        if split == "train" and not (base / folder).is_dir():
            continue  # evaluation needs query and test only
        for path in require_images(base / folder, "ltcc", LAYOUT):
            rows.append(_row(path, split))
    return rows_to_manifest(rows, "ltcc", LAYOUT)


def _row(path: Path, split: str) -> dict:
    found = PATTERN.search(path.name)
    if found is None:
        lacks = " has no clothes field" if NO_CLOTHES.search(path.name) else " does not follow the naming"
        raise DatasetError(f"ltcc: file name {path.name!r} in {path.parent}{lacks} ({{pid}}_{{clothes}}_c{{cam}}_"
                           f"{{frame}}, for example {EXAMPLE!r}). Expected layout: {LAYOUT}")
    key, pid, _, cam = found.groups()
    return {"path": absolute(path), "pid": int(pid), "camid": int(cam) - 1, "split": split, "clothes": key}


def tiny_copy(folder: Path) -> TinyCopy:
    """Two people who change clothes and one who does not; a stray non-image file."""
    base = folder / "LTCC_ReID"
    touch(base / "train", "094_1_c1_001001.png", "094_2_c4_002002.png", "095_1_c2_000001.png")
    touch(base / "query", "001_1_c11_015861.png", "001_2_c3_021004.png", "002_1_c7_000410.png")
    touch(base / "test", "001_1_c5_015900.png", "001_2_c11_022000.png", "001_3_c8_030001.png",
          "002_1_c1_000500.png", "002_1_c12_000900.png", "readme.txt")
    return TinyCopy(folder, splits={"train": (3, 2, 3), "query": (3, 2, 3), "gallery": (5, 2, 5)},
                    rows={("query", "001_1_c11_015861.png"): (1, 10), ("gallery", "002_1_c12_000900.png"): (2, 11)},
                    clothes={("query", "001_2_c3_021004.png"): "001_2", ("gallery", "001_3_c8_030001.png"): "001_3"})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(256, 128), tiny_copies=(tiny_copy,))
