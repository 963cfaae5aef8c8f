"""Where a stream's embeddings are written: Parquet parts, by the workers that computed them.

Each batch that leaves an embedding actor is written at once, one part per (cell, images or
captions) it holds, into that cell's folder for the stream's attempt (rundir/store.py), and
only small rows go on to the driver: cell, row, errors, num_params, the part's file name and
the embedding's size, never the embedding. The driver files those rows (collect.py) and
commits a cell when all of them have arrived, naming exactly the parts they came in.

Where the workers cannot see the run directory (``WRITES_DRIVER``: a node-local --out that is
not declared shared, on a cluster the run joined, see runtime.embedding_writes), the actors
return their embeddings and the driver calls the same ``write_parts`` on each batch as it
arrives; everything after that is the same code. The choice is made once per run and recorded
in run.json (``pool.writes``).

The cost in the actor is the write itself: ~65,000 d=1024 rows/s on one core here (zstd),
i.e. about 5% of the time of an actor that embeds 3,000 images/s at d=1024.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

WRITES_WORKERS, WRITES_DRIVER = "workers", "driver"


@dataclass(frozen=True)
class Parts:
    """Where one stream's parts go: ``dirs[cell]`` is the attempt folder (relative to the run
    directory) of the stream's cell ``cell``. Picklable: the actors get it as a class attribute."""

    store: Any  # rundir.store.RunStore
    attempt: str
    dirs: tuple[str, ...]

    @classmethod
    def open(cls, store, cells) -> "Parts":
        """A new attempt for ``cells`` (plan.Cell, in stream order), its folders created."""
        attempt = store.new_attempt()
        return cls(store, attempt, tuple(store.attempt_dir(c.data.name, c.model.name, attempt) for c in cells))


def write_parts(batch: dict[str, Any], parts: Parts) -> dict[str, Any]:
    """Write a batch's embeddings (the actors' output, see embed.EmbedWorker) as parts; return
    its rows without ``embedding``, with ``part`` (the file name in the cell's attempt folder;
    "" for a row not written: an unreadable image, a batch that failed) and ``dim``."""
    from raybench.rundir.store import IMAGES, TEXT

    embedding = batch["embedding"]
    count = len(batch["row"])
    names = np.full(count, "", dtype=object)
    good = np.array([not (a or b) for a, b in zip(batch["image_error"], batch["embed_error"])], dtype=bool)
    for cell in np.unique(batch["cell"]):
        for text, prefix in ((False, IMAGES.prefix), (True, TEXT.prefix)):
            mask = good & (batch["cell"] == cell) & (batch["text"] == text)
            if mask.any():
                names[mask] = parts.store.write_part(parts.dirs[int(cell)], prefix, batch["row"][mask], embedding[mask])
    rows = {key: value for key, value in batch.items() if key != "embedding"}
    return {**rows, "part": names, "dim": np.full(count, embedding.shape[1], dtype=np.int32)}
