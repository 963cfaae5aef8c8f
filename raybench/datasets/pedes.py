"""What the text-to-person datasets share: one JSON list of annotated images beside imgs/.

CUHK-PEDES, ICFG-PEDES and RSTPReid ship the same shape (the one IRRA and its successors
read): ``[{"<path key>": "relative/to/imgs.jpg", "id": 12, "split": "test", "captions":
["a woman in ...", ...]}, ...]``, only the path key and the file name differ. One entry is
one image; each of its captions is one text query.

raybench reads one evaluation subset (``test``, or ``val`` where the JSON has one): its
images form the manifest, all in split ``gallery`` (there are no image queries), with the
JSON's ``id`` as pid and each image its own camera id (no camera semantics; text-to-image
scoring filters none). Its captions form the caption table, split ``query``, in the JSON's
order. Training entries are not read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from raybench.datasets.common import (DatasetNotFoundError, absolute, locate, one_camera_per_image, read_text,
                                      rows_to_manifest, touch)
from raybench.datasets.manifest import make_captions
from raybench.errors import DatasetError

SUBSETS = ("test", "val")


@dataclass(frozen=True)
class CaptionJson:
    """One caption dataset's packaging: folder names, annotation file names, the path key."""

    dataset: str
    names: tuple[str, ...]  # canonical folder names under $RAYBENCH_DATA
    annotations: tuple[str, ...]  # the JSON's file name(s), the first canonical
    path_key: str  # "file_path" or "img_path"
    layout: str

    def parse(self, root: Path, subset: str = "test") -> pa.Table:
        entries = self._entries(root, subset)
        rows = [{"path": path, "pid": pid, "camid": 0, "split": "gallery"} for path, pid in _images(entries).items()]
        return one_camera_per_image(rows_to_manifest(rows, self.dataset, self.layout))

    def captions(self, root: Path, subset: str = "test") -> pa.Table:
        entries = self._entries(root, subset)
        return make_captions({"caption": caption, "pid": pid, "path": path, "split": "query"}
                             for path, pid, captions in entries for caption in captions)

    def _entries(self, root: Path, subset: str) -> list[tuple[str, int, list[str]]]:
        """(absolute image path, pid, captions) of the subset's entries, in the JSON's order;
        every image must exist."""
        if subset not in SUBSETS:
            raise DatasetError(f"{self.dataset}: subset {subset!r}; allowed: {', '.join(SUBSETS)}")
        base, annotation = self._locate(root)
        try:
            records = json.loads(read_text(annotation, self.dataset, self.layout))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{self.dataset}: {annotation} is not valid JSON ({exc}). Expected layout: {self.layout}") from None
        if not isinstance(records, list):
            raise DatasetError(f"{self.dataset}: {annotation} holds a {type(records).__name__}, expected a list of images")
        entries = [self._entry(base, annotation, i, r) for i, r in enumerate(records)
                   if isinstance(r, dict) and r.get("split") == subset]
        if not entries:
            raise DatasetError(f"{self.dataset}: {annotation} has no {subset!r} entries. Expected layout: {self.layout}")
        missing = [path for path, _, _ in entries if not Path(path).is_file()]
        if missing:
            raise DatasetError(f"{self.dataset}: {len(missing)} of the {len(entries)} {subset} images listed in "
                               f"{annotation.name} are missing, e.g. {missing[0]}. Expected layout: {self.layout}")
        return entries

    def write_copy(self, folder: Path, entries: list[tuple[str, int, str, list[str]]],
                   annotation: str | None = None) -> Path:
        """A tiny copy under ``folder``: <name>/imgs/<path> (empty files) and the annotation
        JSON (default: its canonical name) with the real field names; ``entries`` are (path,
        id, split, captions). Returns the copy's folder."""
        base = folder / self.names[0]
        touch(base / "imgs", *(path for path, _, _, _ in entries))
        records = [{self.path_key: path, "id": pid, "split": split, "captions": captions}
                   for path, pid, split, captions in entries]
        (base / (annotation or self.annotations[0])).write_text(json.dumps(records))
        return base

    def _locate(self, root: Path) -> tuple[Path, Path]:
        """The folder holding imgs/ and the annotation file, and that file."""
        errors = []
        for name in self.annotations:
            try:
                base = locate(root, ["imgs", name], self.names, self.dataset, self.layout)
            except DatasetError as exc:
                errors.append(exc)
                continue
            return base, base / name
        # no copy at all for every spelling: missing; a copy in the wrong shape: malformed
        raise next((e for e in errors if not isinstance(e, DatasetNotFoundError)), errors[0])

    def _entry(self, base: Path, annotation: Path, index: int, record: dict) -> tuple[str, int, list[str]]:
        where = f"{self.dataset}: entry {index} of {annotation.name}"
        for key in (self.path_key, "id", "captions"):
            if key not in record:
                raise DatasetError(f"{where} has no {key!r}. Expected layout: {self.layout}")
        captions = record["captions"]
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise DatasetError(f"{where}: 'captions' must be a list of strings")
        try:
            pid = int(record["id"])
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: id {record['id']!r} is not an integer") from None
        if pid < 0:
            raise DatasetError(f"{where}: id {pid} is negative")
        return absolute(base / "imgs" / record[self.path_key]), pid, list(captions)


def _images(entries: list[tuple[str, int, list[str]]]) -> dict[str, int]:
    """Each image once with its pid (an image listed twice must keep its pid)."""
    images: dict[str, int] = {}
    for path, pid, _ in entries:
        if images.setdefault(path, pid) != pid:
            raise DatasetError(f"{Path(path).name} is listed with ids {images[path]} and {pid}")
    return images
