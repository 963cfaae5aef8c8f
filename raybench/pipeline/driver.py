"""Plan and run a matrix: resume, one embedding stream per model, failure isolation per cell.

``run_matrix`` starts (or joins) Ray, loads each dataset's manifest once, plans the cells
(plan.py), replays finished ones, re-scores those whose embeddings are current, and for each
model with pending cells runs one Ray Data stream over all of them (embed.py). The embedding
actors write the embeddings into the run directory as they compute them (parts.py), and send
the driver small rows; each cell is committed to the store the moment its last row arrives and
handed to the run's Reducer actor, which scores it while the next cells embed. Where the actors
cannot see the run directory, the driver writes the same parts as the batches arrive (chosen
once per run, runtime.embedding_writes; run.json's ``pool.writes``). Any failure (a missing
dataset, a model that does not load, an unreadable image, a scoring error) fails the cells it
touches, with the error in their result JSON; the run goes on, and ``RunSummary.ok`` is False.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from raybench.console import count, notice
from raybench.errors import RaybenchError
from raybench.models import without_text
from raybench.pipeline import reducer as reducers
from raybench.pipeline.collect import CellBuffer, file_batch, finish, finish_text, video_record
from raybench.pipeline.embed import PixelCaches, Source, embedding_stream
from raybench.pipeline.failure import DATASET, DISTRACTOR, LOAD, MEMBER, STREAM, Failure, error_text, load_failure
from raybench.pipeline.oversize import oversize_warnings
from raybench.pipeline.parts import WRITES_DRIVER, Parts, write_parts
from raybench.pipeline.plan import (
    DISTRACTORS, DONE, EMBED, EVALUATE, FAILED, FUSE, Cell, DatasetImages, attach_distractors, group_by_model, load_images,
    plan_cells,
)
from raybench.pipeline.preflight import preflight
from raybench.pipeline.progress import Progress, RunMetrics
from raybench.pipeline.tracker import Tracker
from raybench.rundir import provenance
from raybench.rundir.records import CellMarker, RunRecord
from raybench.rundir.store import RunStore
from raybench.specs import MatrixSpec, ModelSpec, Preprocess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How to run a matrix (none of these change the results, but ``limit`` and
    ``random_weights``, which make a rehearsal: its cells say so and are never kept by a run
    without them)."""

    force: bool = False  # recompute finished cells (and rebuild pixel caches)
    actors: int | None = None  # embedding actors (default: one per GPU, else one)
    batch_size: int | None = None  # overrides every model's batch size
    threads: int | None = None  # torch threads per CPU actor
    pixel_cache: bool = True
    shared_out: bool = False  # --out is a mount that every node of the cluster shares
    num_cpus: int | None = None  # CPUs of a local Ray (default: all)
    dashboard: bool = False  # start the dashboard with a local Ray
    ray_progress: bool = False  # Ray Data's own progress bars
    limit: int | None = None  # only the first N query identities of each dataset (datasets/limit.py)
    random_weights: bool = False  # every model at its architecture with seeded random weights


@dataclass
class RunSummary:
    out: str
    rows: list[dict]  # one summary row per cell (reducer.summary_row)
    seconds: float
    record: RunRecord | None = None  # what run.json holds

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "ok"]

    @property
    def ok(self) -> bool:
        return not self.failed


class RunInterrupted(RaybenchError):
    """SIGINT or SIGTERM during a run: finished cells are kept, run.json says "interrupted"."""

    exit_code = 130


