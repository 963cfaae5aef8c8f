"""Celeb-reID: long-term re-identification with clothes changes (celebrity street photos).

Reference: Huang et al. Beyond Scalar Neuron: Adopting Vector-Neuron Capsules for Long-Term
Person Re-Identification. IEEE TCSVT 2019; Huang et al. Celebrities-ReID: A Benchmark for
Clothes Variation in Long-Term Person Re-Identification. IJCNN 2019.
URL: https://github.com/Huang-3/Celeb-reID

Published statistics (``PUBLISHED``): 34,186 images of 1,052 identities. Photo sizes
vary: the adapter's ``crop`` is a round typical value.

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

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import locate, one_camera_per_image, rows_to_manifest, scan, touch

LAYOUT = "Celeb-reID/{train,query,gallery}/1_2_0.jpg"
NAMES = ("Celeb-reID", "celebreid", "Celeb-ReID")
PATTERN = re.compile(r"^(-?\d+)_\d+")
PUBLISHED = Published(
    {"train": {"images": 20208, "ids": 632}, "query": {"images": 2972, "ids": 420},
     "gallery": {"images": 11006, "ids": 420}},
    source="Huang et al. TCSVT 2019 (github.com/Huang-3/Celeb-reID)")


def parse(root: Path) -> pa.Table:
    base = locate(root, ["query", "gallery"], NAMES, "celebreid", LAYOUT)
    folders = {split: base / split for split in ("train", "query", "gallery")}
    rows = scan(folders, PATTERN, dataset="celebreid", layout=LAYOUT, example="1_2_0.jpg")
    return one_camera_per_image(rows_to_manifest(rows, "celebreid", LAYOUT))


def tiny_copy(folder: Path) -> TinyCopy:
    base = folder / "Celeb-reID"
    touch(base / "train", "1_1_0.jpg", "1_2_0.jpg", "2_1_0.jpg")
    touch(base / "query", "3_1_0.jpg", "4_1_0.jpg")
    touch(base / "gallery", "3_1_1.jpg", "3_2_0.jpg", "4_2_0.jpg", "4_3_1.jpg")
    return TinyCopy(folder, splits={"train": (3, 2, 3), "query": (2, 2, 2), "gallery": (4, 2, 4)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(256, 128), tiny_copies=(tiny_copy,))
