"""iLIDS-VID, video ReID: 300 people, one tracklet in each of 2 cameras, 10 published splits.

Reference: Wang et al. Person Re-Identification by Video Ranking. ECCV 2014.
URL: https://xiatian-zhu.github.io/downloads_qmul_iLIDS-VID_ReID_dataset.html (torchreid's
ilidsvid.py downloads http://www.eecs.qmul.ac.uk/~xiatian/iLIDS-VID/iLIDS-VID.tar).

Layout: ilids-vid/i-LIDS-VID/sequences/cam{1,2}/person001/cam1_person001_00317.png (frames
numbered in the source video, zero-padded) and ilids-vid/train-test people splits/
train_test_splits_ilidsvid.mat (key ls_set: 10 rows, one per split, of the 300 persons as
1-based indices into the sorted person folders; the first 150 test, the rest train, as Wang et
al. and torchreid split them).

Protocol: each split is a trial (query: cam1 tracklets of its 150 test persons; gallery: their
cam2 tracklets), reported as the mean over the 10 and their spread, as GRID's are. A person is
identified by its folder number (person001 -> 1) in every trial; torchreid numbers the test
persons 0..149 per split instead, which ranks the same. A tracklet is every frame in its
folder, in name (temporal) order; torchreid's unsorted glob only changes which frames its
``evenly`` sampling picks, and raybench's order is the video's.

Published statistics (``PUBLISHED``, per split): 150 test ids, a query and a gallery tracklet
each; 150 train ids with both tracklets; 2 cameras (torchreid ilidsvid.py: 300 ids, 600
tracklets, and its assertions on the split file). Frame counts are not stated here: the
often-quoted 23..192 frames per tracklet could not be checked against a primary source.
Frames are 128x64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, load_mat_v5, locate, touch
from raybench.datasets.video import frame_files, person_folders, tracklet_manifest, two_camera_tracklets
from raybench.errors import DatasetError

LAYOUT = ("ilids-vid/{i-LIDS-VID/sequences/cam{1,2}/person001/cam1_person001_00317.png, "
          "train-test people splits/train_test_splits_ilidsvid.mat}")
NAMES = ("ilids-vid", "iLIDS-VID")
SEQUENCES = "i-LIDS-VID/sequences"
SPLITS = "train-test people splits/train_test_splits_ilidsvid.mat"
CAMERAS = ("cam1", "cam2")
PUBLISHED = Published(
    {"train": {"ids": 150, "cameras": 2, "tracklets": 300}, "query": {"ids": 150, "cameras": 1, "tracklets": 150},
     "gallery": {"ids": 150, "cameras": 1, "tracklets": 150}},
    source="Wang et al. ECCV 2014; torchreid ilidsvid.py (300 ids, 600 tracklets, 10 splits of 150/150; per split)")


def parse(root: Path, trials: int = 10) -> pa.Table:
    base = locate(root, [SEQUENCES, SPLITS], NAMES, "ilidsvid", LAYOUT)
    persons = {cam: [p.name for p in person_folders(base / SEQUENCES / cam, "ilidsvid", LAYOUT)] for cam in CAMERAS}
    if persons["cam1"] != persons["cam2"]:
        odd = sorted(set(persons["cam1"]) ^ set(persons["cam2"]))
        raise DatasetError(f"ilidsvid: {odd[0]} is in one camera's folder only; each person has a tracklet in both")
    splits = read_splits(base / SPLITS, len(persons["cam1"]), trials)
    frames = {(cam, person): [absolute(p) for p in frame_files(base / SEQUENCES / cam / person, "ilidsvid", LAYOUT)]
              for cam in CAMERAS for person in persons["cam1"]}
    per_trial = [(persons["cam1"], {persons["cam1"][i] for i in test}) for test in splits]
    return tracklet_manifest(two_camera_tracklets(per_trial, CAMERAS, frames, "ilidsvid", "person", LAYOUT),
                             "ilidsvid", LAYOUT)


def read_splits(path: Path, persons: int, trials: int) -> list[set[int]]:
    """The test persons of each split, as 0-based indices into the sorted person folders."""
    data = load_mat_v5(path, "ilidsvid", LAYOUT)
    if "ls_set" not in data:
        raise DatasetError(f"ilidsvid: {path.name} has no key 'ls_set'. Expected layout: {LAYOUT}")
    table = np.asarray(data["ls_set"])
    if table.ndim != 2 or table.shape[0] < trials or table.shape[1] != persons:
        raise DatasetError(f"ilidsvid: {path.name}: ls_set has shape {table.shape}; expected at least {trials} "
                           f"splits of the {persons} persons")
    out = []
    for row in table[:trials].astype(np.int64):
        if sorted(row.tolist()) != list(range(1, persons + 1)):
            raise DatasetError(f"ilidsvid: {path.name}: a split does not list each of the {persons} persons once")
        out.append(set((row[: persons // 2] - 1).tolist()))
    return out


# -- a tiny copy in the real layout --------------------------------------------------------


def write_splits(path: Path, splits: list[list[int]]) -> None:
    """train_test_splits_ilidsvid.mat: ``ls_set``, one row per split of 1-based person indices,
    test persons first."""
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"ls_set": np.asarray(splits, dtype=np.float64)})


def write_tree(folder: Path, lengths: dict[str, tuple[int, int]], splits: list[list[int]]) -> Path:
    """ilids-vid/ under ``folder``: per person folder name, the frames of its cam1 and cam2
    tracklets (empty files with the real names), and the splits."""
    base = folder / "ilids-vid"
    for person, counts in lengths.items():
        for cam, count in zip(CAMERAS, counts):
            start = 100 + 37 * int(person[-3:])
            touch(base / SEQUENCES / cam / person, *(f"{cam}_{person}_{start + i:05d}.png" for i in range(count)))
    write_splits(base / SPLITS, splits)
    return base


def tiny_copy(folder: Path) -> TinyCopy:
    """4 persons (numbers with gaps, as the real folders have), 2 splits of 2 test persons."""
    lengths = {"person001": (3, 2), "person002": (1, 4), "person005": (2, 2), "person012": (5, 1)}
    write_tree(folder, lengths, [[1, 3, 2, 4], [4, 2, 1, 3]])
    splits = [
        {"train": (11, 2, 2, 4), "query": (5, 2, 1, 2), "gallery": (4, 2, 1, 2)},
        {"train": (9, 2, 2, 4), "query": (6, 2, 1, 2), "gallery": (5, 2, 1, 2)},
    ]
    return TinyCopy(folder, {"trials": 2}, splits=splits, rows={("query", "cam1_person012_00544.png"): (12, 0)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(128, 64), tiny_copies=(tiny_copy,))
