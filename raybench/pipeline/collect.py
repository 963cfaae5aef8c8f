"""File the rows of embedded batches, as they stream in, into their cells; build a finished
cell's rows file.

Rows arrive in any order and from any actor, without their embeddings (the workers, or the
driver, wrote those as Parquet parts: parts.py); each cell keeps a mask of the rows seen, the
errors, and the parts its rows came in, so the driver's memory per cell is a few bytes per
image. A cell is complete when every unique image has arrived, and, for a cell that embeds its
dataset's captions, every query caption (``add_text``). A video cell also counts the tracklets
whose frames have all arrived (for the progress line), and its marker records what was
embedded (``video_record``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from raybench.pipeline.failure import IMAGE, STREAM, Failure
from raybench.pipeline.plan import Cell

#: How many bad image paths an error message names before it says "and N more".
NAMED_PATHS = 5


@dataclass
class CellBuffer:
    cell: Cell
    seen: np.ndarray = field(init=False)
    image_errors: dict[int, str] = field(default_factory=dict)
    failure: Failure | None = None  # the first embedding failure of a batch of this cell
    num_params: int = -1  # -1: unknown (the embedder did not say)
    count: int = 0
    dim: int = 0  # the embeddings' size
    parts: dict[str, None] = field(default_factory=dict)  # the image parts that brought rows, in order
    text_seen: np.ndarray = field(init=False)
    text_parts: dict[str, None] = field(default_factory=dict)
    frames_left: np.ndarray | None = field(init=False)  # a video cell: per tracklet, frames not yet arrived
    tracklets_done: int = 0  # completed tracklets not yet taken by ``take_tracklets``

    def __post_init__(self):
        self.seen = np.zeros(len(self.cell.data.paths), dtype=bool)
        captions = self.cell.data.captions.num_rows if self.cell.text else 0
        self.text_seen = np.zeros(captions, dtype=bool)
        codes = self.cell.data.tracklet_index
        self.frames_left = None if codes is None else np.bincount(codes, minlength=len(self.cell.data.tracklets))

    @property
    def total(self) -> int:
        return len(self.seen)

    @property
    def params(self) -> int | None:
        return self.num_params if self.num_params >= 0 else None

    @property
    def complete(self) -> bool:
        return self.count == self.total and bool(self.text_seen.all())

    def add(self, batch: dict, mask: np.ndarray) -> int:
        """File the image rows ``mask`` selects of a batch (parts.write_parts' output) into this
        cell; returns how many were new (a retried batch may repeat: a part that brings no new
        row is left out of the commit)."""
        rows = batch["row"][mask]
        new = ~self.seen[rows]
        self.seen[rows[new]] = True
        for row, err in zip(rows[new], batch["image_error"][mask][new]):
            if err:
                self.image_errors[int(row)] = str(err)
        self._file(self.parts, batch, mask, new)
        if self.frames_left is not None and new.any():
            touched = self.cell.data.tracklet_index[rows[new]]
            np.subtract.at(self.frames_left, touched, 1)
            self.tracklets_done += int((self.frames_left[np.unique(touched)] == 0).sum())
        if mask.any():
            self.num_params = max(self.num_params, int(np.max(batch["num_params"][mask])))
            self.dim = max(self.dim, int(np.max(batch["dim"][mask])))
        self.count += int(new.sum())
        return int(new.sum())

    def take_tracklets(self) -> int:
        """Tracklets completed since the last call (0 for an image cell)."""
        done, self.tracklets_done = self.tracklets_done, 0
        return done

    def add_text(self, batch: dict, mask: np.ndarray) -> int:
        """File the caption rows ``mask`` selects of a batch; returns how many were new."""
        rows = batch["row"][mask]
        new = ~self.text_seen[rows]
        self.text_seen[rows[new]] = True
        self._file(self.text_parts, batch, mask, new)
        return int(new.sum())

    def _file(self, parts: dict[str, None], batch: dict, mask: np.ndarray, new: np.ndarray) -> None:
        """Keep the parts of the new rows, and the first embedding failure among them."""
        parts.update(dict.fromkeys(p for p in batch["part"][mask][new] if p))
        errors = batch["embed_error"][mask][new]
        failed = [i for i, e in enumerate(errors) if e]
        if failed and self.failure is None:
            self.failure = Failure(str(batch["error_kind"][mask][new][failed[0]]), str(errors[failed[0]]))

    def missing(self) -> Failure:
        if self.count == self.total:
            left = int((~self.text_seen).sum())
            return Failure(STREAM, f"the stream ended with {left} of {len(self.text_seen)} captions not embedded")
        return Failure(STREAM, f"the stream ended with {self.total - self.count} of {self.total} images not embedded")


def file_batch(batch: dict, buffers: list[CellBuffer]) -> dict[int, int]:
    """File a batch's rows (parts.write_parts' output) into their cells' buffers (indexed by
    the ``cell`` column); returns, per cell of the batch, how many of its images were new."""
    cells, text = batch["cell"], batch["text"]
    new = {}
    for index in np.unique(cells):
        mine = cells == index
        new[int(index)] = buffers[int(index)].add(batch, mine & ~text)
        if (mine & text).any():
            buffers[int(index)].add_text(batch, mine & text)
    return new


def bad_image_failure(errors: dict[int, str]) -> Failure:
    """One line naming the unreadable images (the first few, and how many more)."""
    messages = [errors[row] for row in sorted(errors)]
    text = "; ".join(messages[:NAMED_PATHS])
    more = len(messages) - NAMED_PATHS
    suffix = f"; and {more} more" if more > 0 else ""
    return Failure(IMAGE, f"{len(messages)} unreadable image(s) (on_bad_image: fail): {text}{suffix}")


def finish(buffer: CellBuffer, on_bad_image: str) -> tuple[pa.Table | None, list[str], Failure | None]:
    """(rows to store, skipped image paths, failure): the rows mirror the manifest's, each
    with the row of its image's embedding (store.row_table)."""
    from raybench.rundir.store import row_table

    data = buffer.cell.data
    if buffer.failure:
        return None, [], buffer.failure
    if not buffer.complete:
        return None, [], buffer.missing()
    skipped = [data.paths[row] for row in sorted(buffer.image_errors)]
    if skipped and on_bad_image == "fail":
        return None, [], bad_image_failure(buffer.image_errors)
    index = np.asarray(data.index)
    manifest = data.manifest
    if skipped:
        keep = ~np.isin(index, np.array(sorted(buffer.image_errors)))
        manifest, index = manifest.filter(pa.array(keep)), index[keep]
    return row_table(manifest, index), skipped, None


