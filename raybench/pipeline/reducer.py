"""The Reducer: one named Ray actor per run that scores cells as their embeddings land.

The driver sends "cell ready" (``evaluate``) as soon as a cell's embeddings are committed, and
goes on embedding; the reducer reads the cell back from the store (so it can live on any node
that sees the run directory), applies the dataset's protocol with raybench.eval, writes
results/<dataset>/<model>.json (raybench.rundir.records.CellResult), and returns it to the
driver, which keeps the run's table. It is the only writer of result files, so they never race;
it holds no state that a restart would lose.

A cell of a dataset with captions is scored on both sides. Text-to-image: the query captions'
embeddings against every evaluated (non-train) image once, cosine similarity (both sides
L2-normalised, as open_clip's retrieval does), with raybench.eval.text.evaluate_t2i; the
result's ``text`` block. A model without a text tower gets ``text_status`` "no text tower"
and no text block; the cell is still scored image-to-image and is not a failure.
Image-to-image on the same images: the dataset's query/gallery split where it has one
(synthetic); a text-to-person dataset has no image queries and no camera split, so raybench
scores it leave-one-out (raybench.eval.protocol.LEAVE_ONE_OUT, recorded as ``i2i_rule``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

from raybench.metrics import METRICS
from raybench.pipeline.failure import FUSION, SCORING, Failure, error_text
from raybench.rundir.records import MARKER_FIELDS, CellMarker, CellResult, block_column
from raybench.specs import DatasetSpec, EvalSpec, EvalVariant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellJob:
    """What the reducer needs to score and describe one cell: the cell as planned, and
    ``marker``, its embeddings as the driver committed them (or, for a cell that failed while
    embedding, as far as they got); None for a cell that never embedded, and for a fusion not
    fused yet. The result takes what was known at embedding time from the marker
    (records.MARKER_FIELDS)."""

    model: str
    dataset: DatasetSpec
    paradigm: str
    spec_hash: str
    cell_key: str
    manifest_hash: str
    eval_hash: str
    text_status: str | None = None  # plan.Cell.text_status: None, "ok" (score the captions) or why not
    limit: int | None = None  # --limit N: the first N query identities only
    random_weights: bool = False  # --random-weights
    marker: CellMarker | None = None
    #: a fusion cell to fuse before scoring (pipeline/fusion.py): its members' (model, cell key)
    #: as planned, and their weights; empty for any other cell (or a fusion already committed)
    members: tuple[tuple[str, str], ...] = ()
    weights: tuple[float, ...] = ()
    #: the cell of the dataset's distractor set that joins its gallery: (its name in
    #: embeddings/, the key its marker must hold); None without distractors
    distractors: tuple[str, str] | None = None
    #: a fusion's set cell to fuse before scoring (plan._plan_fused_set): its members' (model,
    #: cell key) of the set, and the set's manifest hash; empty when the set is committed
    distractor_members: tuple[tuple[str, str], ...] = ()
    distractor_hash: str = ""


def result_record(job: CellJob, spec: EvalSpec, scored=None, failure: Failure | None = None,
                  eval_seconds: float = 0.0, text=None, placement=None) -> CellResult:
    """The cell's result: ``scored`` is raybench.eval.protocol.score's (None when the cell
    failed), ``text`` its text-to-image block on a caption dataset (see the module docstring),
    ``placement`` where its gallery was (shards.Placement: its shards and distractors)."""
    from raybench.eval.protocol import protocol_block

    embedded = {name: getattr(job.marker, name) for name in MARKER_FIELDS} if job.marker else {}
    embed_seconds = embedded.pop("embed_seconds", 0.0)
    main = {} if scored is None else {
        "mAP": scored.main.mAP, "mINP": scored.main.mINP, "cmc": scored.main.cmc,
        "num_query": scored.main.num_query, "num_valid_query": scored.main.num_valid_query,
        "num_gallery": scored.main.num_gallery, "trials": scored.main.trials, "spread": scored.main.spread,
        "per_query": scored.main.per_query, "variants": dict(scored.variants) or None, "i2i_rule": scored.i2i_rule,
        "settings": dict(scored.settings) or None,
    }
    return CellResult(
        model=job.model, dataset=job.dataset.name, status="failed" if failure else "ok",
        error=failure.message if failure else None, error_kind=failure.kind if failure else None,
        protocol={**protocol_block(job.dataset.protocol, spec), **((scored and scored.pooling) or {})}, **main, text=text,
        text_status=None if failure else job.text_status,
        seconds=round(embed_seconds + eval_seconds, 3), embed_seconds=round(embed_seconds, 3),
        eval_seconds=round(eval_seconds, 3), paradigm=job.paradigm,
        **{"spec_hash": job.spec_hash, "manifest_hash": job.manifest_hash, **embedded},
        cell_key=job.cell_key, eval_hash=job.eval_hash, limit=job.limit, random_weights=job.random_weights,
        **({} if placement is None else {"shards": placement.shards, "distractors": placement.distractors}),
    )


def evaluate_cell(store, job: CellJob, spec: EvalSpec, seed: int = 0,
                  variants: tuple[EvalVariant, ...] = ()) -> CellResult:
    """Read a committed cell, score it with the dataset's protocol (and each eval variant, from
    the same read), write its result."""
    from raybench.errors import RaybenchError

    start = time.perf_counter()
    scored, text, failure, placement = None, None, None, None
    try:
        from raybench.pipeline.shards import score_cell

        scored, placement = score_cell(store, job, spec, seed=seed, variants=variants)
        if job.text_status == "ok":
            text = text_scores(store.read_embeddings(job.dataset.name, job.model),
                               store.read_text_embeddings(job.dataset.name, job.model))
    except RaybenchError as exc:
        scored, failure = None, Failure(SCORING, str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in one cell's scoring must not stop the run
        log.exception("scoring %s x %s failed", job.dataset.name, job.model)
        scored, failure = None, Failure(SCORING, f"evaluation failed: {error_text(exc)}")
    result = result_record(job, spec, scored, failure, time.perf_counter() - start, text, placement)
    store.write_result(result)
    return result


def text_scores(images, captions):
    """The text-to-image block: ``captions`` (store.text_schema) against the unique evaluated
    images of ``images`` (an embedding table), cosine similarity."""
    from raybench.eval.text import evaluate_t2i, unit_rows
    from raybench.rundir.store import embedding_matrix, text_gallery

    images = text_gallery(images)
    res = evaluate_t2i(unit_rows(embedding_matrix(captions, "text embeddings")) @ unit_rows(embedding_matrix(images)).T,
                       captions.column("pid").to_numpy(), images.column("pid").to_numpy())
    return res.scores()


def summary_row(result: CellResult) -> dict:
    """One line of the live table: the main block's live metrics (raybench.metrics), each
    other block's (records.BLOCK_KINDS: ``"mAP (rerank)"``), counts, time and notes."""
    main = result.main
    return {
        "dataset": result.dataset,
        "model": result.model,
        "status": result.status,
        **{m.name: main.value(m.name) if main else None for m in METRICS if m.live},
        "queries": result.num_valid_query,
        "text": result.text_status,
        **{block_column(m, name): scores.value(m) for kind, name, scores in result.blocks() for m in kind.live},
        "seconds": result.seconds,
        "stream_cells": result.stream_cells,
        "skipped_images": list(result.skipped_images),
        "error": result.error,
        "note": result_note(result),
    }


