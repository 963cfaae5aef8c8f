"""MARS (Motion Analysis and Re-identification Set), video ReID: tracklets of 6 cameras.

Reference: Zheng et al. MARS: A Video Benchmark for Large-Scale Person Re-identification. ECCV
2016. URL: http://www.liangzheng.com.cn/Project/project_mars.html; evaluation code and the
info/ files: https://github.com/liangzheng06/MARS-evaluation (MEV).

Layout: mars/{bbox_train,bbox_test}/0001/0001C1T0001F001.jpg (pid 0001, camera 1 -> camid 0,
tracklet 0001, frame 001; junk is the folder 00-1, distractors 0000) and mars/info/ with
train_name.txt and test_name.txt (one frame name a line, tracklets contiguous),
tracks_train_info.mat and tracks_test_info.mat (keys track_train_info / track_test_info: a
row per tracklet, [start, end, pid, camera], start and end 1-based inclusive rows of the name
list) and query_IDX.mat (key query_IDX: 1-based rows of track_test_info that are queries). The
train side (bbox_train, its name list and .mat) is optional: scoring reads the test side only.

Protocol (option ``gallery``):

- ``torchreid`` (default; torchreid's Mars class + evaluate_rank, and MARS's published deep
  numbers since 2018): queries are the query_IDX tracklets, the gallery every other test
  tracklet; pid -1 tracklets are junk and dropped; distractors (pid 0) stay in the gallery;
  same pid and same camera is junk (the rank engine's camera filter). 140 of the 1,980
  queries then have no cross-camera match left (28 because their identity has no gallery
  tracklet at all, 112 whose matches are all in their own camera) and are skipped, as
  torchreid skips them (deep-person-reid issues 59, 77).
- ``official``: MEV's test_mars.m/evaluation_mars.m: the gallery is every test tracklet,
  queries included (each query's own tracklet is then same pid and same camera: junk), so every
  query has a match and all 1,980 count. What raybench does not copy from MEV: its AP is
  trapezoidal (utils/compute_AP.m), raybench's the non-interpolated AP of torchreid and every
  deep-learning paper since; and MEV pools every frame by max then L2-normalises, which is
  the eval block's ``pool: max, frames: all, normalize: true``, not a dataset option.

Published statistics (``PUBLISHED``; the tracklet counts are torchreid's mars.py docstring, the
rest counted in MEV's info files, see docs/video.md): train 8,298 tracklets of 625 ids, 509,914
frames; query 1,980 tracklets of 626 ids, 114,493 frames; gallery (torchreid) 9,330 tracklets
of 621 ids (620 and the distractors), 543,216 frames; 6 cameras. The paper's "1,261 ids"
counts the -1 and 0 labels (625 + 636); its "around 20,000 tracklets" are 20,478 in the info
files (8,298 + 12,180, of which 870 junk). Frames are 256x128 crops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, load_mat_v5, locate, read_text, touch
from raybench.datasets.video import Tracklet, tracklet_manifest
from raybench.errors import DatasetError, SpecError

LAYOUT = ("mars/{bbox_train,bbox_test}/0001/0001C1T0001F001.jpg + mars/info/{train_name.txt, test_name.txt, "
          "tracks_train_info.mat, tracks_test_info.mat, query_IDX.mat}")
NAMES = ("mars", "MARS")
GALLERIES = ("torchreid", "official")
#: (name list, track info file, its key, image folder) of each side
SIDES = {"train": ("train_name.txt", "tracks_train_info.mat", "track_train_info", "bbox_train"),
         "test": ("test_name.txt", "tracks_test_info.mat", "track_test_info", "bbox_test")}
QUERY_FILE, QUERY_KEY = "query_IDX.mat", "query_IDX"
CAMERAS = 6
_TRAIN = {"images": 509914, "ids": 625, "cameras": 6, "tracklets": 8298}
_QUERY = {"images": 114493, "ids": 626, "cameras": 6, "tracklets": 1980}
_SOURCE = ("Zheng et al. ECCV 2016; torchreid mars.py (tracklets); frames and ids counted in "
           "liangzheng06/MARS-evaluation info/*.mat (docs/video.md)")
PUBLISHED = (
    Published({"train": _TRAIN, "query": _QUERY,
               "gallery": {"images": 543216, "ids": 621, "cameras": 6, "tracklets": 9330}, "eval_images": 657709},
              source=_SOURCE + "; gallery = test minus queries, junk dropped", options={"gallery": "torchreid"}),
    Published({"train": _TRAIN, "query": _QUERY,
               "gallery": {"images": 657709, "ids": 635, "cameras": 6, "tracklets": 11310}, "eval_images": 657709},
              source=_SOURCE + "; gallery = every test tracklet, queries included, junk dropped",
              options={"gallery": "official"}),
)


def parse(root: Path, gallery: str = "torchreid") -> pa.Table:
    if gallery not in GALLERIES:
        raise SpecError(f"mars: option gallery is {gallery!r}; allowed: {', '.join(GALLERIES)}")
    base = locate(root, ["info", "bbox_test"], NAMES, "mars", LAYOUT)
    info = base / "info"
    tracklets: list[Tracklet] = []
    if all((info / f).is_file() for f in SIDES["train"][:2]) and (base / "bbox_train").is_dir():
        tracklets += [_tracklet(base, "train", *row) for row in _side(base, "train")]
    test = _side(base, "test")
    query_rows = read_query_rows(info / QUERY_FILE, len(test))
    is_query = np.zeros(len(test), dtype=bool)
    is_query[query_rows] = True
    tracklets += [_tracklet(base, "query", *test[i]) for i in query_rows if test[i][3] != -1]
    tracklets += [_tracklet(base, "gallery", *row) for i, row in enumerate(test)
                  if (gallery == "official" or not is_query[i]) and row[3] != -1]
    return tracklet_manifest(tracklets, "mars", LAYOUT)


def _side(base: Path, side: str) -> list[tuple[int, list[str], int, int]]:
    """Each tracklet of a side as (row, frame names, camera 1-based, pid), junk included;
    checked as torchreid checks it (one person, one camera per tracklet)."""
    names_file, mat_file, key, _ = SIDES[side]
    names = [line.rstrip() for line in read_text(base / "info" / names_file, "mars", LAYOUT).splitlines()]
    info = load_mat_v5(base / "info" / mat_file, "mars", LAYOUT)
    if key not in info:
        raise DatasetError(f"mars: info/{mat_file} has no key {key!r}. Expected layout: {LAYOUT}")
    tracks = np.asarray(info[key])
    if tracks.ndim != 2 or tracks.shape[1] != 4:
        raise DatasetError(f"mars: info/{mat_file}: {key} has shape {tracks.shape}, expected [tracklets, 4] "
                           "(start, end, pid, camera)")
    out = []
    for row, (start, end, pid, cam) in enumerate(tracks.astype(np.int64).tolist()):
        where = f"mars: info/{mat_file} row {row + 1}"
        if not 1 <= start <= end <= len(names):
            raise DatasetError(f"{where}: frames {start}..{end} are not rows of {names_file} (1..{len(names)})")
        if not 1 <= cam <= CAMERAS:
            raise DatasetError(f"{where}: camera {cam}; MARS has cameras 1..{CAMERAS}")
        frames = names[start - 1:end]
        if len({f[:4] for f in frames}) != 1 or len({f[5:6] for f in frames}) != 1:
            raise DatasetError(f"{where}: frames {frames[0]}..{frames[-1]} are not of one person in one camera")
        out.append((row, frames, cam, pid))
    return out


def _tracklet(base: Path, split: str, row: int, frames: list[str], cam: int, pid: int) -> Tracklet:
    folder = absolute(base / SIDES["train" if split == "train" else "test"][3])
    return Tracklet(name=frames[0].split("F")[0] if "F" in frames[0] else f"{split}:{row + 1}",
                    frames=[f"{folder}/{f[:4]}/{f}" for f in frames], pid=pid, camid=cam - 1, split=split)


def read_query_rows(path: Path, tracklets: int) -> list[int]:
    """query_IDX.mat as 0-based rows of the test tracklets, in its order."""
    data = load_mat_v5(path, "mars", LAYOUT)
    if QUERY_KEY not in data:
        raise DatasetError(f"mars: info/{QUERY_FILE} has no key {QUERY_KEY!r}. Expected layout: {LAYOUT}")
    rows = np.asarray(data[QUERY_KEY]).astype(np.int64).ravel() - 1
    if rows.size == 0 or rows.min() < 0 or rows.max() >= tracklets or len(set(rows.tolist())) != rows.size:
        raise DatasetError(f"mars: info/{QUERY_FILE} must list distinct 1-based rows of the {tracklets} test "
                           "tracklets")
    return rows.tolist()


# -- writing a copy: tiny copies, the synthetic video domain, tests from real crops --------------


def frame_name(pid: int, cam: int, tracklet: int, frame: int) -> str:
    """MARS naming: 0001C1T0001F001.jpg (cam 1-based; junk pid -1 is 00-1)."""
    person = "00-1" if pid < 0 else f"{pid:04d}"
    return f"{person}C{cam}T{tracklet:04d}F{frame:03d}.jpg"


def write_info(base: Path, train: list[list[str]], test: list[list[str]], query: list[int]) -> None:
    """base/info/ for tracklets given as lists of frame names in MARS naming (pid and camera read
    from the names, as MEV's info_mars.m does); ``query``: 0-based rows of ``test``. The frames
    themselves are the caller's (base/bbox_*/<name[:4]>/<name>)."""
    from scipy.io import savemat

    info = base / "info"
    info.mkdir(parents=True, exist_ok=True)
    for side, tracklets in (("train", train), ("test", test)):
        names_file, mat_file, key, _ = SIDES[side]
        (info / names_file).write_text("".join(f"{n}\n" for t in tracklets for n in t))
        rows, start = [], 1
        for t in tracklets:
            pid = -1 if t[0][:4] == "00-1" else int(t[0][:4])
            rows.append([start, start + len(t) - 1, pid, int(t[0][5])])
            start += len(t)
        savemat(str(info / mat_file), {key: np.asarray(rows, dtype=np.int32).reshape(-1, 4)})
    savemat(str(info / QUERY_FILE), {QUERY_KEY: np.asarray([[r + 1 for r in query]], dtype=np.uint16)})


def tiny_copy(folder: Path) -> TinyCopy:
    """Three test persons (one only in the query camera), a distractor, a junk tracklet, one
    train person; the gallery keeps what torchreid keeps."""
    base = folder / "mars"
    train = [[frame_name(7, 1, 1, f) for f in (1, 2)], [frame_name(7, 3, 2, f) for f in (1, 2, 3)]]
    test = [[frame_name(1, 1, 1, f) for f in (1, 2, 3)], [frame_name(1, 2, 2, f) for f in (1, 2)],
            [frame_name(2, 4, 1, f) for f in (1, 2)], [frame_name(2, 5, 3, f) for f in (1,)],
            [frame_name(3, 6, 1, f) for f in (1, 2)], [frame_name(0, 2, 1, f) for f in (1, 2)],
            [frame_name(-1, 3, 1, f) for f in (1, 2, 3)]]
    for side, tracklets in (("bbox_train", train), ("bbox_test", test)):
        for t in tracklets:
            touch(base / side / t[0][:4], *t)
    write_info(base, train, test, query=[0, 2, 4])
    return TinyCopy(folder, splits={"train": (5, 1, 2, 2), "query": (7, 3, 3, 3), "gallery": (5, 3, 2, 3)},
                    rows={("query", "0003C6T0001F002.jpg"): (3, 5), ("gallery", "0000C2T0001F001.jpg"): (0, 1)})


def tiny_copy_official(folder: Path) -> TinyCopy:
    """The same copy under MEV's gallery: the queries' tracklets are gallery tracklets too."""
    tiny = tiny_copy(folder)
    return TinyCopy(tiny.root, {"gallery": "official"},
                    splits={"train": (5, 1, 2, 2), "query": (7, 3, 3, 3), "gallery": (12, 4, 5, 6)},
                    rows={("gallery", "0003C6T0001F002.jpg"): (3, 5)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=PUBLISHED, crop=(256, 128),
                  tiny_copies=(tiny_copy, tiny_copy_official))
