"""DukeMTMC-VideoReID, video ReID: tracklets of DukeMTMC's 8 cameras.

References: Wu et al. Exploit the Unknown Gradually: One-Shot Video-Based Person
Re-Identification by Stepwise Learning. CVPR 2018; Ristani et al. Performance Measures and a
Data Set for Multi-Target, Multi-Camera Tracking. ECCV workshops 2016.
URL: https://github.com/Yu-Wu/DukeMTMC-VideoReID. Like DukeMTMC-reID, it was withdrawn by its
authors in 2019 and is no longer distributed: use only a copy you already hold, under its
original terms.

Layout: DukeMTMC-VideoReID/{train,query,gallery}/0001/0003/0001C6F0099X30823.jpg: split,
person, tracklet, then the frame (pid 0001, camera 6 -> camid 5, the 99th frame of the
tracklet, frame 30823 of camera 6's video); newer copies name frames 0001_C6_F0099_X30823.jpg.
torchreid's folder (dukemtmc-vidreid/DukeMTMC-VideoReID) is found too.

Protocol (the dataset's README and torchreid's dukemtmcvidreid.py): query/ holds one tracklet
per test identity, gallery/ the other tracklets of the 702 test identities and those of 408
distractor identities, which are ordinary identities without a query; same pid and same camera
is junk. A tracklet is every frame of its folder, in name (temporal) order, and its camera is
its first frame's. torchreid instead looks frames up as F0001..F<n> for a folder of n frames,
so a tracklet whose numbering starts at F0002 (its code comment says some do) loses its last
frame there; raybench keeps it.

Published statistics (``PUBLISHED``): 702 train ids in 2,196 tracklets of 369,656 frames; 702
query tracklets of 702 ids; a gallery of 2,636 tracklets, 445,764 frames, 1,110 ids (702 test
and 408 distractors) (the dataset's README, its older version for the frame counts; torchreid's
docstring). Query frames and cameras per split are not stated: no primary source gives them.
Crop sizes vary; ``crop`` is DukeMTMC-reID's typical value.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, locate, match_name, touch
from raybench.datasets.video import Tracklet, frame_files, person_folders, tracklet_manifest
from raybench.errors import DatasetError

LAYOUT = "DukeMTMC-VideoReID/{train,query,gallery}/0001/0003/0001C6F0099X30823.jpg"
NAMES = ("DukeMTMC-VideoReID", "dukemtmc-vidreid", "dukemtmc-videoreid")
SPLITS = ("train", "query", "gallery")
#: both namings: 0001C6F0099X30823.jpg and 0001_C6_F0099_X30823.jpg
PATTERN = re.compile(r"^(\d+)_?C(\d)_?F(\d+)")
EXAMPLE = "0001C6F0099X30823.jpg"
PUBLISHED = Published(
    {"train": {"images": 369656, "ids": 702, "tracklets": 2196}, "query": {"ids": 702, "tracklets": 702},
     "gallery": {"images": 445764, "ids": 1110, "tracklets": 2636}},
    source="Wu et al. CVPR 2018 (Yu-Wu/DukeMTMC-VideoReID README); torchreid dukemtmcvidreid.py")


def parse(root: Path) -> pa.Table:
    base = locate(root, ["query", "gallery"], NAMES, "dukemtmc-videoreid", LAYOUT)
    tracklets = []
    for split in SPLITS:
        if split == "train" and not (base / split).is_dir():
            continue  # evaluation needs query and gallery only
        for person in person_folders(base / split, "dukemtmc-videoreid", LAYOUT):
            if not person.name.isdigit():
                raise DatasetError(f"dukemtmc-videoreid: {person} is not a person folder (digits). "
                                   f"Expected layout: {LAYOUT}")
            for folder in person_folders(person, "dukemtmc-videoreid", LAYOUT):
                frames = frame_files(folder, "dukemtmc-videoreid", LAYOUT, (".jpg",))
                cam = int(match_name(PATTERN, frames[0], "dukemtmc-videoreid", EXAMPLE).group(2))
                tracklets.append(Tracklet(f"{split}/{person.name}/{folder.name}", [absolute(f) for f in frames],
                                          int(person.name), cam - 1, split))
    return tracklet_manifest(tracklets, "dukemtmc-videoreid", LAYOUT)


def tiny_copy(folder: Path) -> TinyCopy:
    """Both namings, a tracklet numbered from F0002, a distractor identity in the gallery."""
    base = folder / "DukeMTMC-VideoReID"
    touch(base / "train" / "0001" / "0001", "0001C6F0001X30823.jpg", "0001C6F0002X30835.jpg")
    touch(base / "query" / "0005" / "0002", "0005C2F0001X46985.jpg", "0005C2F0002X46997.jpg")
    touch(base / "query" / "0008" / "0001", "0008_C8_F0001_X00001.jpg")
    touch(base / "gallery" / "0005" / "0004", "0005C1F0002X45000.jpg", "0005C1F0003X45012.jpg",
          "0005C1F0004X45024.jpg")
    touch(base / "gallery" / "0008" / "0003", "0008_C7_F0001_X00100.jpg")
    touch(base / "gallery" / "4141" / "0001", "4141_C8_F0001_X22224.jpg", "4141_C8_F0002_X22236.jpg")
    return TinyCopy(base, splits={"train": (2, 1, 1, 1), "query": (3, 2, 2, 2), "gallery": (6, 3, 3, 3)},
                    rows={("query", "0008_C8_F0001_X00001.jpg"): (8, 7), ("gallery", "0005C1F0004X45024.jpg"): (5, 0)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(256, 100), tiny_copies=(tiny_copy,))
