"""Plan and run a matrix: resume, one embedding stream per model, failure isolation per cell.

``run_matrix`` starts (or joins) Ray, loads each dataset's manifest once, plans the cells
(plan.py), replays finished ones, re-scores those whose embeddings are current, and for each
model with pending cells runs one Ray Data stream over all of them (embed.py). Each cell is
committed to the store the moment its last image arrives and handed to the run's Reducer actor,
which scores it while the next cells embed. Any failure (a missing dataset, a model that does
not load, an unreadable image, a scoring error) fails the cells it touches, with the error in
their result JSON; the run goes on, and ``RunSummary.ok`` is False.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from raybench.console import notice
from raybench.pipeline import reducer as reducers
from raybench.pipeline.collect import CellBuffer, finish
from raybench.pipeline.embed import Source, embedding_stream, error_text, is_load_error, write_pixel_cache
from raybench.pipeline.plan import (
    DONE, EVALUATE, FAILED, Cell, DatasetImages, group_by_model, load_images, plan_cells,
)
from raybench.pipeline.progress import Progress, RunMetrics
from raybench.pipeline.store import RunStore
from raybench.specs import MatrixSpec, ModelSpec, Preprocess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How to run a matrix (none of these change the results)."""

    force: bool = False  # recompute finished cells (and rebuild pixel caches)
    actors: int | None = None  # embedding actors (default: one per GPU, else one)
    batch_size: int | None = None  # overrides every model's batch size
    threads: int | None = None  # torch threads per CPU actor
    pixel_cache: bool = True
    shared_out: bool = False  # --out is a mount that every node of the cluster shares
    num_cpus: int | None = None  # CPUs of a local Ray (default: all)
    dashboard: bool = False  # start the dashboard with a local Ray
    ray_progress: bool = False  # Ray Data's own progress bars


@dataclass
class RunSummary:
    out: str
    rows: list[dict]  # one summary row per cell (reducer.summary_row)
    seconds: float
    record: dict = field(default_factory=dict)  # what run.json holds

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "ok"]

    @property
    def ok(self) -> bool:
        return not self.failed


def run_matrix(matrix: MatrixSpec, out: str, options: RunOptions = RunOptions(),
               echo: Callable[[str], None] = notice, load_manifest=None) -> RunSummary:
    """Run every cell of ``matrix`` into the run directory ``out`` (a path or a URI).

    ``echo`` receives the progress lines; ``load_manifest`` stands in for
    raybench.datasets.load_manifest (tests use it to build manifests the catalog cannot).
    """
    from raybench.pipeline import runtime

    store = RunStore.open(out)
    started = runtime.connect(matrix.name, options.num_cpus, options.dashboard)
    try:
        return Run(matrix, store, options, echo, load_manifest).execute()
    finally:
        if started:
            import ray

            ray.shutdown()


class Tracker:
    """The reducer calls in flight; results are shown as they come back."""

    def __init__(self, reducer, progress: Progress):
        self.reducer, self.progress = reducer, progress
        self.pending: dict = {}  # ObjectRef -> CellJob

    def submit(self, ref, job) -> None:
        self.pending[ref] = job
        self.poll()

    def poll(self, timeout: float = 0) -> None:
        import ray

        if not self.pending:
            return
        ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=timeout)
        for ref in ready:
            job = self.pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                if job is None:  # replaying a finished cell: nothing to redo
                    continue
                # The reducer died while scoring: it restarts; this cell is recorded as failed.
                self.submit(self.reducer.fail.remote(job, f"scoring crashed: {type(exc).__name__}"), job)
                continue
            self.progress.cell_finished(reducers.summary_row(result))

    def wait_all(self) -> None:
        """Until every cell is scored (the rows are the reducer's table)."""
        while self.pending:
            self.poll(timeout=1.0)


