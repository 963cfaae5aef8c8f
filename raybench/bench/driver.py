"""`raybench bench driver`: how many embeddings per second the driver can collect and commit.

Embeddings pass through the driver (pipeline/driver.py): ``iter_batches`` brings every batch of
the stream to the driver process, which files rows into cells (collect.CellBuffer) and writes
each finished cell's Parquet (store.write_embeddings). This measures that ceiling with a model
that costs nothing: Ray Data tasks that emit the embedding actors' output columns (d=1024 by
default, float32) at the highest rate the stream can produce, over a few cells. Two sides, one
after the other on the same local Ray:

- stream: the driver only counts the batches (Ray Data's own transfer to the driver);
- driver: the run's own filing and commit, cell by cell, into a scratch run directory.

For scale: eight H200s running ViT-B/16 produce about 25,000 embeddings/s (``TARGET``).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np

TARGET = 25_000  # embeddings/s of 8 H200s on ViT-B/16 (the figure)


def _emit(batch: dict[str, Any], per_cell: int, dim: int) -> dict[str, Any]:
    """The embedding actors' output columns for ``batch["id"]``, at no model cost."""
    ids = batch["id"]
    count = len(ids)
    empty = np.full(count, "", dtype=object)
    return {"cell": (ids // per_cell).astype(np.int16), "row": (ids % per_cell).astype(np.int32),
            "embedding": np.ones((count, dim), dtype=np.float32), "image_error": empty, "embed_error": empty,
            "error_kind": empty, "num_params": np.zeros(count, dtype=np.int64)}


def _stream(images: int, per_cell: int, dim: int, batch: int):
    import ray.data

    return ray.data.range(images, override_num_blocks=max(1, images // batch)).map_batches(
        _emit, fn_kwargs={"per_cell": per_cell, "dim": dim}, batch_size=None)


def _cells(cells: int, per_cell: int):
    """``cells`` planned cells of ``per_cell`` query/gallery images each (paths never read)."""
    from raybench.datasets.manifest import make_manifest
    from raybench.pipeline.plan import EMBED, Cell, load_images
    from raybench.specs import DatasetSpec, ModelSpec

    model = ModelSpec(name="zero", loader="dummy", arch="none", weights=None, paradigm="baseline")
    out = []
    for c in range(cells):
        rows = {"path": [f"/zero/{c}/{i}.jpg" for i in range(per_cell)], "pid": [i // 4 + 1 for i in range(per_cell)],
                "camid": [i % 4 for i in range(per_cell)], "split": ["query" if i % 8 == 0 else "gallery"
                                                                    for i in range(per_cell)]}
        data = load_images(DatasetSpec(name=f"zero{c}", adapter="folder", layout_dir=""), lambda spec, rows=rows: make_manifest(rows))
        out.append(Cell(model, data, EMBED, f"zero-{c}"))
    return out


class _Clock:
    """Arrival times of a stream's batches: steady rates count from the first batch, so that
    Ray Data's start (planning, the first tasks) is not charged to the driver."""

    def __init__(self, stream):
        self.stream, self.first, self.first_count, self.count = stream, None, 0, 0

    def __iter__(self):
        for batch in self.stream.iter_batches(batch_size=None, batch_format="numpy"):
            self.count += len(batch["row"])
            if self.first is None:
                self.first, self.first_count = time.perf_counter(), self.count
            yield batch
        self.end = time.perf_counter()

    def rate(self, dim: int) -> dict[str, float]:
        seconds = self.end - self.first
        steady = (self.count - self.first_count) / seconds
        return {"seconds": seconds, "embeddings_per_s": steady, "MB_per_s": steady * dim * 4 / 1e6}


def collect_and_commit(batches, cells, store) -> int:
    """The driver's own work on a stream: file rows into cells, commit each finished cell."""
    from raybench.pipeline.collect import CellBuffer, finish
    from raybench.rundir.records import CellMarker

    buffers = [CellBuffer(c) for c in cells]
    committed = 0
    for batch in batches:
        for index in np.unique(batch["cell"]):
            mask = batch["cell"] == index
            buffer = buffers[int(index)]
            buffer.add(batch["row"][mask], batch["embedding"][mask], batch["image_error"][mask],
                       batch["embed_error"][mask], batch["error_kind"][mask], batch["num_params"][mask])
            if buffer.complete:
                table, _, failure = finish(buffer, "fail")
                assert failure is None, failure
                cell = buffer.cell
                marker = CellMarker(cell.key, cell.model.name, cell.data.name, "", cell.data.hash,
                                    int(buffer.embeddings.shape[1]), table.num_rows)
                store.write_embeddings(cell.data.name, cell.model.name, table, marker, {})
                committed += table.num_rows
    return committed


def run(images: int = 100_000, dim: int = 1024, cells: int = 4, batch: int = 1024) -> dict[str, Any]:
    import ray

    from raybench.ray_runtime import connect
    from raybench.rundir.store import RunStore

    per_cell = images // cells
    images = per_cell * cells
    load = os.getloadavg()
    started = connect("driver", dashboard=False, kind="bench")
    try:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        sum(1 for _ in _Clock(_stream(2 * batch, batch, dim, batch)))  # warm-up: Ray Data's first execution
        stream = _Clock(_stream(images, per_cell, dim, batch))
        counted = sum(len(b["row"]) for b in stream)
        planned = _cells(cells, per_cell)
        with tempfile.TemporaryDirectory() as scratch:
            driver = _Clock(_stream(images, per_cell, dim, batch))
            committed = collect_and_commit(driver, planned, RunStore.open(scratch))
    finally:
        if started:
            ray.shutdown()
    if counted != images or committed != images:
        raise RuntimeError(f"streamed {counted}, committed {committed} of {images} embeddings")
    return {"benchmark": "driver", "images": images, "dim": dim, "cells": cells, "batch": batch,
            "cpus": os.cpu_count(), "load_before": load, "load_after": os.getloadavg(),
            "stream": stream.rate(dim), "driver": driver.rate(dim),
            "target_embeddings_per_s": TARGET, "met": driver.rate(dim)["embeddings_per_s"] >= TARGET,
            "counted_from": "the first batch (steady: Ray Data's start excluded)"}
