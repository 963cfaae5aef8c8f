"""Celeb-reID: long-term re-identification with clothes changes (celebrity street photos).

Reference: Huang et al. Beyond Scalar Neuron: Adopting Vector-Neuron Capsules for Long-Term
Person Re-Identification. IEEE TCSVT 2019; Huang et al. Celebrities-ReID: A Benchmark for
Clothes Variation in Long-Term Person Re-Identification. IJCNN 2019.
URL: https://github.com/Huang-3/Celeb-reID

Published statistics (``PUBLISHED``): 34,186 images of 1,052 identities. Photo sizes
vary: the adapter's ``crop`` is a round typical value.

Layout: Celeb-reID/{train,query,gallery}/1_2_0.jpg: pid 1, the pid's 2nd image, and a
field without meaning. The photos come from the web, so there are no cameras.

Two protocols (option ``cameras``):

- ``per-image`` (raybench's default, catalog entry ``celebreid``): every image its own camera
  id (its row in the sorted manifest), scored without camera filtering, so no true match can
  be removed as a "same camera" match.
- ``official`` (catalog entry ``celebreid-official``): the dataset authors' own rule, for
  comparison with published Celeb-reID numbers. Their loader (Huang-3/Celeb-reID,
  reid/data_loader_1stream.py, ``name_pattern='celeb'``) reads a pseudo-camera from the name
  with ``([-\\d]+)_(\\d)``, i.e. the first digit of the image index (1_2_0.jpg: camera 2,
  1_12_0.jpg: camera 1), and their evaluator (reid/evaluator.py: open-reid's ``mean_ap`` and
  ``cmc`` with the Market config) drops gallery images of the query's person under the same
  pseudo-camera; its AP is the area under the precision-recall curve (``auc(recall,
  precision)``), which the catalog entry's ``ap: trapezoid`` reproduces. The study read the
  index as a camera too (its defect 9 in PROTOCOLS.md): that is this official rule, not an
  invention of the study's, though it can drop a true match for an accident of numbering.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import locate, one_camera_per_image, rows_to_manifest, scan, touch
from raybench.errors import DatasetError

LAYOUT = "Celeb-reID/{train,query,gallery}/1_2_0.jpg"
NAMES = ("Celeb-reID", "celebreid", "Celeb-ReID")
PATTERN = re.compile(r"^(-?\d+)_\d+")
#: The authors' pattern, searched in the file's name as their loader does: pid, pseudo-camera.
OFFICIAL = re.compile(r"([-\d]+)_(\d)")
CAMERAS = ("per-image", "official")
PUBLISHED = Published(
    {"train": {"images": 20208, "ids": 632}, "query": {"images": 2972, "ids": 420},
     "gallery": {"images": 11006, "ids": 420}},
    source="Huang et al. TCSVT 2019 (github.com/Huang-3/Celeb-reID)")


def parse(root: Path, cameras: str = "per-image") -> pa.Table:
    if cameras not in CAMERAS:
        raise DatasetError(f"celebreid: cameras {cameras!r}; allowed: {', '.join(CAMERAS)} (see the adapter's docstring)")
    base = locate(root, ["query", "gallery"], NAMES, "celebreid", LAYOUT)
    folders = {split: base / split for split in ("train", "query", "gallery")}
    official = cameras == "official"
    rows = scan(folders, OFFICIAL if official else PATTERN, dataset="celebreid", layout=LAYOUT, example="1_2_0.jpg")
    table = rows_to_manifest(rows, "celebreid", LAYOUT)
    return table if official else one_camera_per_image(table)


def tiny_copy(folder: Path) -> TinyCopy:
    base = folder / "Celeb-reID"
    touch(base / "train", "1_1_0.jpg", "1_2_0.jpg", "2_1_0.jpg")
    touch(base / "query", "3_1_0.jpg", "4_1_0.jpg")
    touch(base / "gallery", "3_1_1.jpg", "3_2_0.jpg", "4_2_0.jpg", "4_3_1.jpg")
    return TinyCopy(folder, splits={"train": (3, 2, 3), "query": (2, 2, 2), "gallery": (4, 2, 4)})


def tiny_copy_official(folder: Path) -> TinyCopy:
    """The authors' pseudo-cameras: the first digit of the image index, minus 1 (12_1 -> 0)."""
    base = folder / "Celeb-reID"
    touch(base / "train", "1_1_0.jpg", "1_2_0.jpg")
    touch(base / "query", "3_1_0.jpg", "4_12_1.jpg")
    touch(base / "gallery", "3_14_1.jpg", "3_2_0.jpg", "4_3_0.jpg", "-1_2_0.jpg")
    return TinyCopy(folder, {"cameras": "official"}, splits={"train": (2, 1, 2), "query": (2, 2, 1), "gallery": (3, 2, 3)},
                    rows={("query", "4_12_1.jpg"): (4, 0), ("gallery", "3_14_1.jpg"): (3, 0),
                          ("gallery", "4_3_0.jpg"): (4, 2)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(256, 128),
                  tiny_copies=(tiny_copy, tiny_copy_official))
