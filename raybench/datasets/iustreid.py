"""IUST_PersonReID (IUSReID in the study).

Reference: Sedighi Moghaddam et al. IUST_PersonReId: A New Domain in Person
Re-Identification Datasets. arXiv:2412.18874, 2024.
URL: https://github.com/ComputerVisionIUST/IUST_PersonReId

Published statistics (``PUBLISHED``): 1,847 identities, recorded by 37 cameras (the
README's per-location table) in about 20 scenes (campus, mosque, shops, a procession).
The authors publish no per-split counts for the packaged train/query/gallery version, so
raybench checks only the total. Crop sizes vary: the adapter's ``crop`` is a round
typical value.

Layout: the packaged Market-1501-style version, IUSTPersonReID/{bounding_box_train,query,
bounding_box_test}/0001_c1_s1_000151.jpg. The camera number can have several digits
(c12), unlike Market-1501's, so the pattern reads all of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import market_style, touch

LAYOUT = "IUSTPersonReID/{bounding_box_train,query,bounding_box_test}/0001_c1_s1_000151.jpg"
NAMES = ("IUSTPersonReID", "IUST_PersonReId", "IUSReID", "iustreid")
PATTERN = re.compile(r"^([-\d]+)_c(\d+)")
PUBLISHED = Published({"images": 117455}, source="Sedighi Moghaddam et al. arXiv:2412.18874 (1,847 ids, 37 cameras; "
                                                 "no per-split counts published)")


def parse(root: Path) -> pa.Table:
    return market_style(root, dataset="iustreid", layout=LAYOUT, names=NAMES, pattern=PATTERN,
                        example="0001_c12_s1_000151.jpg")


def tiny_copy(folder: Path) -> TinyCopy:
    """Cameras of two digits (c12, c17)."""
    base = folder / "IUSTPersonReID"
    touch(base / "bounding_box_train", "0001_c1_s1_000151.jpg")
    touch(base / "query", "0002_c12_s1_000001.jpg", "0003_c3_s1_000002.jpg")
    touch(base / "bounding_box_test", "0002_c17_s1_000300.jpg", "0003_c1_s1_000400.jpg", "-1_c2_s1_000001.jpg")
    return TinyCopy(folder, splits={"train": (1, 1, 1), "query": (2, 2, 2), "gallery": (2, 2, 2)},
                    rows={("query", "0002_c12_s1_000001.jpg"): (2, 11), ("gallery", "0002_c17_s1_000300.jpg"): (2, 16)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(256, 128), tiny_copies=(tiny_copy,),
                  naming=PATTERN)
