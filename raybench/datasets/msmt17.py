"""MSMT17 (V1, and V2 with blurred faces).

Reference: Wei et al. Person Transfer GAN to Bridge Domain Gap for Person
Re-Identification. CVPR 2018.
URL: https://www.pkuvmc.com/dataset.html

Published statistics: 126,441 images of 4,101 identities from 15 cameras. Train 1,041 ids
/ 32,621 images (list_train.txt and list_val.txt together; torchreid and most training
recipes leave list_val.txt out, as ``with_val=False`` does); query 3,060 ids / 11,659
images; gallery 3,060 ids / 82,161 images.

Layout: MSMT17_V1/{train,test}/<pid>/<name>.jpg with list_{train,val,query,gallery}.txt,
or MSMT17_V2/{mask_train_v2,mask_test_v2}/ with the same lists. Each list line is
"<relative path> <pid>"; the file name 0000_000_01_0303morning_0015_0.jpg holds the pid,
an index, the camera (01 -> camid 0), the date/time and the frame. The lists are the split:
query and gallery come from the same folder, so a copy without them cannot be evaluated.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from raybench.datasets import Adapter
from raybench.datasets.common import absolute, find_child, locate, read_text, rows_to_manifest
from raybench.errors import DatasetError

LAYOUT = ("MSMT17_V1/{train,test}/<pid>/0000_000_01_0303morning_0015_0.jpg + "
          "list_{train,query,gallery}.txt (or MSMT17_V2/{mask_train_v2,mask_test_v2}/ + the same lists)")
NAMES = ("MSMT17_V1", "MSMT17_V2", "msmt17", "MSMT17")
TRAIN_DIRS = ("train", "mask_train_v2")
TEST_DIRS = ("test", "mask_test_v2")
LISTS = (("train", "list_train.txt", TRAIN_DIRS), ("train", "list_val.txt", TRAIN_DIRS),
         ("query", "list_query.txt", TEST_DIRS), ("gallery", "list_gallery.txt", TEST_DIRS))


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


ADAPTER = Adapter(parse=parse, layout=LAYOUT)
