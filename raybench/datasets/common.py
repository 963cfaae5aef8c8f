"""What the dataset adapters share: finding a copy's folder, listing and naming images, rows.

Adapters stay short because the recurring questions have one answer here: where is the
folder that holds query/ (the root itself, or a canonical child of it), which files are
images, and what to say when a name does not follow the dataset's convention.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pyarrow as pa

from raybench.datasets.manifest import make_manifest
from raybench.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SPLIT_ORDER = {"train": 0, "query": 1, "gallery": 2}


class DatasetNotFoundError(DatasetError):
    """No copy of the dataset at all under a root (as opposed to a copy in the wrong shape);
    `raybench datasets check` reports the first as missing, the second as malformed."""


def locate(root: str | os.PathLike, markers: Sequence[str], names: Sequence[str], dataset: str,
           layout: str) -> Path:
    """The folder holding every ``marker`` (e.g. query/ and bounding_box_test/): ``root``
    itself, ``root/<name>`` or ``root/<name>/<name>`` for a canonical folder name (the
    nesting torchreid uses, e.g. market1501/Market-1501-v15.09.15)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetNotFoundError(f"{dataset}: {root} does not exist. Expected layout: {layout}")
    candidates = [root] + [root / a for a in names] + [root / a / b for a in names for b in names]
    existing = [c for c in candidates if c.is_dir()]
    for folder in existing:
        if all((folder / m).exists() for m in markers):
            return folder
    error = DatasetError if len(existing) > 1 else DatasetNotFoundError
    missing = [m for m in markers if not (existing[-1] / m).exists()] if existing else list(markers)
    raise error(
        f"{dataset}: {', '.join(missing)} not found under {existing[-1] if existing else root}. "
        f"Expected layout: {layout} (point the root at that folder or at its parent)"
    )


def find_child(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` that exists in ``folder``, matched case-insensitively (copies of
    MSMT17 spell mask_train_v2 with either case)."""
    if not folder.is_dir():
        return None
    children = {p.name.lower(): p for p in folder.iterdir()}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (optionally below it), sorted by path so that every manifest
    is independent of file-system order."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def require_images(folder: Path, dataset: str, layout: str, recursive: bool = False) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{dataset}: folder {folder} is missing. Expected layout: {layout}")
    images = list_images(folder, recursive)
    if not images:
        raise DatasetError(f"{dataset}: no images in {folder}. Expected layout: {layout}")
    return images


def as_written(pattern: str | re.Pattern) -> str:
    """A regex quoted as it is written in YAML or Python source: ``'(\\d+)_c(\\d)'``, not
    repr's doubled backslashes, so that it can be compared with (and pasted into) a config."""
    return f"'{pattern.pattern if isinstance(pattern, re.Pattern) else pattern}'"


def match_name(pattern: re.Pattern, path: Path, dataset: str, example: str) -> re.Match:
    """Match a file's name (never its folders) against the dataset's naming convention."""
    found = pattern.search(path.name)
    if found is None:
        raise DatasetError(
            f"{dataset}: file name {path.name!r} in {path.parent} does not follow the naming "
            f"convention {as_written(pattern)} (for example {example!r})"
        )
    return found


def read_text(path: Path, dataset: str, layout: str) -> str:
    """A list or CSV file of a copy as text (UTF-8, a leading BOM dropped), newlines kept as
    they are; a file that is unreadable, a folder, or not text says so and names the file."""
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeError) as exc:
        problem = f"not UTF-8 text ({exc})" if isinstance(exc, UnicodeError) else f"unreadable ({exc.strerror or exc})"
        raise DatasetError(f"{dataset}: {path} is {problem}. Expected layout: {layout}") from None


def load_mat_v5(path: Path, dataset: str, layout: str) -> dict:
    """A MATLAB v5 file (the format scipy reads) as a dict; a truncated, corrupt or v7.3 file
    is a DatasetError naming it, never scipy's traceback."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(str(path))
    except NotImplementedError:
        raise DatasetError(f"{dataset}: {path} is MATLAB v7.3; this file is MATLAB v5 (re-download it). "
                           f"Expected layout: {layout}") from None
    except (MatReadError, ValueError, OSError, TypeError) as exc:
        raise DatasetError(f"{dataset}: cannot read {path} as a MATLAB v5 file ({exc}). Expected layout: {layout}") from None


def absolute(path: str | os.PathLike) -> str:
    """Absolute path without resolving symlinks (a symlinked copy keeps the user's paths)."""
    return os.path.abspath(os.fspath(path))


def rows_to_manifest(rows: Iterable[Mapping], dataset: str, layout: str) -> pa.Table:
    """Sort rows (train, query, gallery; then trial; then path) and build the manifest."""
    rows = sorted(rows, key=lambda r: (r.get("trial", 0), SPLIT_ORDER[r["split"]], r["path"]))
    if not rows:
        raise DatasetError(f"{dataset}: no images found. Expected layout: {layout}")
    return make_manifest(rows)


def scan(folders: Mapping[str, Path], pattern: re.Pattern, *, dataset: str, layout: str, example: str,
         recursive: bool = False) -> list[dict]:
    """Rows from split folders of images whose names start with the pid (group 1) and, when
    the pattern has a second group, the 1-based camera. Junk (pid -1) is dropped;
    distractors (pid 0) stay. A missing train folder is allowed (evaluation needs query and
    gallery only); datasets without cameras get camid 0 here."""
    rows = []
    for split, folder in folders.items():
        if split == "train" and not folder.is_dir():
            continue
        for path in require_images(folder, dataset, layout, recursive):
            found = match_name(pattern, path, dataset, example)
            pid = int(found.group(1))
            camid = int(found.group(2)) - 1 if pattern.groups >= 2 else 0
            if pid != -1:
                rows.append({"path": absolute(path), "pid": pid, "camid": camid, "split": split})
    return rows


MARKET_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def market_style(root, *, dataset: str, layout: str, names: Sequence[str], pattern: re.Pattern,
                 example: str, folders: Mapping[str, str] = MARKET_FOLDERS) -> pa.Table:
    """The manifest of a Market-1501-style copy: train/query/gallery folders of
    ``<pid>_c<cam>...`` files; camid = cam - 1."""
    base = locate(root, [folders["query"], folders["gallery"]], names, dataset, layout)
    paths = {split: base / sub for split, sub in folders.items()}
    return rows_to_manifest(scan(paths, pattern, dataset=dataset, layout=layout, example=example), dataset, layout)


def one_camera_per_image(table: pa.Table) -> pa.Table:
    """Replace camid by the row number: for datasets without camera semantics."""
    if len(set(table.column("path").to_pylist())) != table.num_rows:
        raise ValueError("one camera per image needs each image once in the manifest")
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    columns["camid"] = list(range(table.num_rows))
    return make_manifest(columns)


def touch(folder: Path, *names: str) -> None:
    """Empty files ``folder/name`` (subfolders made as needed): a tiny copy's images, for
    adapters that read names only (``Adapter.tiny_copies``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