def result_note(result: CellResult) -> str:
    """"limited (N ids)", "random weights", both, or "": what makes a cell a rehearsal."""
    notes = ([f"limited ({result.limit} ids)"] if result.limit is not None else []) + \
        (["random weights"] if result.random_weights else [])
    return ", ".join(notes)


class Reducer:
    """The actor body (see the module docstring); ``ray.remote`` is applied by ``start``."""

    def __init__(self, store, spec: EvalSpec, run: str, variants: tuple[EvalVariant, ...] = ()):
        self.store, self.spec, self.run, self.variants = store, spec, run, variants
        self._metrics = None
        #: the fused distractor set cells this actor committed, (set, fusion, key): a set that
        #: several datasets name is fused once a run (a restarted actor fuses it again)
        self._fused_sets: set[tuple[str, str, str]] = set()

    def _record(self, result: CellResult) -> CellResult:
        """Counted on the dashboard's metrics as it is scored."""
        from raybench.pipeline.progress import RunMetrics

        if self._metrics is None:
            self._metrics = RunMetrics(self.run)
        self._metrics.cell(result.model, result.dataset, result.ok)
        return result

    def ready(self) -> bool:
        """Answers once the actor is up (after a restart, too)."""
        return True

    def evaluate(self, job: CellJob) -> CellResult:
        """Score a committed cell; a fusion job (``job.members``) is fused and committed first."""
        if job.members:
            try:
                job = fused_job(self.store, job, self._fused_sets)
            except Exception as exc:  # noqa: BLE001 - one fusion's failure is its cell's
                return self.fail(job, Failure(FUSION, error_text(exc)))
        return self._record(evaluate_cell(self.store, job, self.spec, variants=self.variants))

    def fail(self, job: CellJob, failure: Failure) -> CellResult:
        result = result_record(job, self.spec, failure=failure)
        self.store.write_result(result)
        return self._record(result)