def video_record(buffer: CellBuffer) -> dict | None:
    """A video cell's marker record (None for an image cell): what plan.load_images recorded
    (tracklets, frames, embed_frames, frames_in_copy, the manifest's note) and, where frames
    could not be read (on_bad_image: skip), the tracklets scored from the frames that were
    read (``partial``: the first NAMED_PATHS by name, "3 of 5 frames", and ``partial_count``)
    and those left out because none was (``skipped``, ``skipped_count``)."""
    data = buffer.cell.data
    if data.video is None:
        return None
    record = dict(data.video)
    if buffer.image_errors:
        codes = np.asarray(data.tracklet_index)
        total = np.bincount(codes, minlength=len(data.tracklets))
        lost = np.bincount(codes[sorted(buffer.image_errors)], minlength=len(data.tracklets))
        partial = np.flatnonzero((lost > 0) & (lost < total))
        skipped = np.flatnonzero((lost == total) & (total > 0))
        record.update(
            partial={data.tracklets[i]: f"{total[i] - lost[i]} of {total[i]} frames" for i in partial[:NAMED_PATHS]},
            partial_count=len(partial), skipped=[data.tracklets[i] for i in skipped[:NAMED_PATHS]],
            skipped_count=len(skipped))
    return record


def finish_text(buffer: CellBuffer) -> pa.Table | None:
    """The caption rows to store beside a finished text cell's images; None for other cells."""
    from raybench.rundir.store import row_table

    if not buffer.cell.text:
        return None
    captions = buffer.cell.data.captions
    return row_table(captions, np.arange(captions.num_rows))