class Run:
    """One execution of a matrix into a store (state lives here, not in module globals)."""

    def __init__(self, matrix: MatrixSpec, store: RunStore, options: RunOptions, echo, load_manifest):
        self.matrix, self.store, self.options, self.echo = matrix, store, options, echo
        self.load_manifest = load_manifest
        self.run_id = uuid.uuid4().hex[:8]
        self.built_caches: set[str] = set()

    # -- the whole run --------------------------------------------------------------------

    def execute(self) -> RunSummary:
        from raybench.pipeline import runtime

        start = time.time()
        cluster = runtime.Cluster.current()
        runtime.check_out(self.store, cluster, self.options.shared_out)
        self.pool = runtime.plan_pool(cluster, self.options.actors, self.options.threads)
        if not self.pool.gpus:
            self.echo(f"no GPU in this Ray cluster: embedding on CPU "
                      f"({self.pool.actors} actor(s), {self.pool.threads} torch thread(s) each)")
        _configure_ray_data(self.options.ray_progress)

        datasets = self._load_datasets()
        self.matrix = _resolve_models(self.matrix)
        cells = plan_cells(self.matrix, datasets, self.store, self.options.force)
        groups = group_by_model(cells)
        record = self._record(cells, cluster, start)
        self.store.write_json("run.json", record)

        self.reducer = reducer = reducers.start(self.store, self.matrix.eval, self.matrix.name, self.run_id)
        images = sum(len(c.data.paths) for _, group in groups for c in group)
        self.progress = Progress(len(cells), 0, images, RunMetrics(self.matrix.name), self.echo)
        self.tracker = Tracker(reducer, self.progress)
        self._replay(cells)
        self.groups = groups
        # On one node the driver sees the actors' files: a missing weights file fails its
        # cells here, before any actor starts.
        self.preprocesses = {model.name: _resolve_preprocess(model, local_files=cluster.nodes == 1)
                             for model, _ in groups}
        for model, group in groups:
            self._embed_model(model, group)
        self.tracker.wait_all()
        self.progress.close()

        import ray

        rows = ray.get(reducer.table.remote())
        ray.kill(reducer)
        record.update(self._finish_record(rows, start))
        self.store.write_json("run.json", record)
        return RunSummary(self.store.uri, rows, time.time() - start, record)

    def _load_datasets(self) -> dict[str, DatasetImages]:
        loader = self.load_manifest
        if loader is None:
            from raybench.datasets import load_manifest as loader
        return {spec.name: load_images(spec, loader) for spec in self.matrix.datasets}

    def _replay(self, cells: list[Cell]) -> None:
        """Cells that need no embedding: finished, failed before starting, or only to re-score."""
        for cell in cells:
            if cell.state == DONE:
                self.tracker.submit(self.reducer.keep.remote(cell.previous), None)
            elif cell.state == FAILED:
                self._fail(cell, cell.reason)
            elif cell.state == EVALUATE:
                marker = cell.previous or {}
                job = reducers.job_for(
                    cell, self.matrix.eval, num_params=marker.get("num_params"),
                    embed_seconds=marker.get("embed_seconds", 0.0),
                    skipped_images=tuple(marker.get("skipped_images", ())), device=marker.get("device", ""),
                )
                self.tracker.submit(self.reducer.evaluate.remote(job), job)

    # -- one model ------------------------------------------------------------------------

    def _embed_model(self, model: ModelSpec, cells: list[Cell]) -> None:
        self.progress.start_model(model.name)
        preprocess = self.preprocesses[model.name]
        if isinstance(preprocess, str):  # the error text
            for cell in cells:
                self._fail(cell, preprocess)
            return
        spec = dataclasses.replace(model, batch_size=self.options.batch_size or model.batch_size)
        pending = list(cells)
        while pending:
            pending = self._stream_cells(spec, preprocess, pending)

    def _stream_cells(self, spec: ModelSpec, preprocess: Preprocess, cells: list[Cell]) -> list[Cell]:
        """Stream ``cells``' images through one actor pool; return the cells left to embed.

        A batch that fails to embed fails the first cell it touches, and the stream restarts for
        the other unfinished cells, so one cell the model cannot embed never loses another (at
        most one restart per cell). A model that fails to load, or a stream that breaks as a
        whole, fails every unfinished cell at once: nothing is gained by loading it again.
        """
        sources = [Source(i, c.data.paths, self._pixel_cache(c.data, preprocess))
                   for i, c in enumerate(cells)]
        stream = embedding_stream(spec, preprocess, sources, self.store, self.pool,
                                  name=f"{self.matrix.name}:{spec.name}")
        buffers = [CellBuffer(c) for c in cells]
        finished: set[int] = set()
        self._last_finish = time.perf_counter()
        try:
            for batch in stream.iter_batches(batch_size=None, batch_format="numpy"):
                bad = self._file_batch(batch, buffers, finished, preprocess)
                self.tracker.poll()
                if bad is None:
                    continue
                error = buffers[bad].embed_error  # stop streaming; go on without the failed cell
                unfinished = [i for i in range(len(cells)) if i not in finished]
                failing = unfinished if is_load_error(error) else [bad]  # a load failure is model-wide
                for i in failing:
                    self._fail(cells[i], error)
                return [cells[i] for i in unfinished if i not in failing]
        except Exception as exc:  # noqa: BLE001 - a broken stream fails this model's cells only
            log.exception("embedding stream of %s failed", spec.name)
            error = f"embedding {spec.name} failed: {error_text(exc)}"
            for i, cell in enumerate(cells):
                if i not in finished:
                    self._fail(cell, error)
            return []
        for i, buffer in enumerate(buffers):
            if i not in finished:
                self._finish_cell(buffer, preprocess)
        return []

    def _file_batch(self, batch, buffers, finished, preprocess) -> int | None:
        """File a batch into its cells; finish cells that became complete; return the index of
        a cell the model failed to embed, if any."""
        cells = batch["cell"]
        for index in np.unique(cells):
            i = int(index)
            mask = cells == index
            buffer = buffers[i]
            new = buffer.add(batch["row"][mask], batch["embedding"][mask], batch["image_error"][mask],
                             batch["embed_error"][mask], batch["num_params"][mask])
            self.progress.add_images(new)
            if buffer.embed_error:
                return i
            if buffer.complete and i not in finished:
                finished.add(i)
                self._finish_cell(buffer, preprocess)
        return None

    def _finish_cell(self, buffer: CellBuffer, preprocess: Preprocess) -> None:
        cell = buffer.cell
        # A stream's cells finish one after another: each is charged the time since the
        # previous one finished (the first also its actors' start and model load).
        now = time.perf_counter()
        embed_seconds, self._last_finish = now - self._last_finish, now
        table, skipped, error = finish(buffer, self.matrix.on_bad_image)
        job = reducers.job_for(cell, self.matrix.eval, num_params=buffer.params,
                               embed_seconds=embed_seconds, skipped_images=tuple(skipped),
                               device=self.pool.device)
        if error:
            self.tracker.submit(self.reducer.fail.remote(job, error), job)
            return
        marker = {
            "key": cell.key, "model": cell.model.name, "dataset": cell.data.name,
            "spec_hash": job.spec_hash, "manifest_hash": job.manifest_hash,
            "dim": int(buffer.embeddings.shape[1]), "num_params": job.num_params,
            "embed_seconds": round(embed_seconds, 3), "skipped_images": skipped,
            "device": self.pool.device, "written": _now(),
        }
        spec = {"model": dataclasses.asdict(cell.model), "preprocess": dataclasses.asdict(preprocess),
                "dataset": dataclasses.asdict(cell.data.spec)}
        self.store.write_embeddings(cell.data.name, cell.model.name, table, marker, spec)
        self.tracker.submit(self.reducer.evaluate.remote(job), job)

    def _fail(self, cell: Cell, error: str) -> None:
        job = reducers.job_for(cell, self.matrix.eval, device=self.pool.device)
        self.tracker.submit(self.reducer.fail.remote(job, error), job)

    # -- decode once per (dataset, pixel_key) ---------------------------------------------

    def _pixel_cache(self, data: DatasetImages, preprocess: Preprocess) -> tuple[str, ...]:
        """Parquet files of the dataset's decoded pixels, or () to decode in the stream.

        Used when a committed cache matches the manifest (unless --force, or it recorded
        unreadable images: they may have been fixed since; a cache built by this run is always
        used); built first when two or more pending models of this run share the dataset and
        pixel geometry (see embed.py).
        """
        if not self.options.pixel_cache:
            return ()
        rel = self.store.pixel_cache_dir(data.name, preprocess.pixel_key)
        marker = self.store.marker(rel) or {}
        current = marker.get("key") == data.hash and (
            rel in self.built_caches or not (self.options.force or marker.get("bad_images")))
        if not current:
            sharing = sum(
                1 for model, group in self.groups
                if getattr(self.preprocesses[model.name], "pixel_key", None) == preprocess.pixel_key
                and any(c.data.name == data.name for c in group)
            )
            if sharing < 2:
                return ()
            try:
                self.echo(f"decoding {data.name} once for {sharing} models ({preprocess.pixel_key})")
                write_pixel_cache(self.store, rel, data.paths, preprocess,
                                  {"key": data.hash, "pixel_key": preprocess.pixel_key, "written": _now()})
                self.built_caches.add(rel)
            except Exception as exc:  # noqa: BLE001 - the cache is an optimisation: decode instead
                log.warning("pixel cache %s not written (%s); decoding per model", rel, exc)
                return ()
        return tuple(self.store.parquet_files(rel))

    # -- run.json -------------------------------------------------------------------------

    def _record(self, cells: list[Cell], cluster, start: float) -> dict:
        from raybench.pipeline import runtime

        previous = self.store.read_json("run.json") or {}
        return {
            "run": self.matrix.name,
            "run_id": self.run_id,
            "previous_run_id": previous.get("run_id"),
            "status": "running",
            "out": self.store.uri,
            "command": sys.argv,
            "matrix": dataclasses.asdict(self.matrix),
            "options": dataclasses.asdict(self.options),
            "versions": runtime.versions(),
            "git": runtime.git_state(),
            "cluster": dataclasses.asdict(cluster),
            "pool": dataclasses.asdict(self.pool),
            "started": _now(start),
            "plan": [{"dataset": c.data.name, "model": c.model.name, "state": c.state, "reason": c.reason}
                     for c in cells],
        }

    def _finish_record(self, rows: list[dict], start: float) -> dict:
        failed = [r for r in rows if r["status"] != "ok"]
        return {
            "status": "failed" if failed else "finished",
            "finished": _now(),
            "seconds": round(time.time() - start, 3),
            "cells": rows,
            "summary": {"cells": len(rows), "ok": len(rows) - len(failed), "failed": len(failed)},
        }


