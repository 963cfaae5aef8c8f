"""Market-1501.

Reference: Zheng et al. Scalable Person Re-identification: A Benchmark. ICCV 2015.
URL: https://zheng-lab.cecs.anu.edu.au/Project/project_reid.html

Published statistics (``PUBLISHED``): 1,501 identities from 6 cameras. The gallery counts
are those once the 3,819 junk images (pid -1) are dropped: 750 ids plus the distractors
(pid 0), i.e. 751 "ids" as torchreid counts them. Crops are 128x64.

Layout: Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/
0002_c1s1_000451_03.jpg: pid 0002, camera 1 (camid 0), sequence 1, frame 000451, box 03.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import market_style, touch

LAYOUT = "Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/0002_c1s1_000451_03.jpg"
NAMES = ("Market-1501-v15.09.15", "market1501", "Market-1501")
# torchreid's pattern: the camera is one digit, what follows it (s1_...) is ignored.
PATTERN = re.compile(r"^([-\d]+)_c(\d)")
PUBLISHED = Published(
    {"train": {"images": 12936, "ids": 751, "cameras": 6}, "query": {"images": 3368, "ids": 750, "cameras": 6},
     "gallery": {"images": 15913, "ids": 751, "cameras": 6}},
    source="Zheng et al. ICCV 2015; torchreid market1501.py (junk pid -1 dropped, distractors pid 0 kept)")


def parse(root: Path) -> pa.Table:
    return market_style(root, dataset="market1501", layout=LAYOUT, names=NAMES, pattern=PATTERN,
                        example="0002_c1s1_000451_03.jpg")


def tiny_copy(folder: Path) -> TinyCopy:
    """Junk (pid -1) and a distractor (pid 0) in the gallery, a stray non-image file."""
    base = folder / "Market-1501-v15.09.15"
    touch(base / "bounding_box_train", "0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_077344_04.jpg")
    touch(base / "query", "0001_c1s1_001051_00.jpg", "0001_c5s1_001101_00.jpg", "0003_c6s1_000001_00.jpg")
    touch(base / "bounding_box_test", "0001_c2s1_000301_02.jpg", "0003_c4s2_000002_01.jpg",
          "0000_c3s1_000003_01.jpg", "-1_c1s1_000401_03.jpg", "-1_c2s1_000402_03.jpg", "Thumbs.db")
    return TinyCopy(folder, splits={"train": (3, 2, 3), "query": (3, 2, 3), "gallery": (3, 3, 3)},
                    rows={("query", "0003_c6s1_000001_00.jpg"): (3, 5), ("gallery", "0000_c3s1_000003_01.jpg"): (0, 2)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(128, 64), tiny_copies=(tiny_copy,),
                  naming=PATTERN)