def run_matrix(matrix: MatrixSpec, out: str, options: RunOptions = RunOptions(),
               echo: Callable[[str], None] = notice) -> RunSummary:
    """Run every cell of ``matrix`` into the run directory ``out`` (a path or a URI);
    ``echo`` receives the progress lines.

    Before Ray starts: ``out`` must be writable, and, when this call starts a local Ray (one
    node: the driver sees the actors' files), every model's local weights and every dataset's
    root must exist (``preflight``): a typo costs a second, not a Ray start. The run holds the
    directory's lock (rundir/lock.py) until it ends; SIGINT or SIGTERM ends it as
    ``RunInterrupted``, with finished cells kept and run.json saying so.
    """
    import ray

    from raybench import ray_runtime
    from raybench.rundir.lock import RunLock

    store = RunStore.open(out)
    store.check_writable()
    if not (ray.is_initialized() or ray_runtime.joins_cluster()):
        preflight(matrix, check_weights=not options.random_weights)
    run_id = uuid.uuid4().hex[:8]
    lock, dead = RunLock.acquire(store, run_id, echo)
    try:
        started = ray_runtime.connect(matrix.name, options.num_cpus, options.dashboard)
        try:
            with _sigterm_interrupts():  # after ray.init, which installs its own SIGTERM handler
                return Run(matrix, store, options, echo, run_id).execute()
        finally:
            if started:
                ray.shutdown()
    finally:
        lock.release()


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (a scheduler's stop, `kill`) interrupts the run as Ctrl-C does."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class PreparedModel:
    """A model of the run, checked and with its preprocessing resolved once on the driver (the
    actors get this Preprocess), or the failure that fails all its cells before any actor starts."""

    spec: ModelSpec
    preprocess: Preprocess | None = None
    failure: Failure | None = None


class Run:
    """One execution of a matrix into a store (state lives here, not in module globals)."""

    def __init__(self, matrix: MatrixSpec, store: RunStore, options: RunOptions, echo, run_id: str):
        self.matrix, self.store, self.options, self.echo, self.run_id = matrix, store, options, echo, run_id
        self.failed: dict[tuple[str, str], Failure] = {}  # (dataset, model) -> why, for fusions
        # distractor cells of this run, by (set, model): committed ones, and the dataset cells
        # that wait for one to be committed before they are scored
        self.committed: set[tuple[str, str]] = set()
        self.failed_sets: dict[tuple[str, str], Failure] = {}
        self.waiting: dict[tuple[str, str], list[tuple[Cell, reducers.CellJob]]] = {}

    # -- the whole run --------------------------------------------------------------------

    def execute(self) -> RunSummary:
        from raybench.pipeline import runtime

        start = time.time()
        cluster = runtime.Cluster.current()
        runtime.check_out(self.store, cluster, self.options.shared_out)
        writes, why = runtime.embedding_writes(self.store, cluster, self.options.shared_out)
        self.pool = dataclasses.replace(runtime.plan_pool(cluster, self.options.actors, self.options.threads),
                                        writes=writes)
        if why:
            self.echo(f"embeddings are written by the driver: {why}")
        if not self.pool.gpus:
            self.echo(f"no GPU in this Ray cluster: embedding on CPU "
                      f"({self.pool.actors} actor(s), {self.pool.threads} torch thread(s) each)")
        _configure_ray_data(self.options.ray_progress)

        datasets = self._load_datasets()
        self.matrix = _resolve_models(self.matrix)
        cells = plan_cells(self.matrix, datasets, self.store, self.options.force, self.options.random_weights)
        groups = group_by_model(cells)
        for line in oversize_warnings({c.data.name: c.data for _, group in groups for c in group}.values()):
            self.echo(line)
        record = self._start_record(cells, cluster, start)
        self.store.write_record(record)
        self.echo(_plan_line(cells))

        self.reducer = reducers.start(self.store, self.matrix.eval, self.matrix.name, self.run_id,
                                      label_selector=runtime.reducer_selector(),
                                      variants=self.matrix.eval_variants)
        images = sum(len(c.data.paths) for _, group in groups for c in group)
        scored = [c for c in cells if c.kind != DISTRACTORS]
        video = [c.data for _, group in groups for c in group if c.data.tracklets]
        self.progress = Progress(len(scored), 0, images, RunMetrics(self.matrix.name), self.echo,
                                 tracklets_total=sum(len(d.tracklets) for d in video),
                                 frames_total=sum(len(d.paths) for d in video))
        self.tracker = Tracker(self.reducer, self.progress)
        try:
            return self._execute(cells, groups, cluster, record, start)
        except KeyboardInterrupt:
            finished = len(self.tracker.rows)
            self.store.write_record(dataclasses.replace(
                record, status="interrupted", finished=provenance.now(), seconds=round(time.time() - start, 3)))
            raise RunInterrupted(
                f"interrupted: {finished} of {count(len(scored), 'cell')} finished and kept in {self.store.uri}; "
                "rerun the same command to resume") from None

    def _execute(self, cells, groups, cluster, record: RunRecord, start: float) -> RunSummary:
        self._replay(cells)
        # On one node the driver sees the actors' files: a missing weights file fails its
        # cells here, before any actor starts.
        random_weights = self.options.random_weights  # random weights read no weights file
        prepared = {model.name: _prepare(model, local_files=cluster.nodes == 1 and not random_weights,
                                         random_weights=random_weights) for model, _ in groups}
        self.caches = PixelCaches(self.store, self.options.pixel_cache, self.options.force, self.echo,
                                  _sharing(groups, prepared))
        fusions = [cell for cell in cells if cell.state == FUSE and cell.kind != DISTRACTORS]  # sets: with their datasets
        embedding = {model.name for model, _ in groups}  # models whose cells are not all settled yet
        fusions = self._fuse(fusions, embedding)  # those whose members were committed before this run
        for model, group in groups:
            self._embed_model(prepared[model.name], group)
            embedding.discard(model.name)
            fusions = self._fuse(fusions, embedding)  # as soon as their members are: an interrupt keeps them
        for cell in (c for _, group in groups for c in group):  # the parts of cells that failed
            self.store.drop_uncommitted(cell.data.name, cell.model.name)
        for (name, model), waiting in list(self.waiting.items()):  # a set whose stream never reached it
            self._fail_set(name, model, Failure(STREAM, f"the distractor set {name} was not embedded"))
        rows = self.tracker.wait_all()
        self.progress.close()

        import ray

        ray.kill(self.reducer)
        record = provenance.finish_record(record, rows, start)
        self.store.write_record(record)
        return RunSummary(self.store.uri, rows, time.time() - start, record)

    def _load_datasets(self) -> dict[str, DatasetImages]:
        from raybench.datasets import has_captions, load_captions, load_manifest

        return attach_distractors({spec.name: load_images(spec, load_manifest, load_captions if has_captions(spec) else None,
                                                          self.options.limit)
                                   for spec in self.matrix.datasets}, self.options.limit)

    def _replay(self, cells: list[Cell]) -> None:
        """Cells that need no embedding: finished, failed before starting, or only to re-score
        (a distractor set's cell is never scored: its datasets' cells are)."""
        for cell in cells:
            if cell.kind == DISTRACTORS:
                continue
            if cell.state == DONE:
                self.tracker.keep(cell.previous)
            elif cell.state == FAILED:
                self._fail(cell, Failure(DATASET, cell.reason))
            elif cell.state == EVALUATE:
                self._score(cell, self._job(cell, marker=cell.previous))

    def _fuse(self, cells: list[Cell], embedding: set[str]) -> list[Cell]:
        """Send the fusion cells whose members are all settled (no member's model among
        ``embedding``, the models still to stream) to the reducer, which fuses the members'
        stored embeddings (pipeline/fusion.py); a member that failed fails the fusion with its
        reason (a member whose distractor set failed has failed on the dataset too). Returns
        the fusion cells still waiting for a member."""
        waiting = []
        for cell in cells:
            if any(m.model.name in embedding for m in cell.members):
                waiting.append(cell)
                continue
            failed = [(m.model.name, self.failed[(cell.data.name, m.model.name)]) for m in cell.members
                      if (cell.data.name, m.model.name) in self.failed]
            if failed:
                member, failure = failed[0]
                self._fail(cell, Failure(MEMBER, f"member {member} failed: {failure.message}"))
                continue
            extra = cell.distractors
            fuse_set = {} if extra is None or extra.state != FUSE else {
                "distractor_members": tuple((m.model.name, m.key) for m in extra.members),
                "distractor_hash": extra.data.hash}
            self.tracker.evaluate(self._job(cell, members=tuple((m.model.name, m.key) for m in cell.members),
                                            weights=tuple(cell.model.options["weights"]), **fuse_set))
        return waiting

    # -- one model ------------------------------------------------------------------------

    def _embed_model(self, model: PreparedModel, cells: list[Cell]) -> None:
        self.progress.start_model(model.spec.name)
        if model.failure:
            for cell in cells:
                self._fail(cell, model.failure)
            return
        spec = dataclasses.replace(model.spec, batch_size=self.options.batch_size or model.spec.batch_size)
        if not any(cell.text for cell in cells):
            # no caption cell: built without its text tower, so image cells hold and load exactly
            # what they did before captions existed (the cells keep their own spec and keys)
            spec = without_text(spec)
        pending = list(cells)
        while pending:
            pending = self._stream_cells(spec, model.preprocess, pending)

    def _stream_cells(self, spec: ModelSpec, preprocess: Preprocess, cells: list[Cell]) -> list[Cell]:
        """Stream ``cells``' images through one actor pool; return the cells left to embed.

        A batch that fails to embed fails the first cell it touches, and the stream restarts for
        the other unfinished cells, so one cell the model cannot embed never loses another (at
        most one restart per cell). A model that fails to load, or a stream that breaks as a
        whole, fails every unfinished cell at once: nothing is gained by loading it again.
        """
        sources = [Source(i, c.data.paths, () if c.kind == DISTRACTORS else self.caches.files(c.data, preprocess),
                          tuple(c.data.captions.column("caption").to_pylist()) if c.text else ())
                   for i, c in enumerate(cells)]
        parts = Parts.open(self.store, cells)
        on_driver = self.pool.writes == WRITES_DRIVER
        stream = embedding_stream(spec, preprocess, sources, self.store, self.pool,
                                  name=f"{self.matrix.name}:{spec.name}", pretrained=not self.options.random_weights,
                                  parts=None if on_driver else parts)
        buffers = [CellBuffer(c) for c in cells]
        finished: set[int] = set()
        self._last_finish, self._stream_size, self._attempt = time.perf_counter(), len(cells), parts.attempt
        try:
            for batch in stream.iter_batches(batch_size=None, batch_format="numpy"):
                if on_driver:
                    batch = write_parts(batch, parts)
                bad = self._file_batch(batch, buffers, finished, preprocess)
                self.tracker.poll()
                if bad is None:
                    continue
                failure = buffers[bad].failure  # stop streaming; go on without the failed cell
                unfinished = [i for i in range(len(cells)) if i not in finished]
                failing = unfinished if failure.model_wide else [bad]
                for i in failing:
                    self._fail(cells[i], failure)
                return [cells[i] for i in unfinished if i not in failing]
        except Exception as exc:  # noqa: BLE001 - a broken stream fails this model's cells only
            log.exception("embedding stream of %s failed", spec.name)
            failure = Failure(STREAM, f"embedding {spec.name} failed: {error_text(exc)}")
            for i, cell in enumerate(cells):
                if i not in finished:
                    self._fail(cell, failure)
            return []
        for i, buffer in enumerate(buffers):
            if i not in finished:
                self._finish_cell(buffer, preprocess)
        return []

    def _file_batch(self, batch, buffers, finished, preprocess) -> int | None:
        """File a batch into its cells; finish cells that became complete; return the index of
        a cell the model failed to embed, if any."""
        for i, new in file_batch(batch, buffers).items():
            self.progress.add_images(new, buffers[i].take_tracklets())
            if buffers[i].failure:
                return i
            if buffers[i].complete and i not in finished:
                finished.add(i)
                self._finish_cell(buffers[i], preprocess)
        return None

    def _finish_cell(self, buffer: CellBuffer, preprocess: Preprocess) -> None:
        cell = buffer.cell
        # A stream's cells finish one after another: each is charged the time since the
        # previous one finished (the first also its actors' start and model load).
        now = time.perf_counter()
        embed_seconds, self._last_finish = now - self._last_finish, now
        rows, skipped, failure = finish(buffer, self.matrix.on_bad_image)
        marker = CellMarker(
            key=cell.key, model=cell.model.name, dataset=cell.data.name, spec_hash=cell.model.spec_hash(),
            manifest_hash=cell.data.hash, dim=buffer.dim, rows=0 if rows is None else rows.num_rows,
            num_params=buffer.params, embed_seconds=round(embed_seconds, 3),
            skipped_images=tuple(skipped), device=self.pool.device, written=provenance.now(),
            stream_cells=self._stream_size,
            text_rows=cell.data.captions.num_rows if cell.text else None, video=video_record(buffer),
        )
        if failure:
            self._fail(cell, failure, self._job(cell, marker=marker))
            return
        spec = {"model": dataclasses.asdict(cell.model), "preprocess": dataclasses.asdict(preprocess),
                "dataset": dataclasses.asdict(cell.data.spec)}
        try:
            marker = self.store.commit_embeddings(marker, self._attempt, rows, buffer.parts, spec,
                                                  captions=finish_text(buffer), text_parts=buffer.text_parts)
        except Exception as exc:  # noqa: BLE001 - this cell fails, with why; the stream goes on
            log.exception("committing %s failed", cell.label)
            self._fail(cell, Failure(STREAM, f"cannot commit the embeddings of {cell.label}: {error_text(exc)}"),
                       self._job(cell, marker=marker))
            return
        if cell.kind == DISTRACTORS:
            self.committed.add((cell.data.name, cell.model.name))
            for waiting, job in self.waiting.pop((cell.data.name, cell.model.name), []):
                self.tracker.evaluate(job)
            return
        self._score(cell, self._job(cell, marker=marker))

    def _score(self, cell: Cell, job: reducers.CellJob) -> None:
        """Send a cell to the reducer, once its distractor set (if any) is committed."""
        extra = cell.distractors
        key = None if extra is None else (extra.data.name, extra.model.name)
        if extra is None or extra.state == DONE or key in self.committed:
            self.tracker.evaluate(job)
        elif key in self.failed_sets:
            self._fail(cell, self.failed_sets[key])
        else:
            self.waiting.setdefault(key, []).append((cell, job))

    def _fail(self, cell: Cell, failure: Failure, job=None) -> None:
        self.failed[(cell.data.name, cell.model.name)] = failure
        if cell.kind == DISTRACTORS:  # no result of its own: its datasets' cells fail
            self._fail_set(cell.data.name, cell.model.name, failure)
            return
        self.tracker.fail(job or self._job(cell), failure)

    def _fail_set(self, name: str, model: str, failure: Failure) -> None:
        """A distractor set's cell failed: so do the cells that wait for it, and those to come."""
        why = Failure(DISTRACTOR, f"its distractor set {name} failed: {failure.message}")
        self.failed_sets[(name, model)] = why
        for cell, job in self.waiting.pop((name, model), []):
            self._fail(cell, why, job)

    def _job(self, cell: Cell, **extra) -> reducers.CellJob:
        """The cell's reducer job, hashed with the matrix's eval block and variants."""
        return reducers.job_for(cell, self.matrix.eval, self.matrix.eval_variants, **extra)

    # -- run.json -------------------------------------------------------------------------

    def _start_record(self, cells: list[Cell], cluster, start: float) -> RunRecord:
        from raybench import ray_runtime

        try:
            previous = self.store.read_record()
        except RaybenchError:  # a damaged run.json is replaced, not trusted
            previous = None
        if previous is not None and previous.status == "running":
            # this run holds the lock, so the run that wrote "running" is no longer alive
            self.echo(f"the previous run of {self.store.uri} ({previous.run_id}, started {previous.started}) "
                      "was killed; resuming from what it finished")
        return provenance.start_record(
            run=self.matrix.name, run_id=self.run_id, out=self.store.uri, started=start,
            matrix=_matrix_record(self.matrix), previous=previous,
            plan=[{"dataset": c.data.name, "model": c.model.name, "state": c.state, "reason": c.reason}
                  for c in cells],
            options=dataclasses.asdict(self.options), cluster=dataclasses.asdict(cluster),
            pool=dataclasses.asdict(self.pool), ray_logs=ray_runtime.session_log_dir(),
        )


def _plan_line(cells: list[Cell]) -> str:
    """What the run will do, said before it works: "12 cells: 4 kept, 8 to run (3 to re-score)"
    (and the distractor sets to embed: "; 1 distractor set to embed for 2 models")."""
    sets = [c for c in cells if c.kind == DISTRACTORS and c.state == EMBED]
    cells = [c for c in cells if c.kind != DISTRACTORS]
    states = [c.state for c in cells]
    kept, rescore, failed = states.count(DONE), states.count(EVALUATE), states.count(FAILED)
    to_run, fuse = len(cells) - kept - failed, states.count(FUSE)
    line = f"{count(len(cells), 'cell')}: {kept} kept, {to_run} to run ({rescore} to re-score"
    line += f", {fuse} to fuse)" if fuse else ")"
    line += f", {failed} failed before starting" if failed else ""
    if sets:
        line += (f"; {count(len({c.data.name for c in sets}), 'distractor set')} to embed "
                 f"({sum(len(c.data.paths) for c in sets):,} images)")
    return line


def _matrix_record(matrix: MatrixSpec) -> dict:
    """The resolved matrix as run.json records it, each model with its in-domain dataset
    (``trained_on``), so the report needs nothing but the run directory."""
    from raybench.catalog import catalog_dataset_names, hybrid_training_set, trained_on

    record = dataclasses.asdict(matrix)
    names, catalog = [d.name for d in matrix.datasets], catalog_dataset_names()  # read once
    for model, item in zip(matrix.models, record["models"]):
        item["trained_on"] = trained_on(model, names, catalog)
    by_name = {item["name"]: item for item in record["models"]}
    for item in record["fusions"]:  # a fusion is in domain where its (first) supervised member is
        item["paradigm"] = "hybrid"
        item["trained_on"] = hybrid_training_set(by_name[m]["trained_on"] for m in item["of"])
    return record


def _resolve_models(matrix: MatrixSpec) -> MatrixSpec:
    """``trained:<run>`` references become their runs' specs here, on the machine that runs
    the driver (the cluster, for a submitted job), before the cells are keyed and recorded:
    cell keys, run.json and the results then hold the run's own weights, preprocessing,
    paradigm and training set. A run that cannot be read stays a reference, and the pre-flight
    check fails its cells with the reason."""
    from raybench.models import resolve_model

    def resolved(model: ModelSpec) -> ModelSpec:
        try:
            return resolve_model(model)
        except RaybenchError:  # reported per model by _prepare
            return model

    return dataclasses.replace(matrix, models=tuple(resolved(m) for m in matrix.models))


def _prepare(model: ModelSpec, local_files: bool, random_weights: bool = False) -> PreparedModel:
    """Check the model without building it and resolve its preprocessing, once for the run
    (with ``random_weights``, the catalog's stated preprocessing where the weights' own would
    come from a hub config)."""
    from raybench.models import check_model, resolve_preprocess

    try:
        check_model(model, local_files)
    except Exception as exc:  # noqa: BLE001 - fails this model's cells only
        return PreparedModel(model, failure=load_failure(model.name, error_text(exc)))
    try:
        return PreparedModel(model, preprocess=resolve_preprocess(model, random_weights))
    except Exception as exc:  # noqa: BLE001 - fails this model's cells only
        return PreparedModel(model, failure=Failure(
            LOAD, f"model {model.name}: cannot resolve its preprocessing: {error_text(exc)}"))


def _sharing(groups, prepared: dict[str, PreparedModel]) -> dict[tuple[str, str], int]:
    """(dataset, pixel_key) -> how many models of this run embed that dataset at that geometry."""
    counts: dict[tuple[str, str], int] = {}
    for model, group in groups:
        pre = prepared[model.name].preprocess
        for cell in group if pre else ():
            key = (cell.data.name, pre.pixel_key)
            counts[key] = counts.get(key, 0) + 1
    return counts


def _configure_ray_data(progress_bars: bool) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress_bars
    ctx.print_on_execution_start = progress_bars
    logging.getLogger("ray.data").setLevel(logging.INFO if progress_bars else logging.WARNING)
    if not progress_bars:  # its warning that bars are off: they are, on purpose (progress.py)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
