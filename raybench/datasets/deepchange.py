"""DeepChange: long-term person re-identification with clothes change (17 outdoor cameras, 12 months).

Reference: Xu and Zhu. DeepChange: A Long-Term Person Re-Identification Benchmark with
Clothes Change. ICCV 2023 (arXiv:2105.14685).
URL: https://github.com/PengBoXiangShang/deepchange

Published statistics: 178,407 bounding boxes of 1,121 identities from 17 cameras over 12
months (the repository's README). The per-split counts cited for the paper (train 450 ids /
75,083 boxes; val 150 ids, query 4,976, gallery 17,865; test 521 ids, query 17,527, gallery
62,956) could not be read from the paper here, so `datasets check` compares nothing
(``PUBLISHED`` states no counts) rather than a guess.

Layout: DeepChangeDataset/{train-set,val-set-query,val-set-gallery,test-set-query,test-set-gallery}/
with the list files DeepChangeDataset/<folder>-bbox.txt, one "<image name>,<tracklet id>" per
line. Names are "P<pid>_C<cam>_<third>_..." (split on "_"); Simple-CCReID (data/datasets/
deepchange.py) takes the clothes key as "P<pid>" + the third field, which a third-party
parser names the day: an outfit-per-day proxy, not an annotated outfit. raybench keeps that
key ("P<pid>_<third>") so its cc and sc settings are Simple-CCReID's, and says so.

The same-camera rule (option ``camera``): DeepChange's benchmark lets a true match come from
the query's own camera, from another tracklet (Simple-CCReID: "on DeepChange, we allow the
true matches coming from the same camera but different tracklets as query following the
original paper. So we use tracklet_id to replace camid"). raybench does the same by default
(``camera: tracklet``: camid = the list file's tracklet id, so only images of the query's own
tracklet are junk), since that is the rule published DeepChange numbers use; ``camera:
camera`` gives the Market rule (camid = C<cam> - 1, every same-camera image junk) for
comparison. Option ``subset``: ``test`` (the benchmark) or ``val``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, locate, read_text, rows_to_manifest, touch
from raybench.errors import DatasetError

LAYOUT = ("DeepChangeDataset/{train-set,test-set-query,test-set-gallery,val-set-query,val-set-gallery}/ + "
          "<folder>-bbox.txt lines '<name>,<tracklet>'; names P<pid>_C<cam>_<third>_...jpg")
NAMES = ("DeepChangeDataset", "DeepChange", "deepchange")
SUBSETS = ("test", "val")
CAMERA_RULES = ("tracklet", "camera")
PATTERN = re.compile(r"^(P(\d+))_C(\d+)_([^_.]+)")
EXAMPLE = "P00001_C01_D0001_T1152_0001_0001.jpg"
PUBLISHED = Published({}, source="DeepChange README (github.com/PengBoXiangShang/deepchange): 178,407 boxes, "
                                 "1,121 ids, 17 cameras in total; the per-split counts are not confirmed")


def parse(root: Path, subset: str = "test", camera: str = "tracklet") -> pa.Table:
    if subset not in SUBSETS:
        raise DatasetError(f"deepchange: subset {subset!r}; allowed: {', '.join(SUBSETS)}")
    if camera not in CAMERA_RULES:
        raise DatasetError(f"deepchange: camera {camera!r}; allowed: {', '.join(CAMERA_RULES)} (module docstring)")
    folders = {"query": f"{subset}-set-query", "gallery": f"{subset}-set-gallery", "train": "train-set"}
    lists = [f"{f}-bbox.txt" for f in folders.values()]
    base = locate(root, lists[:2], NAMES, "deepchange", LAYOUT)
    rows = []
    for (split, folder), listing in zip(folders.items(), lists):
        if split == "train" and not (base / listing).is_file():
            continue
        rows += _rows(base, folder, listing, split, camera)
    return rows_to_manifest(rows, f"deepchange-{subset}", LAYOUT)


def _rows(base: Path, folder: str, listing: str, split: str, camera: str) -> list[dict]:
    rows = []
    for n, line in enumerate(read_text(base / listing, "deepchange", LAYOUT).splitlines(), 1):
        if not line.strip():
            continue
        name, _, tracklet = line.strip().partition(",")
        found = PATTERN.match(name)
        if found is None or not tracklet.strip().lstrip("-").isdigit():
            raise DatasetError(f"deepchange: {listing} line {n} is {line.strip()!r}; expected '<name>,<tracklet id>' "
                               f"with a name like {EXAMPLE!r}. Expected layout: {LAYOUT}")
        person, pid, cam, third = found.groups()
        camid = int(tracklet) if camera == "tracklet" else int(cam) - 1
        rows.append({"path": absolute(base / folder / name), "pid": int(pid), "camid": camid, "split": split,
                     "clothes": f"{person}_{third}"})
    if not rows:
        raise DatasetError(f"deepchange: {base / listing} lists no image. Expected layout: {LAYOUT}")
    return rows


def _write(base: Path, folder: str, lines: list[tuple[str, int]]) -> None:
    touch(base / folder, *(name for name, _ in lines))
    (base / f"{folder}-bbox.txt").write_text("".join(f"{name},{t}\n" for name, t in lines))


def tiny_copy(folder: Path, camera: str = "tracklet") -> TinyCopy:
    """Person 7 seen by camera 1 in two tracklets (days 1 and 2) and by camera 3; person 8."""
    base = folder / "DeepChangeDataset"
    _write(base, "train-set", [("P00001_C02_D0001_T0900_0001_0001.jpg", 1), ("P00002_C05_D0003_T1000_0001_0001.jpg", 2)])
    _write(base, "test-set-query", [("P00007_C01_D0001_T0915_0003_0001.jpg", 70),
                                    ("P00008_C04_D0002_T1105_0002_0001.jpg", 80)])
    _write(base, "test-set-gallery", [("P00007_C01_D0001_T0915_0003_0002.jpg", 70),
                                      ("P00007_C01_D0002_T1310_0001_0001.jpg", 71),
                                      ("P00007_C03_D0002_T1320_0004_0001.jpg", 72),
                                      ("P00008_C04_D0005_T0810_0001_0001.jpg", 81)])
    _write(base, "val-set-query", [("P00005_C09_D0001_T0700_0001_0001.jpg", 50)])
    _write(base, "val-set-gallery", [("P00005_C10_D0001_T0702_0001_0001.jpg", 51)])
    cams = {"tracklet": ((4, 2, 4), 71), "camera": ((4, 2, 3), 0)}[camera]
    return TinyCopy(folder, {"camera": camera}, splits={"train": (2, 2, 2), "query": (2, 2, 2), "gallery": cams[0]},
                    rows={("gallery", "P00007_C01_D0002_T1310_0001_0001.jpg"): (7, cams[1])},
                    clothes={("gallery", "P00007_C03_D0002_T1320_0004_0001.jpg"): "P00007_D0002"})


def tiny_copy_camera(folder: Path) -> TinyCopy:
    return tiny_copy(folder, "camera")


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(256, 128),
                  tiny_copies=(tiny_copy, tiny_copy_camera))
