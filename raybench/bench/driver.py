"""`raybench bench driver`: how many embeddings per second the driver can take, when the
driver writes the embeddings and when the embedding workers do.

A run streams embeddings from a model that costs nothing: Ray Data tasks that emit the
embedding actors' output columns (d=1024 by default, float32: random values drawn once, as
incompressible as real embeddings) at the highest rate the stream can produce, over a few
cells. Three sides, one after the other on the same local Ray, each counted from its first
batch (Ray Data's start excluded):

- stream: the driver only counts the batches (Ray Data's transfer of the embeddings to it);
- driver writes: the batches bring the embeddings; the driver writes them as Parquet parts
  (parts.write_parts, as a run does when its workers cannot see the run directory), files the
  rows into cells (collect.file_batch) and commits each finished cell
  (store.commit_embeddings), into a scratch run directory;
- worker writes: the tasks write the parts themselves (the same parts.write_parts, as the
  embedding actors of a run do) and send the driver small rows, which it files and commits.

Each side gives its embeddings per second (wall clock), and two measures of the driver alone:
its capacity, the embeddings over the seconds it spent on them (writing, where it writes,
filing, committing), not waiting for the next batch: the rate it could take if batches came
at once; and the embeddings per CPU second of the driver's process (all its threads: Ray
Data's delivery of the batches included). On a machine of a few cores, the tasks that write
compete with the driver for them: the wall rate of the worker side is then the machine's,
and the two others are the driver's. ``ratio``, ``capacity_ratio`` and ``cpu_ratio``: worker
writes over driver writes, from the same run. ``met``: when the workers write, the driver's
embeddings per CPU second (the measure that counts Ray Data's delivery too) reach ``TARGET``:
a driver with one core to itself would take that many.

For scale: eight H200s running ViT-B/16 produce about 25,000 embeddings/s (``TARGET``).
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from typing import Any

import numpy as np

TARGET = 25_000  # embeddings/s of 8 H200s on ViT-B/16 (the figure)


@functools.lru_cache(maxsize=4)
def _noise(count: int, dim: int) -> np.ndarray:
    """Seeded random float32 [count, dim], drawn once per task process (read-only): as
    incompressible as real embeddings, where constant values would compress to nothing."""
    values = np.random.default_rng(0).standard_normal((count, dim), dtype=np.float32)
    values.flags.writeable = False
    return values


def _emit(batch: dict[str, Any], per_cell: int, dim: int, parts=None) -> dict[str, Any]:
    """The embedding actors' output columns for ``batch["id"]``, at no model cost; with
    ``parts`` (parts.Parts), written there as the actors write them (parts.write_parts)."""
    from raybench.pipeline.parts import write_parts

    ids = batch["id"]
    count = len(ids)
    empty = np.full(count, "", dtype=object)
    out = {"cell": (ids // per_cell).astype(np.int16), "row": (ids % per_cell).astype(np.int32),
           "embedding": _noise(count, dim), "text": np.zeros(count, dtype=bool),
           "image_error": empty, "embed_error": empty, "error_kind": empty, "num_params": np.zeros(count, dtype=np.int64)}
    return out if parts is None else write_parts(out, parts)


def _stream(images: int, per_cell: int, dim: int, batch: int, parts=None):
    import ray.data

    return ray.data.range(images, override_num_blocks=max(1, images // batch)).map_batches(
        _emit, fn_kwargs={"per_cell": per_cell, "dim": dim, "parts": parts}, batch_size=None)


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
                self.first, self.first_count, self.first_cpu = time.perf_counter(), self.count, time.process_time()
            yield batch
        self.end, self.end_cpu = time.perf_counter(), time.process_time()

    def rate(self, dim: int) -> dict[str, float]:
        seconds, cpu = self.end - self.first, self.end_cpu - self.first_cpu
        steady = (self.count - self.first_count) / seconds
        return {"seconds": seconds, "embeddings_per_s": steady, "MB_per_s": steady * dim * 4 / 1e6,
                "driver_cpu_seconds": cpu, "embeddings_per_driver_cpu_s": (self.count - self.first_count) / cpu}


def collect_and_commit(batches, cells, parts, driver_writes: bool) -> tuple[int, float]:
    """The driver's own work on a stream, as a run's (pipeline/driver.py): write the parts
    (``driver_writes``; else the batches come written), file the rows into cells, commit each
    finished cell into ``parts.store``. (embeddings committed, seconds spent on them)."""
    from raybench.pipeline.collect import CellBuffer, file_batch, finish
    from raybench.pipeline.parts import write_parts
    from raybench.rundir.records import CellMarker

    buffers = [CellBuffer(c) for c in cells]
    committed, busy = 0, 0.0
    for batch in batches:
        start = time.perf_counter()
        if driver_writes:
            batch = write_parts(batch, parts)
        for i in file_batch(batch, buffers):
            buffer = buffers[i]
            if buffer.complete:
                rows, _, failure = finish(buffer, "fail")
                assert failure is None, failure
                cell = buffer.cell
                marker = CellMarker(cell.key, cell.model.name, cell.data.name, "", cell.data.hash, buffer.dim,
                                    rows.num_rows)
                parts.store.commit_embeddings(marker, parts.attempt, rows, buffer.parts, {})
                committed += rows.num_rows
        busy += time.perf_counter() - start
    return committed, busy


def _side(images: int, per_cell: int, dim: int, batch: int, cells: int, worker_writes: bool) -> dict[str, Any]:
    """One side, into a scratch run directory: its rates (see the module docstring)."""
    from raybench.pipeline.parts import Parts
    from raybench.rundir.store import RunStore

    planned = _cells(cells, per_cell)
    with tempfile.TemporaryDirectory() as scratch:
        parts = Parts.open(RunStore.open(scratch), planned)
        clock = _Clock(_stream(images, per_cell, dim, batch, parts if worker_writes else None))
        committed, busy = collect_and_commit(clock, planned, parts, driver_writes=not worker_writes)
    if committed != images:
        raise RuntimeError(f"{'worker' if worker_writes else 'driver'} writes: committed {committed} of {images}")
    return {**clock.rate(dim), "driver_busy_seconds": busy, "driver_capacity_per_s": committed / busy}


def run(images: int = 100_000, dim: int = 1024, cells: int = 4, batch: int = 1024) -> dict[str, Any]:
    import ray

    from raybench.ray_runtime import connect

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
        driver = _side(images, per_cell, dim, batch, cells, worker_writes=False)
        workers = _side(images, per_cell, dim, batch, cells, worker_writes=True)
    finally:
        if started:
            ray.shutdown()
    if counted != images:
        raise RuntimeError(f"streamed {counted} of {images} embeddings")
    return {"benchmark": "driver", "images": images, "dim": dim, "cells": cells, "batch": batch,
            "cpus": os.cpu_count(), "load_before": load, "load_after": os.getloadavg(),
            "stream": stream.rate(dim), "driver_writes": driver, "worker_writes": workers,
            "ratio": workers["embeddings_per_s"] / driver["embeddings_per_s"],
            "capacity_ratio": workers["driver_capacity_per_s"] / driver["driver_capacity_per_s"],
            "cpu_ratio": workers["embeddings_per_driver_cpu_s"] / driver["embeddings_per_driver_cpu_s"],
            "target_embeddings_per_s": TARGET, "met": workers["embeddings_per_driver_cpu_s"] >= TARGET,
            "counted_from": "the first batch (steady: Ray Data's start excluded)"}
