"""A worked example of a dataset adapter (docs/extending.md): one folder per identity.

An imaginary two-camera recording, packaged as IdFolders/{train,query,gallery}/<pid>/<image>
with images named c<camera>_<number>.png: the identity is the folder, the camera the name's
``c`` field (1-based). Named in a matrix or catalog entry as
``adapter: docs.examples.idfolders:ADAPTER`` (a "module:attr" target, importable from the
project root), or registered under a name by a line in raybench/datasets/__init__.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, locate, match_name, require_images, rows_to_manifest

LAYOUT = "IdFolders/{train,query,gallery}/<pid>/c<camera>_<number>.png"
NAMES = ("IdFolders", "idfolders")  # the canonical folder names under $RAYBENCH_DATA
PATTERN = re.compile(r"^c(\d+)_\d+")
SPLITS = ("train", "query", "gallery")


def parse(root: Path) -> pa.Table:
    """The manifest of a copy: one row per image (path, pid, camid 0-based, split)."""
    base = locate(root, ["query", "gallery"], NAMES, "idfolders", LAYOUT)  # the root or a canonical child
    rows = []
    for split in SPLITS:
        if not (base / split).is_dir():
            continue  # a copy without train images is still scored
        for path in require_images(base / split, "idfolders", LAYOUT, recursive=True):
            camera = match_name(PATTERN, path, "idfolders", "c1_0001.png").group(1)
            rows.append({"path": absolute(path), "pid": int(path.parent.name), "camid": int(camera) - 1,
                         "split": split})
    return rows_to_manifest(rows, "idfolders", LAYOUT)  # sorted; no rows at all is a DatasetError


#: What its authors would publish: per split images, identities and cameras.
PUBLISHED = Published(
    {"train": {"images": 400, "ids": 100, "cameras": 2}, "query": {"images": 100, "ids": 100, "cameras": 1},
     "gallery": {"images": 200, "ids": 100, "cameras": 1}},
    source="the recording's README (an imaginary dataset)")


def tiny_copy(folder: Path) -> TinyCopy:
    """4 identities, each its own colour: a train and a query image from camera 1, two gallery
    images from camera 2 (real PNGs, so that a model can embed them)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    base = folder / "IdFolders"
    for pid in range(1, 5):
        colour = rng.integers(0, 256, 3)
        for split, camera, count in (("train", 1, 1), ("query", 1, 1), ("gallery", 2, 2)):
            (base / split / f"{pid:04d}").mkdir(parents=True, exist_ok=True)
            for number in range(count):
                noise = rng.integers(-8, 9, (64, 32, 3))
                pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(base / split / f"{pid:04d}" / f"c{camera}_{pid}{number:03d}.png")
    return TinyCopy(folder, splits={"train": (4, 4, 1), "query": (4, 4, 1), "gallery": (8, 4, 1)},
                    rows={("query", "c1_4000.png"): (4, 0), ("gallery", "c2_2001.png"): (2, 1)})


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(64, 32), tiny_copies=(tiny_copy,))
