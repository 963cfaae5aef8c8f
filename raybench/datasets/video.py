"""What the video adapters share: tracklets in, a manifest of frames out.

A video adapter (mars.py, ilidsvid.py, prid2011.py, dukevideo.py, synthvideo.py) finds its
tracklets, each a person seen by one camera over consecutive frames, and hands them here as
``Tracklet`` records; ``tracklet_manifest`` writes one manifest row per frame, with the
tracklet's name and the frame's place in it (manifest.py: ``tracklet``, ``frame``), in the
order the adapter gives (the dataset's own order: MARS's info files, sorted folders
elsewhere). Frames are images to the rest of raybench; the scorer pools them per tracklet
(raybench.eval.tracklets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa

from raybench.datasets.common import IMAGE_SUFFIXES
from raybench.datasets.manifest import make_manifest, with_note
from raybench.errors import DatasetError


@dataclass(frozen=True)
class Tracklet:
    """One tracklet in one role: its name (unique within its split and trial), its frames'
    absolute paths (common.absolute) in temporal order, pid, 0-based camera, split and trial
    (None: a single split)."""

    name: str
    frames: Sequence[str]
    pid: int
    camid: int
    split: str
    trial: int | None = None


def tracklet_manifest(tracklets: Iterable[Tracklet], dataset: str, layout: str, note: str | None = None) -> pa.Table:
    """The manifest of ``tracklets``: a row per frame, in the given order (module docstring);
    ``note``: what results must say about the copy (manifest.with_note)."""
    columns: dict[str, list] = {"path": [], "pid": [], "camid": [], "split": [], "trial": [], "tracklet": [],
                                "frame": []}
    with_trials = None
    for t in tracklets:
        if with_trials is None:
            with_trials = t.trial is not None
        if not t.frames:
            raise DatasetError(f"{dataset}: tracklet {t.name} has no frames. Expected layout: {layout}")
        n = len(t.frames)
        columns["path"] += t.frames
        for name, value in (("pid", t.pid), ("camid", t.camid), ("split", t.split), ("trial", t.trial),
                            ("tracklet", t.name)):
            columns[name] += [value] * n
        columns["frame"] += range(n)
    if not columns["path"]:
        raise DatasetError(f"{dataset}: no tracklets found. Expected layout: {layout}")
    if not with_trials:
        del columns["trial"]
    return with_note(make_manifest(columns), note)


def two_camera_tracklets(trials: Iterable[tuple[Sequence[str], set[str]]], cameras: Sequence[str],
                         frames: dict[tuple[str, str], list[str]], dataset: str, prefix: str,
                         layout: str) -> list[Tracklet]:
    """The tracklets of two-camera trials (iLIDS-VID, PRID2011): ``trials`` gives each trial's
    persons in order and its test persons; a test person's tracklet under ``cameras[0]`` is a
    query and under ``cameras[1]`` a gallery item, any other person's is train. A person folder
    is ``prefix<number>``, the number its pid."""
    out = []
    for trial, (persons, test) in enumerate(trials):
        for person in persons:
            pid = numbered(person, prefix, dataset, layout)
            for camid, cam in enumerate(cameras):
                split = ("query", "gallery")[camid] if person in test else "train"
                out.append(Tracklet(f"{cam}/{person}", frames[(cam, person)], pid, camid, split, trial))
    return out


def numbered(name: str, prefix: str, dataset: str, layout: str) -> int:
    """The number of a folder named ``prefix<number>``."""
    digits = name.removeprefix(prefix)
    if not digits.isdigit():
        raise DatasetError(f"{dataset}: person folder {name!r} is not named {prefix}<number>. Expected layout: {layout}")
    return int(digits)


def frame_files(folder: Path, dataset: str, layout: str, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """A tracklet folder's frames, sorted by name (the frame numbers are zero-padded in every
    video dataset here, so name order is temporal order); none is an error naming the folder."""
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file()) if folder.is_dir() else []
    if not frames:
        raise DatasetError(f"{dataset}: no frames in {folder}. Expected layout: {layout}")
    return frames


def person_folders(folder: Path, dataset: str, layout: str) -> list[Path]:
    """The sub-folders of ``folder`` (persons, tracklets), sorted by name; hidden ones left out."""
    if not folder.is_dir():
        raise DatasetError(f"{dataset}: folder {folder} is missing. Expected layout: {layout}")
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
