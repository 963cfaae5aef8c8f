"""PRCC: Person Re-identification under moderate Clothing Change (3 indoor cameras).

Reference: Yang, Wu, Zheng. Person Re-identification by Contour Sketch under Moderate
Clothing Change. IEEE TPAMI 2019 (published 2021).
URL: https://drive.google.com/file/d/1yTYawRm4ap3M-j0PjLQJ--xmZHseFDLz/view (the link
Simple-CCReID's prcc.py names)

Published statistics (``PUBLISHED``): 221 identities, 33,698 images, 3 cameras (the CC
literature's tables, e.g. CCUP arXiv:2410.13567); 150 identities train, 71 test. The
per-folder image counts that CC code logs (train 17,896, val 5,002; test: gallery A 3,384,
same-clothes queries B 3,543, clothes-changing queries C 3,873, together 10,800) could not be
confirmed from the paper here, so `datasets check` does not compare them.

Layout: prcc/rgb/{train,val,test}. Train: rgb/train/<pid>/A_cropped_rgb001.jpg, the first
letter of the name is the camera (A, B, C). Test: rgb/test/{A,B,C}/<pid>/*.jpg, the folder is
the camera. Cameras A and B see a person in one outfit, camera C in another: A is the
gallery, B the same-clothes queries, C the clothes-changing queries (camids A 0, B 1, C 2;
clothes key "<pid>_AB" or "<pid>_C"). rgb/val is not read (not used for evaluation).

Scoring (configs/datasets.yaml), as Simple-CCReID's test_prcc and the CC papers: ``sc`` =
camera-B queries against the camera-A gallery, ``cc`` = camera-C queries against it (the
headline), each by the standard rule (no query shares a gallery camera, so nothing is junk;
every A image of the person is a true match: multi-shot). The paper's own protocol is
single-shot: one randomly drawn gallery image per identity, 10 draws averaged; the settings
``sc-single`` and ``cc-single`` do that (seeded draws, reported with their spread). Papers use
either (Simple-CCReID issue #7): compare like with like.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, list_images, locate, require_images, rows_to_manifest, touch
from raybench.errors import DatasetError

LAYOUT = "prcc/rgb/{train/<pid>/A_*.jpg, test/{A,B,C}/<pid>/*.jpg}"
NAMES = ("prcc", "PRCC")
CAMERAS = {"A": 0, "B": 1, "C": 2}
ROLES = {"A": "gallery", "B": "query", "C": "query"}
WHAT = {"A": "the gallery (camera A)", "B": "the same-clothes queries (camera B)",
        "C": "the clothes-changing queries (camera C)"}
PUBLISHED = Published(
    {"train": {"ids": 150, "cameras": 3}, "query": {"ids": 71, "cameras": 2}, "gallery": {"ids": 71, "cameras": 1}},
    source="Yang et al. TPAMI 2019 (221 ids: 150 train, 71 test; 3 cameras); image counts per folder not confirmed")


def parse(root: Path) -> pa.Table:
    base = locate(root, ["rgb/test"], NAMES, "prcc", LAYOUT)
    test = base / "rgb" / "test"
    for cam in CAMERAS:
        if not (test / cam).is_dir():
            raise DatasetError(f"prcc: {test / cam} is missing: {WHAT[cam]}; a PRCC copy has test/A, test/B and "
                               f"test/C. Expected layout: {LAYOUT}")
    rows = [row for cam in CAMERAS for row in _test_rows(test / cam, cam)]
    train = base / "rgb" / "train"
    if train.is_dir():
        rows += _train_rows(train)
    return rows_to_manifest(rows, "prcc", LAYOUT)


def _person_folders(folder: Path) -> list[Path]:
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    for person in people:
        if not person.name.isdigit():
            raise DatasetError(f"prcc: {person} is not a person folder (its name is the pid, e.g. 001). "
                               f"Expected layout: {LAYOUT}")
    if not people:
        raise DatasetError(f"prcc: no person folders in {folder}. Expected layout: {LAYOUT}")
    return people


def _test_rows(folder: Path, cam: str) -> list[dict]:
    return [{"path": absolute(path), "pid": int(person.name), "camid": CAMERAS[cam], "split": ROLES[cam],
             "clothes": _clothes(person.name, cam)}
            for person in _person_folders(folder) for path in require_images(person, "prcc", LAYOUT)]


def _train_rows(folder: Path) -> list[dict]:
    rows = []
    for person in _person_folders(folder):
        for path in list_images(person):
            cam = path.name[:1].upper()
            if cam not in CAMERAS:
                raise DatasetError(f"prcc: train image {path.name!r} in {person} does not start with its camera "
                                   f"(A, B or C, e.g. 'A_cropped_rgb001.jpg'). Expected layout: {LAYOUT}")
            rows.append({"path": absolute(path), "pid": int(person.name), "camid": CAMERAS[cam], "split": "train",
                         "clothes": _clothes(person.name, cam)})
    return rows


def _clothes(pid: str, cam: str) -> str:
    """A and B: the person's first outfit; C: the other one."""
    return f"{pid}_{'C' if cam == 'C' else 'AB'}"


def tiny_copy(folder: Path) -> TinyCopy:
    base = folder / "prcc" / "rgb"
    touch(base / "train", "001/A_cropped_rgb001.jpg", "001/B_cropped_rgb002.jpg", "001/C_cropped_rgb003.jpg",
          "002/A_cropped_rgb001.jpg")
    touch(base / "val", "003/A_cropped_rgb001.jpg")
    for cam, n in (("A", 2), ("B", 1), ("C", 2)):
        for pid in ("010", "011"):
            touch(base / "test" / cam / pid, *(f"cropped_rgb{k:03d}.jpg" for k in range(n)))
    return TinyCopy(folder, splits={"train": (4, 2, 3), "query": (6, 2, 2), "gallery": (4, 2, 1)},
                    rows={("query", "cropped_rgb001.jpg"): (11, 2), ("gallery", "cropped_rgb000.jpg"): (11, 0)},
                    clothes={("query", "cropped_rgb001.jpg"): "011_C", ("gallery", "cropped_rgb001.jpg"): "011_AB"})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(256, 128), tiny_copies=(tiny_copy,))
