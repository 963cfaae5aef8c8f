"""MSMT17 (V1, and V2 with blurred faces).

Reference: Wei et al. Person Transfer GAN to Bridge Domain Gap for Person
Re-Identification. CVPR 2018.
URL: https://www.pkuvmc.com/dataset.html

Published statistics (``PUBLISHED``): 126,441 images of 4,101 identities from 15 cameras.
The train counts are list_train.txt and list_val.txt together; torchreid and most training
recipes leave list_val.txt out, as ``with_val=False`` does (no published counts then).
Crop sizes vary: the adapter's ``crop`` is a round typical value.

Layout: MSMT17_V1/{train,test}/<pid>/<name>.jpg with list_{train,val,query,gallery}.txt,
or MSMT17_V2/{mask_train_v2,mask_test_v2}/ with the same lists. Each list line is
"<relative path> <pid>"; the file name 0000_000_01_0303morning_0015_0.jpg holds the pid,
an index, the camera (01 -> camid 0), the date/time and the frame. The lists are the split:
query and gallery come from the same folder, so a copy without them cannot be evaluated.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, find_child, locate, read_text, rows_to_manifest, touch
from raybench.errors import DatasetError

LAYOUT = ("MSMT17_V1/{train,test}/<pid>/0000_000_01_0303morning_0015_0.jpg + "
          "list_{train,query,gallery}.txt (or MSMT17_V2/{mask_train_v2,mask_test_v2}/ + the same lists)")
NAMES = ("MSMT17_V1", "MSMT17_V2", "msmt17", "MSMT17")
TRAIN_DIRS = ("train", "mask_train_v2")
TEST_DIRS = ("test", "mask_test_v2")
LISTS = (("train", "list_train.txt", TRAIN_DIRS), ("train", "list_val.txt", TRAIN_DIRS),
         ("query", "list_query.txt", TEST_DIRS), ("gallery", "list_gallery.txt", TEST_DIRS))
PUBLISHED = Published(
    {"train": {"images": 32621, "ids": 1041, "cameras": 15}, "query": {"images": 11659, "ids": 3060, "cameras": 15},
     "gallery": {"images": 82161, "ids": 3060, "cameras": 15}},
    source="Wei et al. CVPR 2018; torchreid msmt17.py", options={"with_val": True})


def parse(root: Path, with_val: bool = True) -> pa.Table:
    base = locate(root, ["list_query.txt", "list_gallery.txt"], NAMES, "msmt17", LAYOUT)
    rows = []
    for split, list_name, folders in LISTS:
        list_path = base / list_name
        if split == "train" and (not list_path.exists() or list_name == "list_val.txt" and not with_val):
            continue
        folder = find_child(base, folders)
        if folder is None:
            raise DatasetError(f"msmt17: none of {', '.join(folders)} in {base}. Expected layout: {LAYOUT}")
        rows.extend(_read_list(list_path, folder, split))
    return rows_to_manifest(rows, "msmt17", LAYOUT)


def _read_list(list_path: Path, folder: Path, split: str) -> list[dict]:
    rows, missing = [], []
    for number, line in enumerate(read_text(list_path, "msmt17", LAYOUT).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        fields = Path(parts[0]).name.split("_")
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or len(fields) < 3 or not fields[2].isdigit():
            raise DatasetError(
                f"msmt17: {list_path}:{number}: {line!r} is not '<pid>/<pid>_<index>_<camera>_... <pid>' "
                "(for example '0000/0000_000_01_0303morning_0015_0.jpg 0')"
            )
        path = folder / parts[0]
        if int(parts[1]) == -1:
            continue
        if not path.is_file():
            missing.append(str(path))
            continue
        rows.append({"path": absolute(path), "pid": int(parts[1]), "camid": int(fields[2]) - 1, "split": split})
    if missing:
        raise DatasetError(
            f"msmt17: {len(missing)} images listed in {list_path.name} are missing, e.g. {missing[0]}. "
            f"Expected layout: {LAYOUT}"
        )
    return rows


# -- a tiny copy in the real layout: {file name: pid} per list ------------------------------

TINY_TRAIN = {"0000_000_01_0303morning_0015_0.jpg": 0, "0000_001_15_0303noon_0016_1.jpg": 0,
              "0001_000_05_0303afternoon_0100_0.jpg": 1}
TINY_VAL = {"0002_000_02_0303morning_0200_0.jpg": 2}
TINY_QUERY = {"0000_000_10_0113morning_0001_0.jpg": 0, "0001_003_01_0113noon_0002_2_ex.jpg": 1}
TINY_GALLERY = {"0000_004_03_0113morning_0003_0.jpg": 0, "0001_005_14_0114afternoon_0004_1.jpg": 1,
                "0001_006_07_0114noon_0005_3.jpg": 1}


def tiny_copy(folder: Path, version: str = "MSMT17_V1") -> TinyCopy:
    """The four lists (train counts list_train and list_val), a name with a suffix (_ex)."""
    train_dir, test_dir = ("train", "test") if version == "MSMT17_V1" else ("mask_train_v2", "mask_test_v2")
    base = folder / version
    lists = ((train_dir, "list_train.txt", TINY_TRAIN), (train_dir, "list_val.txt", TINY_VAL),
             (test_dir, "list_query.txt", TINY_QUERY), (test_dir, "list_gallery.txt", TINY_GALLERY))
    for sub, list_name, entries in lists:
        lines = []
        for name, pid in entries.items():
            touch(base / sub, f"{name[:4]}/{name}")
            lines.append(f"{name[:4]}/{name} {pid}")
        (base / list_name).write_text("\n".join(lines) + "\n")
    return TinyCopy(folder, splits={"train": (4, 3, 4), "query": (2, 2, 2), "gallery": (3, 2, 3)},
                    rows={("query", "0000_000_10_0113morning_0001_0.jpg"): (0, 9),
                          ("gallery", "0001_005_14_0114afternoon_0004_1.jpg"): (1, 13)})


def tiny_copy_v2(folder: Path) -> TinyCopy:
    return tiny_copy(folder, "MSMT17_V2")


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=(PUBLISHED,), crop=(320, 128),
                  tiny_copies=(tiny_copy, tiny_copy_v2))
