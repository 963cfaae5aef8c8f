"""GRID (QMUL underground re-identification), the 10 published splits as trials.

Reference: Loy et al. Multi-camera activity correlation analysis. CVPR 2009; Loy et al.
Time-delayed correlation analysis for multi-camera activity understanding. IJCV 2010.
URL: https://personal.ie.cuhk.edu.hk/~ccloy/downloads_qmul_underground_reid.html

Published statistics (``PUBLISHED``, per partition): 250 identities seen in both views
(probe/ 250 images, gallery/ 250 of them plus 775 images of people seen once, pid 0), 8
cameras, 128x64 crops. features_and_partitions.mat holds 10 partitions; in each, 125
identities train and the other 125 test: the test probe images are the queries and the
gallery is their gallery images plus the 775 distractors. The study scored split 0 only
(defect 6); raybench scores all 10 and reports mean and spread.

Layout: underground_reid/{probe,gallery}/0001_1_25004_107_32_106_221.jpeg (pid 0001,
camera 1 -> camid 0; 0000 marks a distractor) and underground_reid/features_and_partitions.mat.
Each of the 10 cells of trainIdxAll is a struct whose third field is the row of 125 train
identities (the field torchreid reads; the file's field names are not documented).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import (absolute, load_mat_v5, locate, match_name, require_images, rows_to_manifest,
                                      touch)
from raybench.errors import DatasetError

LAYOUT = "underground_reid/{probe,gallery}/0001_1_25004_107_32_106_221.jpeg + features_and_partitions.mat"
NAMES = ("underground_reid", "grid", "GRID")
MAT = "features_and_partitions.mat"
PATTERN = re.compile(r"^(\d+)_(\d+)_")
EXAMPLE = "0001_1_25004_107_32_106_221.jpeg"
PUBLISHED = Published(
    {"train": {"images": 250, "ids": 125}, "query": {"images": 125, "ids": 125}, "gallery": {"images": 900, "ids": 126},
     "images": 1275},
    source="Loy et al. CVPR 2009; torchreid grid.py (per partition; gallery ids include the pid 0 distractors)")


def parse(root: Path, trials: int = 10) -> pa.Table:
    base = locate(root, ["probe", "gallery", MAT], NAMES, "grid", LAYOUT)
    images = {role: _images(base / folder) for role, folder in (("query", "probe"), ("gallery", "gallery"))}
    train_sets = read_partitions(base / MAT, trials)
    known = {pid for items in images.values() for _, pid, _ in items}
    rows = []
    for trial, train_ids in enumerate(train_sets):
        unknown = train_ids - known
        if unknown:
            raise DatasetError(f"grid: {MAT} partition {trial} names identity {min(unknown)}, which has no image")
        for role, items in images.items():
            for path, pid, camid in items:
                split = "train" if pid in train_ids else role
                rows.append({"path": path, "pid": pid, "camid": camid, "split": split, "trial": trial})
    return rows_to_manifest(rows, "grid", LAYOUT)


def _images(folder: Path) -> list[tuple[str, int, int]]:
    items = []
    for path in require_images(folder, "grid", LAYOUT):
        found = match_name(PATTERN, path, "grid", EXAMPLE)
        items.append((absolute(path), int(found.group(1)), int(found.group(2)) - 1))
    return items


def read_partitions(path: Path, trials: int) -> list[set[int]]:
    """The train identities of each published partition."""
    data = load_mat_v5(path, "grid", LAYOUT)
    if "trainIdxAll" not in data:
        raise DatasetError(f"grid: {path.name} has no key 'trainIdxAll'. Expected layout: {LAYOUT}")
    cells = np.asarray(data["trainIdxAll"]).ravel()
    if len(cells) < trials:
        raise DatasetError(f"grid: {path.name} holds {len(cells)} partitions, the protocol asks for {trials}")
    sets = []
    for trial in range(trials):
        try:
            record = np.asarray(cells[trial]).ravel()[0]
            ids = np.asarray(record[2]).ravel().astype(np.int64)
        except (IndexError, TypeError, ValueError, KeyError):
            raise DatasetError(
                f"grid: {path.name}: trainIdxAll cell {trial} is not a struct whose third field lists "
                "the train identities"
            ) from None
        if ids.size == 0 or len(set(ids.tolist())) != ids.size:
            raise DatasetError(f"grid: {path.name}: partition {trial} lists no or repeated identities")
        sets.append(set(ids.tolist()))
    return sets


# -- a tiny copy in the real layout --------------------------------------------------------


def write_partitions(path: Path, train_sets: list[list[int]], key: str = "trainIdxAll") -> None:
    """features_and_partitions.mat: ``key`` is a 1xT cell of structs whose third field is the
    row of train identities (the field names are made up; the order is what counts)."""
    from scipy.io import savemat

    cells = np.empty((1, len(train_sets)), dtype=object)
    for t, ids in enumerate(train_sets):
        others = sorted(set(range(1, 251)) - set(ids))[:3]
        cells[0, t] = {"idx_probe": np.array([others]), "idx_gallery": np.array([others]),
                       "idx_train": np.array([ids], dtype=np.float64)}
    savemat(str(path), {key: cells, "featuresProbe": np.zeros((2, 2))})


def write_tree(folder: Path, persons: int, distractors: int, train_sets: list[list[int]]) -> Path:
    """underground_reid/ under ``folder``: a probe and a gallery image per person (the gallery
    one in the next camera), ``distractors`` pid 0 gallery images, the partitions."""
    base = folder / "underground_reid"
    for pid in range(1, persons + 1):
        cam = (pid - 1) % 8 + 1
        touch(base / "probe", f"{pid:04d}_{cam}_25004_107_32_106_221.jpeg")
        touch(base / "gallery", f"{pid:04d}_{cam % 8 + 1}_25020_200_40_100_200.jpeg")
    for j in range(distractors):
        touch(base / "gallery", f"0000_{j % 8 + 1}_{30000 + j}_10_20_30_40.jpeg")
    write_partitions(base / MAT, train_sets)
    return base


def tiny_copy(folder: Path) -> TinyCopy:
    """8 persons, 3 distractors, 3 partitions (trials)."""
    base = write_tree(folder, persons=8, distractors=3, train_sets=[[1, 2, 3, 4], [5, 6, 7, 8], [2, 4, 6, 8]])
    splits = [  # per trial: (images, ids, cameras)
        {"train": (8, 4, 5), "query": (4, 4, 4), "gallery": (7, 5, 6)},
        {"train": (8, 4, 5), "query": (4, 4, 4), "gallery": (7, 5, 5)},
        {"train": (8, 4, 8), "query": (4, 4, 4), "gallery": (7, 5, 6)},
    ]
    return TinyCopy(base, {"trials": 3}, splits=splits, rows={("query", "0005_5_25004_107_32_106_221.jpeg"): (5, 4)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(128, 64), tiny_copies=(tiny_copy,))
