"""VC-Clothes: a synthetic clothes-changing dataset rendered in a game engine (4 scenes).

Reference: Wan et al. When Person Re-identification Meets Changing Clothes. CVPR Workshops
2020 (arXiv:2003.04070).
URL: https://wanfb.github.io/dataset.html

Published statistics (``PUBLISHED``): 512 identities, 4 cameras (scenes), 19,060 images, as
the paper is cited (not read here). The split counts train 9,449 images of 256 identities,
query 1,020, gallery 8,591 sum to that total but were read from third-party code only (a
docstring that reproduces them), not from the paper: treat a difference as a lead.

Layout: VC-Clothes/{train,query,gallery}/0001-01-03-04.jpg: pid, camera (1-4, camid = camera
- 1), outfit of that person, frame ("{pid}-{cam}-{clothes}-{frame}", read from the file's name
only, any number of digits). The clothes key is "<pid>-<clothes>" with both read as numbers
(Simple-CCReID concatenates the two strings, which is the same key wherever the fields are
zero-padded to fixed widths).

Scoring (configs/datasets.yaml): the customary sub-protocols (Simple-CCReID's
vcclothes / vcclothes_sc / vcclothes_cc, script.sh): ``standard`` on all cameras, ``sc`` on
cameras 2 and 3 (where people keep their clothes) and ``cc`` on cameras 3 and 4 (where they
change), each camera subset applied to queries and gallery alike and scored by the standard
rule, as there; plus ``cc-all`` and ``sc-all``, the clothes rules on all cameras, which
Simple-CCReID also computes for vcclothes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, locate, match_name, require_images, rows_to_manifest, touch

LAYOUT = "VC-Clothes/{train,query,gallery}/0001-01-03-04.jpg ({pid}-{cam}-{clothes}-{frame})"
NAMES = ("VC-Clothes", "vcclothes", "VC_Clothes")
FOLDERS = ("train", "query", "gallery")
PATTERN = re.compile(r"^(\d+)-(\d+)-(\d+)-(\d+)")
EXAMPLE = "0001-01-03-04.jpg"
PUBLISHED = Published(
    {"train": {"images": 9449, "ids": 256}, "query": {"images": 1020}, "gallery": {"images": 8591}},
    source="Wan et al. CVPRW 2020 as cited (512 ids, 4 scenes, 19,060 images); split counts from third-party "
           "code, not confirmed from the paper")


def parse(root: Path) -> pa.Table:
    base = locate(root, ["query", "gallery"], NAMES, "vcclothes", LAYOUT)
    rows = []
    for split in FOLDERS:
        if split == "train" and not (base / split).is_dir():
            continue
        for path in require_images(base / split, "vcclothes", LAYOUT):
            pid, cam, clothes, _ = (int(g) for g in match_name(PATTERN, path, "vcclothes", EXAMPLE).groups())
            rows.append({"path": absolute(path), "pid": pid, "camid": cam - 1, "split": split,
                         "clothes": f"{pid}-{clothes}"})
    return rows_to_manifest(rows, "vcclothes", LAYOUT)


def tiny_copy(folder: Path) -> TinyCopy:
    base = folder / "VC-Clothes"
    touch(base / "train", "0001-01-01-01.jpg", "0001-04-02-07.jpg", "0002-02-01-03.jpg")
    touch(base / "query", "0300-02-01-01.jpg", "0300-04-02-09.jpg", "0301-03-01-02.jpg")
    touch(base / "gallery", "0300-03-01-05.jpg", "0300-03-02-06.jpg", "0300-01-01-04.jpg", "0301-02-01-08.jpg",
          "0301-04-02-10.jpg")
    return TinyCopy(folder, splits={"train": (3, 2, 3), "query": (3, 2, 3), "gallery": (5, 2, 4)},
                    rows={("query", "0300-04-02-09.jpg"): (300, 3), ("gallery", "0300-01-01-04.jpg"): (300, 0)},
                    clothes={("query", "0300-04-02-09.jpg"): "300-2", ("gallery", "0301-02-01-08.jpg"): "301-1"})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(256, 128), tiny_copies=(tiny_copy,))
