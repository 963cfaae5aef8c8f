"""A custom dataset: a Market-1501-style folder, or a CSV that lists the images.

Folder: {bounding_box_train,query,bounding_box_test}/ (or {train,query,gallery}/) of images
named <pid>_c<camera>... as in Market-1501 (0002_c1s1_000451_03.jpg); the camera may have
several digits; ``pattern`` overrides the naming (group 1: pid, group 2: 1-based camera).

CSV: a file with the header ``path,pid,camid,split`` (and optionally ``trial``); relative
paths are relative to the CSV's folder; camid is 0-based; split is train, query or gallery.

In both, pid -1 marks junk (dropped) and pid 0 may mark distractors (kept in the gallery).
A matrix names it inline, e.g.
``{name: mine, adapter: folder, root: /data/mine, protocol: {camera_filter: true}}``.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, TinyCopy
from raybench.datasets.common import (MARKET_FOLDERS, absolute, as_written, locate, read_text, rows_to_manifest,
                                       scan, touch)
from raybench.datasets.manifest import SPLITS
from raybench.errors import DatasetError

LAYOUT = ("a folder with {bounding_box_train,query,bounding_box_test}/ (or {train,query,gallery}/) "
          "of <pid>_c<camera>_....jpg images, or a CSV with columns path,pid,camid,split")
PLAIN_FOLDERS = {"train": "train", "query": "query", "gallery": "gallery"}
CSV_COLUMNS = ("path", "pid", "camid", "split")


DEFAULT_PATTERN = r"^([-\d]+)_c(\d+)"


def parse(root: Path, pattern: str = DEFAULT_PATTERN) -> pa.Table:
    root = Path(root).expanduser()
    if root.suffix.lower() == ".csv":
        return read_csv(root)
    base = locate(root, ["query"], (), "folder", LAYOUT)
    folders = MARKET_FOLDERS if (base / MARKET_FOLDERS["gallery"]).is_dir() else PLAIN_FOLDERS
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise DatasetError(f"folder: pattern {as_written(pattern)} is not a regular expression ({exc})") from None
    if regex.groups < 2:
        raise DatasetError(f"folder: pattern {as_written(pattern)} needs two groups: pid and camera")
    rows = scan({split: base / sub for split, sub in folders.items()}, regex, dataset="folder",
                layout=LAYOUT, example="0002_c1s1_000451_03.jpg")
    return rows_to_manifest(rows, "folder", LAYOUT)


def read_csv(path: Path) -> pa.Table:
    if not path.is_file():
        raise DatasetError(f"folder: {path} does not exist. Expected: {LAYOUT}")
    reader = csv.DictReader(io.StringIO(read_text(path, "folder", LAYOUT), newline=""))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(f"folder: {path} has no column {missing[0]!r}; expected header: {','.join(CSV_COLUMNS)}")
    with_trial = "trial" in reader.fieldnames
    rows = [_csv_row(record, path, number, with_trial) for number, record in enumerate(reader, 2)]
    return rows_to_manifest([r for r in rows if r["pid"] != -1], "folder", LAYOUT)


def _csv_row(record: dict, csv_path: Path, number: int, with_trial: bool) -> dict:
    """One manifest row; with a trial column, every row names its trial (a row without one
    would belong to no trial, and the manifest's columns must be whole)."""
    where = f"folder: {csv_path}:{number}"
    try:
        row = {"pid": int(record["pid"]), "camid": int(record["camid"]), "split": record["split"].strip()}
        if with_trial:
            row["trial"] = int(record["trial"])
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: pid, camid (and trial) must be integers, got {record}") from None
    if row["split"] not in SPLITS:
        raise DatasetError(f"{where}: split {row['split']!r}; allowed: {', '.join(SPLITS)}")
    image = Path(record["path"])
    image = image if image.is_absolute() else csv_path.parent / image
    if not image.is_file():
        raise DatasetError(f"{where}: image {image} does not exist")
    row["path"] = absolute(image)
    return row


def tiny_copy(folder: Path) -> TinyCopy:
    """{train,query,gallery}/ with cameras of two digits, a distractor and a junk image."""
    base = folder / "mine"
    touch(base / "train", "0001_c1_a.jpg")
    touch(base / "query", "0002_c10_a.jpg", "0003_c2_a.jpg")
    touch(base / "gallery", "0002_c3_b.jpg", "0003_c1_b.jpg", "0000_c4_x.jpg", "-1_c1_x.jpg")
    return TinyCopy(base, splits={"train": (1, 1, 1), "query": (2, 2, 2), "gallery": (3, 3, 3)},
                    rows={("query", "0002_c10_a.jpg"): (2, 9)})


def tiny_copy_csv(folder: Path) -> TinyCopy:
    """A CSV with relative and absolute paths, a distractor and a junk row."""
    touch(folder / "img", "a.jpg", "b.jpg", "c.jpg", "d.jpg", "junk.jpg")
    (folder / "list.csv").write_text(
        "path,pid,camid,split\nimg/a.jpg,1,0,train\nimg/b.jpg,2,0,query\n"
        f"{folder / 'img' / 'c.jpg'},2,1,gallery\nimg/d.jpg,0,2,gallery\nimg/junk.jpg,-1,1,gallery\n"
    )
    return TinyCopy(folder / "list.csv", splits={"train": (1, 1, 1), "query": (1, 1, 1), "gallery": (2, 2, 2)},
                    rows={("gallery", "d.jpg"): (0, 2)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, tiny_copies=(tiny_copy, tiny_copy_csv), naming=re.compile(DEFAULT_PATTERN))