def fused_job(store, job: CellJob, fused_sets: set[tuple[str, str, str]]) -> CellJob:
    """Fuse and commit a fusion cell (pipeline/fusion.py), and first its distractor set's cell
    when the job asks for it and this reducer has not fused it yet (``fused_sets``, updated);
    the job to score it, holding the fused cell's marker."""
    from raybench.pipeline.fusion import fuse_cell

    if job.distractor_members:
        name, key = job.distractors
        if (name, job.model, key) not in fused_sets:
            fuse_cell(store, job.model, name, job.distractor_members, job.weights, key, job.spec_hash, job.distractor_hash)
            fused_sets.add((name, job.model, key))
    marker = fuse_cell(store, job.model, job.dataset.name, job.members, job.weights, job.cell_key, job.spec_hash,
                       job.manifest_hash)
    return dataclasses.replace(job, marker=marker)


def start(store, spec: EvalSpec, run: str, run_id: str, label_selector: dict[str, str] | None = None,
          variants: tuple[EvalVariant, ...] = ()):
    """The run's reducer actor, named after the run (visible as such on the dashboard).

    It takes no CPU slot (scoring is short and must not starve the decode tasks on a small
    machine), restarts if its process dies (or its node is lost: on another node), and does not
    retry the call that killed it. ``label_selector``: the nodes it may live on
    (runtime.reducer_selector).
    """
    import ray

    placement = {"label_selector": label_selector} if label_selector else {}
    actor = ray.remote(Reducer).options(
        name=f"raybench-reducer:{run}:{run_id}", num_cpus=0, max_restarts=-1, max_task_retries=0,
        **placement,
    )
    return actor.remote(store, spec, run, variants)


def job_for(cell, spec: EvalSpec, variants: tuple[EvalVariant, ...] = (), **extra) -> CellJob:
    """The CellJob of a planned cell (see plan.Cell) in a matrix with eval block ``spec`` and
    eval variants ``variants``."""
    from raybench.pipeline.plan import eval_hash

    distractors = cell.distractors
    return CellJob(
        model=cell.model.name,
        dataset=cell.data.spec,
        paradigm=cell.model.paradigm,
        spec_hash=cell.model.spec_hash(),
        cell_key=cell.key,
        manifest_hash=cell.data.hash,
        eval_hash=eval_hash(cell.data.spec, spec, variants, distractors.key if distractors else None),
        distractors=(distractors.data.name, distractors.key) if distractors else None,
        text_status=cell.text_status,
        limit=cell.data.limit,
        random_weights=cell.random_weights,
        **extra,
    )
