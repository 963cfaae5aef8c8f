"""IUST_PersonReID (IUSReID in the study).

Reference: Sedighi Moghaddam et al. IUST_PersonReId: A New Domain in Person
Re-Identification Datasets. arXiv:2412.18874, 2024.
URL: https://github.com/ComputerVisionIUST/IUST_PersonReId

Published statistics: 117,455 images of 1,847 identities, recorded by 37 cameras (the
README's per-location table) in about 20 scenes (campus, mosque, shops, a procession).
The authors publish no per-split counts for the packaged train/query/gallery version, so
raybench checks only the total.

Layout: the packaged Market-1501-style version, IUSTPersonReID/{bounding_box_train,query,
bounding_box_test}/0001_c1_s1_000151.jpg. The camera number can have several digits
(c12), unlike Market-1501's, so the pattern reads all of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter
from raybench.datasets.common import market_style

LAYOUT = "IUSTPersonReID/{bounding_box_train,query,bounding_box_test}/0001_c1_s1_000151.jpg"
NAMES = ("IUSTPersonReID", "IUST_PersonReId", "IUSReID", "iustreid")
PATTERN = re.compile(r"^([-\d]+)_c(\d+)")


def parse(root: Path) -> pa.Table:
    return market_style(root, dataset="iustreid", layout=LAYOUT, names=NAMES, pattern=PATTERN,
                        example="0001_c12_s1_000151.jpg")


ADAPTER = Adapter(parse=parse, layout=LAYOUT)
