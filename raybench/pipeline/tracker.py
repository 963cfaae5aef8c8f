"""The reducer calls in flight, seen from the driver: each cell's scoring (or its recorded
failure) is one call; results are shown as they come back and their summary rows kept here.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from raybench.pipeline import reducer as reducers
from raybench.pipeline.failure import SCORING, Failure
from raybench.pipeline.progress import Progress


class Tracker:
    """The reducer calls in flight; results are shown as they come back, and their summary
    rows kept here (the driver's, so a reducer that restarts loses none of them).

    When the reducer process dies, Ray restarts it and every call it held fails. Scoring a
    committed cell is idempotent, so each such cell is scored once more; a cell whose second
    try dies too (most likely the one that kills the reducer) is recorded as failed
    ("scoring crashed"), and a rerun scores it again from its stored embeddings.
    """

    def __init__(self, reducer, progress: Progress):
        self.reducer, self.progress = reducer, progress
        self.pending: dict = {}  # ObjectRef -> Call
        self.rows: dict[tuple[str, str], dict] = {}

    def evaluate(self, job) -> None:
        self._submit(_Call(job))

    def fail(self, job, failure: Failure) -> None:
        self._submit(_Call(job, failure))

    def keep(self, result) -> None:
        """A cell finished by an earlier run: in the table as kept, not scored again, and
        counted as done in the progress."""
        self.rows[(result.dataset, result.model)] = {**reducers.summary_row(result), "this_run": "kept"}
        self.progress.cell_kept()

    def _submit(self, call: "_Call") -> None:
        self.pending[call.send(self.reducer)] = call
        self.poll()

    def poll(self, timeout: float = 0) -> None:
        import ray

        if not self.pending:
            return
        ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=timeout)
        for ref in ready:
            call = self.pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                self._await_reducer()
                again = call.retry(exc)  # queued, not submitted: submit polls, and this loop holds ready refs
                self.pending[again.send(self.reducer)] = again
                continue
            row = {**reducers.summary_row(result), "this_run": "scored" if result.ok else "failed"}
            self.rows[(row["dataset"], row["model"])] = row
            self.progress.cell_finished(result)

    def _await_reducer(self, limit: float = 120.0) -> None:
        """Until the reducer answers again (Ray restarts it in a few seconds), so that a call
        sent again is not refused while it restarts: a refusal then would count as a crash."""
        import ray

        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                ray.get(self.reducer.ready.remote(), timeout=limit)
                return
            except ray.exceptions.RayError:
                time.sleep(0.5)

    def wait_all(self) -> list[dict]:
        """Until every cell is scored; the summary rows, sorted by dataset and model."""
        while self.pending:
            self.poll(timeout=1.0)
        return [self.rows[key] for key in sorted(self.rows)]


@dataclass(frozen=True)
class _Call:
    """One reducer call: score a committed cell, or record its failure (``failure`` set)."""

    job: reducers.CellJob
    failure: Failure | None = None
    tries: int = 1

    def send(self, reducer):
        if self.failure:
            return reducer.fail.remote(self.job, self.failure)
        return reducer.evaluate.remote(self.job)

    def retry(self, exc: Exception) -> "_Call":
        """The same call once more; after a second crash, the cell's failure."""
        if self.tries < 2:
            return dataclasses.replace(self, tries=self.tries + 1)
        return _Call(self.job, Failure(SCORING, f"scoring crashed: {type(exc).__name__}"), tries=self.tries + 1)