def _resolve_models(matrix: MatrixSpec) -> MatrixSpec:
    """``trained:<run>`` references become their runs' specs here, on the machine that runs
    the driver (the cluster, for a submitted job), before the cells are keyed and recorded:
    cell keys, run.json and the results then hold the run's own weights, preprocessing,
    paradigm and training set. A run that cannot be read stays a reference, and the pre-flight
    check fails its cells with the reason."""
    from raybench.errors import RaybenchError
    from raybench.models import resolve_model

    def resolved(model: ModelSpec) -> ModelSpec:
        try:
            return resolve_model(model)
        except RaybenchError:  # reported per model by _resolve_preprocess
            return model

    return dataclasses.replace(matrix, models=tuple(resolved(m) for m in matrix.models))


def _resolve_preprocess(model: ModelSpec, local_files: bool) -> Preprocess | str:
    """The model's Preprocess, or the text of why it cannot be used (its cells fail): the
    problems `check_model` finds without building it, then its preprocessing."""
    from raybench.models import check_model, resolve_preprocess
    from raybench.pipeline.embed import load_error

    try:
        check_model(model, local_files)
    except Exception as exc:  # noqa: BLE001 - fails this model's cells only
        return load_error(model.name, error_text(exc))
    try:
        return resolve_preprocess(model)
    except Exception as exc:  # noqa: BLE001 - fails this model's cells only
        return f"model {model.name}: cannot resolve its preprocessing: {error_text(exc)}"


def _configure_ray_data(progress_bars: bool) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress_bars
    ctx.print_on_execution_start = progress_bars
    logging.getLogger("ray.data").setLevel(logging.INFO if progress_bars else logging.WARNING)
    if not progress_bars:  # its warning that bars are off: they are, on purpose (progress.py)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def _now(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), timezone.utc).isoformat(timespec="seconds")
