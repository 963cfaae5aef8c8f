"""PRID2011 (multi-shot), video ReID: people seen by two cameras, 10 splits of 89/89.

Reference: Hirzer et al. Person Re-Identification by Descriptive and Discriminative
Classification. SCIA 2011. URL: https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/PRID11/
(camera A shows 385 persons, camera B 749; the first 200 appear in both).

Layout: prid2011/prid_2011/multi_shot/cam_{a,b}/person_0001/0001.png, and, from torchreid's
documentation (a separate download), prid2011/splits_prid2011.json: a list of 10
{"train": [person folders], "test": [person folders]}.

Protocol, as torchreid and the video ReID literature after Wang et al. (ECCV 2014) use it: the
178 persons of the 200 whose tracklets are long enough, 10 splits of 89 test and 89 train
persons; each split a trial (query: cam_a tracklets of its test persons; gallery: their cam_b
tracklets), reported as mean and spread. Option ``splits``: ``auto`` (default) reads
splits_prid2011.json when present and otherwise draws seeded splits; ``json`` requires the
file; ``seeded`` draws them: each trial a seeded permutation (``seed``) of the persons in both
cameras with at least ``min_frames`` frames in each tracklet, half of them test. Seeded splits
are not the published ones, and the cells' results say so (the manifest's note). The length
threshold behind the 178 (usually quoted as 27 frames) could not be checked against Wang et
al.'s text, so a seeded draw may hold another number of persons.

A person is identified by its folder number (person_0001 -> 1) in every trial (torchreid
numbers them per split, which ranks the same); a tracklet is every frame of its folder in name
(temporal) order.

Published statistics (``PUBLISHED``, per split, torchreid's splits file): 89 test ids, a query
and a gallery tracklet each; 89 train ids with both tracklets; 2 cameras. Frame counts are not
stated (5..675 frames per tracklet is quoted, not confirmed). Frames are 128x64.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, locate, read_text, touch
from raybench.datasets.video import frame_files, person_folders, tracklet_manifest, two_camera_tracklets
from raybench.errors import DatasetError, SpecError

LAYOUT = "prid2011/{prid_2011/multi_shot/cam_{a,b}/person_0001/0001.png, splits_prid2011.json}"
NAMES = ("prid2011", "PRID2011")
SHOTS = "prid_2011/multi_shot"
SPLITS_FILE = "splits_prid2011.json"
CAMERAS = ("cam_a", "cam_b")
SPLIT_SOURCES = ("auto", "json", "seeded")
PUBLISHED = Published(
    {"train": {"ids": 89, "cameras": 2, "tracklets": 178}, "query": {"ids": 89, "cameras": 1, "tracklets": 89},
     "gallery": {"ids": 89, "cameras": 1, "tracklets": 89}},
    source="Hirzer et al. SCIA 2011; Wang et al. ECCV 2014; torchreid splits_prid2011.json (10 splits of 89/89)")


def parse(root: Path, trials: int = 10, splits: str = "auto", seed: int = 0, min_frames: int = 27) -> pa.Table:
    if splits not in SPLIT_SOURCES:
        raise SpecError(f"prid2011: option splits is {splits!r}; allowed: {', '.join(SPLIT_SOURCES)}")
    base = locate(root, [SHOTS], NAMES, "prid2011", LAYOUT)
    persons = {cam: {p.name: p for p in person_folders(base / SHOTS / cam, "prid2011", LAYOUT)} for cam in CAMERAS}
    both = sorted(set(persons["cam_a"]) & set(persons["cam_b"]))
    frames = {(cam, p): [absolute(f) for f in frame_files(persons[cam][p], "prid2011", LAYOUT)]
              for cam in CAMERAS for p in both}
    note = None
    if splits == "json" or (splits == "auto" and (base / SPLITS_FILE).is_file()):
        chosen = read_splits(base / SPLITS_FILE, trials, set(both))
    else:
        eligible = [p for p in both if min(len(frames[(cam, p)]) for cam in CAMERAS) >= min_frames]
        chosen = seeded_splits(eligible, trials, seed)
        note = (f"prid2011: splits drawn with seed {seed} from the {len(eligible)} persons in both cameras with at "
                f"least {min_frames} frames each: not the published splits ({SPLITS_FILE} not read)")
    per_trial = [(sorted(train + test), set(test)) for train, test in chosen]
    return tracklet_manifest(two_camera_tracklets(per_trial, CAMERAS, frames, "prid2011", "person_", LAYOUT),
                             "prid2011", LAYOUT, note=note)


def read_splits(path: Path, trials: int, persons: set[str]) -> list[tuple[list[str], list[str]]]:
    """(train, test) person folders of each of the first ``trials`` splits of the JSON file."""
    if not path.is_file():
        raise DatasetError(f"prid2011: {path} is missing (option splits: json). Expected layout: {LAYOUT}")
    try:
        data = json.loads(read_text(path, "prid2011", LAYOUT))
        out = [(list(s["train"]), list(s["test"])) for s in data[:trials]]
    except (ValueError, TypeError, KeyError):
        raise DatasetError(f"prid2011: {path.name} is not a list of {{\"train\": [...], \"test\": [...]}}") from None
    if len(out) < trials:
        raise DatasetError(f"prid2011: {path.name} holds {len(out)} splits, the protocol asks for {trials}")
    for train, test in out:
        unknown = sorted(set(train + test) - persons)
        if unknown:
            raise DatasetError(f"prid2011: {path.name} names {unknown[0]}, which has no tracklet in both cameras")
        if set(train) & set(test):
            raise DatasetError(f"prid2011: {path.name}: a split has {sorted(set(train) & set(test))[0]} in train and test")
    return out


def seeded_splits(persons: list[str], trials: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """``trials`` seeded halvings of ``persons`` (sorted first, so the file system's order does
    not matter): (train, test), the test half the first len // 2 of each permutation."""
    if len(persons) < 2:
        raise DatasetError(f"prid2011: {len(persons)} person(s) qualify for seeded splits; at least 2 are needed")
    persons = sorted(persons)
    out = []
    for trial in range(trials):
        order = [persons[i] for i in np.random.default_rng([seed, trial]).permutation(len(persons))]
        half = len(persons) // 2
        out.append((sorted(order[half:]), sorted(order[:half])))
    return out


