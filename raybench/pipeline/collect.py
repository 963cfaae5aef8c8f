"""File embedding rows, as they stream in, into their cells; build a finished cell's table.

Rows arrive in any order and from any actor; each cell keeps a float32 [unique images, dim]
array and a mask of the rows seen, so memory is one cell's embeddings (a few hundred MB for the
largest datasets), never its pixels. A cell is complete when every unique image has arrived,
and, for a cell that embeds its dataset's captions, every query caption (``add_text``).
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
    embeddings: np.ndarray | None = None
    seen: np.ndarray = field(init=False)
    image_errors: dict[int, str] = field(default_factory=dict)
    failure: Failure | None = None  # the first embedding failure of a batch of this cell
    num_params: int = -1  # -1: unknown (the embedder did not say)
    count: int = 0
    text_embeddings: np.ndarray | None = None  # [captions, dim], a text cell only
    text_seen: np.ndarray = field(init=False)

    def __post_init__(self):
        self.seen = np.zeros(len(self.cell.data.paths), dtype=bool)
        captions = self.cell.data.captions.num_rows if self.cell.text else 0
        self.text_seen = np.zeros(captions, dtype=bool)

    @property
    def total(self) -> int:
        return len(self.seen)

    @property
    def params(self) -> int | None:
        return self.num_params if self.num_params >= 0 else None

    @property
    def complete(self) -> bool:
        return self.count == self.total and bool(self.text_seen.all())

    def add_text(self, rows: np.ndarray, embedding: np.ndarray, embed_error, error_kind) -> int:
        """File a batch's caption rows of this cell; returns how many were new."""
        if self.text_embeddings is None or self.text_embeddings.shape[1] != embedding.shape[1]:
            self.text_embeddings = np.zeros((len(self.text_seen), embedding.shape[1]), dtype=np.float32)
        new = ~self.text_seen[rows]
        self.text_embeddings[rows[new]] = embedding[new]
        self.text_seen[rows[new]] = True
        failed = [i for i, e in enumerate(np.asarray(embed_error)[new]) if e]
        if failed and self.failure is None:
            self.failure = Failure(str(np.asarray(error_kind)[new][failed[0]]), str(np.asarray(embed_error)[new][failed[0]]))
        return int(new.sum())

    def add(self, rows: np.ndarray, embedding: np.ndarray, image_error, embed_error, error_kind,
            num_params) -> int:
        """File a batch's rows of this cell; returns how many were new (a retried batch may repeat)."""
        if self.embeddings is None or self.embeddings.shape[1] != embedding.shape[1]:
            self.embeddings = np.zeros((self.total, embedding.shape[1]), dtype=np.float32)
        new = ~self.seen[rows]
        rows, embedding = rows[new], embedding[new]
        self.embeddings[rows] = embedding
        self.seen[rows] = True
        for row, err in zip(rows, np.asarray(image_error)[new]):
            if err:
                self.image_errors[int(row)] = str(err)
        failed = [i for i, e in enumerate(np.asarray(embed_error)[new]) if e]
        if failed and self.failure is None:
            first = failed[0]
            self.failure = Failure(str(np.asarray(error_kind)[new][first]), str(np.asarray(embed_error)[new][first]))
        if len(num_params):
            self.num_params = max(self.num_params, int(np.max(num_params)))
        self.count += int(new.sum())
        return int(new.sum())

    def missing(self) -> Failure:
        if self.count == self.total:
            left = int((~self.text_seen).sum())
            return Failure(STREAM, f"the stream ended with {left} of {len(self.text_seen)} captions not embedded")
        return Failure(STREAM, f"the stream ended with {self.total - self.count} of {self.total} images not embedded")


def bad_image_failure(errors: dict[int, str]) -> Failure:
    """One line naming the unreadable images (the first few, and how many more)."""
    messages = [errors[row] for row in sorted(errors)]
    text = "; ".join(messages[:NAMED_PATHS])
    more = len(messages) - NAMED_PATHS
    suffix = f"; and {more} more" if more > 0 else ""
    return Failure(IMAGE, f"{len(messages)} unreadable image(s) (on_bad_image: fail): {text}{suffix}")


def finish(buffer: CellBuffer, on_bad_image: str) -> tuple[pa.Table | None, list[str], Failure | None]:
    """(table to store, skipped image paths, failure): the table mirrors the manifest's rows."""
    from raybench.rundir.store import embedding_table

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
    return embedding_table(manifest, buffer.embeddings[index]), skipped, None


def finish_text(buffer: CellBuffer) -> pa.Table | None:
    """The caption table to store beside a finished text cell's images; None for other cells."""
    from raybench.rundir.store import text_table

    if not buffer.cell.text:
        return None
    return text_table(buffer.cell.data.captions, buffer.text_embeddings)
