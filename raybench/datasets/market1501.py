"""Market-1501.

Reference: Zheng et al. Scalable Person Re-identification: A Benchmark. ICCV 2015.
URL: https://zheng-lab.cecs.anu.edu.au/Project/project_reid.html

Published statistics: 1,501 identities from 6 cameras. Train 751 ids / 12,936 images;
query 750 ids / 3,368 images; gallery 15,913 images once the 3,819 junk images (pid -1) are
dropped: 750 ids plus the distractors (pid 0), i.e. 751 "ids" as torchreid counts them.

Layout: Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/
0002_c1s1_000451_03.jpg: pid 0002, camera 1 (camid 0), sequence 1, frame 000451, box 03.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter
from raybench.datasets.common import market_style

LAYOUT = "Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/0002_c1s1_000451_03.jpg"
NAMES = ("Market-1501-v15.09.15", "market1501", "Market-1501")
# torchreid's pattern: the camera is one digit, what follows it (s1_...) is ignored.
PATTERN = re.compile(r"^([-\d]+)_c(\d)")


def parse(root: Path) -> pa.Table:
    return market_style(root, dataset="market1501", layout=LAYOUT, names=NAMES, pattern=PATTERN,
                        example="0002_c1s1_000451_03.jpg")


ADAPTER = Adapter(parse=parse, layout=LAYOUT)