# -- a tiny copy in the real layout --------------------------------------------------------


def write_tree(folder: Path, lengths: dict[str, tuple[int, int]], splits: list[dict] | None) -> Path:
    """prid2011/ under ``folder``: per person folder, its cam_a and cam_b frame counts (0: no
    tracklet in that camera), and the JSON splits when given."""
    base = folder / "prid2011"
    for person, counts in lengths.items():
        for cam, count in zip(CAMERAS, counts):
            if count:
                touch(base / SHOTS / cam / person, *(f"{i + 1:04d}.png" for i in range(count)))
    if splits is not None:
        (base / SPLITS_FILE).write_text(json.dumps(splits))
    return base


LENGTHS = {"person_0001": (3, 2), "person_0002": (2, 2), "person_0003": (1, 5), "person_0004": (4, 1),
           "person_0201": (2, 0)}


def tiny_copy(folder: Path) -> TinyCopy:
    """4 persons in both cameras and one in cam_a only; torchreid's JSON with 2 splits."""
    splits = [{"train": ["person_0001", "person_0003"], "test": ["person_0002", "person_0004"]},
              {"train": ["person_0002", "person_0004"], "test": ["person_0001", "person_0003"]}]
    write_tree(folder, LENGTHS, splits)
    per_trial = [{"train": (11, 2, 2, 4), "query": (6, 2, 1, 2), "gallery": (3, 2, 1, 2)},
                 {"train": (9, 2, 2, 4), "query": (4, 2, 1, 2), "gallery": (7, 2, 1, 2)}]
    return TinyCopy(folder, {"trials": 2}, splits=per_trial, rows={("gallery", "0005.png"): (3, 1)})


def tiny_copy_seeded(folder: Path) -> TinyCopy:
    """No JSON: seeded splits over the persons with at least 2 frames in each camera."""
    write_tree(folder, LENGTHS, None)
    return TinyCopy(folder, {"trials": 3, "min_frames": 2}, rows={("query", "0003.png"): (1, 0)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(128, 64),
                  tiny_copies=(tiny_copy, tiny_copy_seeded))
