"""The Reducer: one named Ray actor per run that scores cells as their embeddings land.

The driver sends "cell ready" (``evaluate``) as soon as a cell's embeddings are committed, and
goes on embedding; the reducer reads the cell back from the store (so it can live on any node
that sees the run directory), applies the dataset's protocol with raybench.eval, writes
results/<dataset>/<model>.json (raybench.rundir.records.CellResult), and returns it to the
driver, which keeps the run's table. It is the only writer of result files, so they never race;
it holds no state that a restart would lose.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from raybench.pipeline.failure import SCORING, Failure, error_text
from raybench.rundir.records import CellResult, protocol_block
from raybench.specs import DatasetSpec, EvalSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellJob:
    """What the reducer needs to score and describe one cell."""

    model: str
    dataset: DatasetSpec
    paradigm: str
    spec_hash: str
    cell_key: str
    manifest_hash: str
    eval_hash: str
    num_params: int | None = None
    embed_seconds: float = 0.0
    skipped_images: tuple[str, ...] = ()
    device: str = ""
    limit: int | None = None  # --limit N: the first N query identities only
    random_weights: bool = False  # --random-weights


def result_record(job: CellJob, spec: EvalSpec, metrics: dict | None, failure: Failure | None,
                  eval_seconds: float = 0.0) -> CellResult:
    """The cell's result: ``metrics`` are raybench.eval.protocol.score's, None when it failed."""
    return CellResult(
        model=job.model, dataset=job.dataset.name, status="failed" if failure else "ok",
        error=failure.message if failure else None, error_kind=failure.kind if failure else None,
        protocol=protocol_block(job.dataset.protocol, spec),
        **_metrics(metrics or {}),
        seconds=round(job.embed_seconds + eval_seconds, 3), embed_seconds=round(job.embed_seconds, 3),
        eval_seconds=round(eval_seconds, 3), paradigm=job.paradigm, spec_hash=job.spec_hash,
        num_params=job.num_params, skipped_images=tuple(job.skipped_images), device=job.device,
        cell_key=job.cell_key, manifest_hash=job.manifest_hash, eval_hash=job.eval_hash,
        limit=job.limit, random_weights=job.random_weights,
    )


def _metrics(metrics: dict) -> dict:
    out = dict(metrics)
    for key in ("cmc", "trials"):
        if key in out:
            out[key] = tuple(out[key])
    return out


def evaluate_cell(store, job: CellJob, spec: EvalSpec, seed: int = 0) -> CellResult:
    """Read a committed cell, score it with the dataset's protocol, write its result."""
    from raybench.errors import RaybenchError

    start = time.perf_counter()
    metrics, failure = None, None
    try:
        from raybench.eval.protocol import score

        table = store.read_embeddings(job.dataset.name, job.model)
        metrics = score(table, job.dataset.protocol, spec, seed=seed)
    except RaybenchError as exc:
        failure = Failure(SCORING, str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in one cell's scoring must not stop the run
        log.exception("scoring %s x %s failed", job.dataset.name, job.model)
        failure = Failure(SCORING, f"evaluation failed: {error_text(exc)}")
    result = result_record(job, spec, metrics, failure, time.perf_counter() - start)
    store.write_result(result)
    return result


def summary_row(result: CellResult) -> dict:
    """One line of the live table: the headline numbers of a result."""
    cmc = result.cmc
    return {
        "dataset": result.dataset,
        "model": result.model,
        "status": result.status,
        "mAP": result.mAP,
        "R1": cmc[0] if len(cmc) > 0 else None,
        "R5": cmc[4] if len(cmc) > 4 else None,
        "mINP": result.mINP,
        "queries": result.num_valid_query,
        "seconds": result.seconds,
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

    def __init__(self, store, spec: EvalSpec, run: str):
        self.store, self.spec, self.run = store, spec, run
        self._metrics = None

    def _record(self, result: CellResult) -> CellResult:
        """Counted on the dashboard's metrics as it is scored."""
        from raybench.pipeline.progress import RunMetrics

        if self._metrics is None:
            self._metrics = RunMetrics(self.run)
        self._metrics.cell(result.model, result.dataset, result.ok)
        return result

    def evaluate(self, job: CellJob) -> CellResult:
        return self._record(evaluate_cell(self.store, job, self.spec))

    def fail(self, job: CellJob, failure: Failure) -> CellResult:
        result = result_record(job, self.spec, None, failure)
        self.store.write_result(result)
        return self._record(result)


def start(store, spec: EvalSpec, run: str, run_id: str):
    """The run's reducer actor, named after the run (visible as such on the dashboard).

    It takes no CPU slot (scoring is short and must not starve the decode tasks on a small
    machine), restarts if its process dies, and does not retry the call that killed it.
    """
    import ray

    actor = ray.remote(Reducer).options(
        name=f"raybench-reducer:{run}:{run_id}", num_cpus=0, max_restarts=-1, max_task_retries=0
    )
    return actor.remote(store, spec, run)


def job_for(cell, spec: EvalSpec, **extra) -> CellJob:
    """The CellJob of a planned cell (see plan.Cell)."""
    from raybench.pipeline.plan import eval_hash

    return CellJob(
        model=cell.model.name,
        dataset=cell.data.spec,
        paradigm=cell.model.paradigm,
        spec_hash=cell.model.spec_hash(),
        cell_key=cell.key,
        manifest_hash=cell.data.hash,
        eval_hash=eval_hash(cell.data.spec, spec),
        limit=cell.data.limit,
        random_weights=cell.random_weights,
        **extra,
    )
