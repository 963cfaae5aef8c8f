"""Celeb-reID: long-term re-identification with clothes changes (celebrity street photos).

Reference: Huang et al. Beyond Scalar Neuron: Adopting Vector-Neuron Capsules for Long-Term
Person Re-Identification. IEEE TCSVT 2019; Huang et al. Celebrities-ReID: A Benchmark for
Clothes Variation in Long-Term Person Re-Identification. IJCNN 2019.
URL: https://github.com/Huang-3/Celeb-reID

Published statistics: 34,186 images of 1,052 identities. Train 632 ids / 20,208 images;
query 420 ids / 2,972 images; gallery 420 ids / 11,006 images.

Layout: Celeb-reID/{train,query,gallery}/1_2_0.jpg: pid 1, the pid's 2nd image, and a
field without meaning. The photos come from the web, so there are no cameras. raybench
gives every image its own camera id (its row in the sorted manifest) and scores the
dataset without camera filtering: no true match can ever be removed as a "same camera"
match. The study read the image index as a camera (defect 9), so a query and a gallery
image of the same person with the same index silently lost their match.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter
from raybench.datasets.common import locate, one_camera_per_image, rows_to_manifest, scan

LAYOUT = "Celeb-reID/{train,query,gallery}/1_2_0.jpg"
NAMES = ("Celeb-reID", "celebreid", "Celeb-ReID")
PATTERN = re.compile(r"^(-?\d+)_\d+")


def parse(root: Path) -> pa.Table:
    base = locate(root, ["query", "gallery"], NAMES, "celebreid", LAYOUT)
    folders = {split: base / split for split in ("train", "query", "gallery")}
    rows = scan(folders, PATTERN, dataset="celebreid", layout=LAYOUT, example="1_2_0.jpg")
    return one_camera_per_image(rows_to_manifest(rows, "celebreid", LAYOUT))


ADAPTER = Adapter(parse=parse, layout=LAYOUT)
