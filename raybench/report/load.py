"""Read a run directory for the report, through its RunStore (a local path or any URI that
`raybench run --out` takes): every cell's result and run.json for order and model specs.

A report must never hide a cell. A result file that is not JSON or breaks its contract
(raybench.rundir.records) becomes an `invalid` cell naming the file and the field; a cell that
run.json planned but that has no result yet becomes a `missing` cell. Every other cell holds its
typed result (records.CellResult): the report reads its fields and blocks (raybench.metrics),
never a dict of the file, so a field that moves fails loudly instead of showing "-". Nothing
here recomputes metrics, and nothing is read from configs/: what the report needs is recorded in
the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from raybench.errors import RaybenchError
from raybench.metrics import Scores
from raybench.rundir.records import CellResult, RunFileError, RunRecord
from raybench.rundir.store import RunStore
from raybench.specs import PARADIGMS

if TYPE_CHECKING:  # pragma: no cover
    from raybench.rundir.records import BlockKind

#: Intervals of a cell, as the report computes them (report/bootstrap.py): block name ->
#: metric -> (low, high), fractions.
Intervals = Mapping[str, Mapping[str, tuple[float, float]]]


@dataclass(frozen=True)
class Cell:
    """One model x dataset cell of a run: its validated ``result``, or, for an invalid or
    missing one, None with the ``status`` and ``why`` that say so. ``intervals``: the bootstrap
    intervals of its blocks, once the report has computed them."""

    model: str
    dataset: str
    result: CellResult | None = field(default=None, hash=False)
    path: str | None = None  # the result file, inside the run's filesystem
    problem: str | None = None  # "invalid" or "missing" where there is no result
    why: str | None = None
    intervals: Intervals = field(default_factory=dict, hash=False)
    #: block name -> metric -> its paired difference to the main block (report/paired.py), for
    #: the blocks that score the main block's queries (records.BlockKind.paired)
    vs_main: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    @property
    def status(self) -> str:
        return self.result.status if self.result is not None else str(self.problem)

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok

    @property
    def error(self) -> str | None:
        return self.result.error if self.result is not None else self.why

    @property
    def paradigm(self) -> str:
        return (self.result.paradigm if self.result is not None else "") or "unknown"

    def scores(self, block: str | None = None) -> Scores | None:
        """The block ``block`` of an ok cell (None or "main": the main block), else None."""
        return self.result.block(block) if self.ok else None

    def value(self, metric: str, block: str | None = None) -> float | None:
        """A metric (raybench.metrics) of a block of an ok cell; None where there is none."""
        scores = self.scores(block)
        return None if scores is None else scores.value(metric)

    def interval(self, metric: str, block: str | None = None) -> tuple[float, float] | None:
        return self.intervals.get(block or "main", {}).get(metric)


@dataclass(frozen=True)
class Run:
    """A run directory's cells, with models and datasets in the matrix's order."""

    store: RunStore
    record: RunRecord | None
    cells: tuple[Cell, ...]
    models: tuple[str, ...]
    datasets: tuple[str, ...]

    label: str = ""  # the run directory as the user named it (a relative path stays relative)

    @property
    def uri(self) -> str:
        return self.store.uri

    @property
    def name(self) -> str:
        if self.record and self.record.matrix.get("name"):
            return str(self.record.matrix["name"])
        return self.store.root.rsplit("/", 1)[-1] or self.store.uri

    @property
    def description(self) -> str:
        return str(self.record.matrix.get("description") or "") if self.record else ""

    def cell(self, model: str, dataset: str) -> Cell | None:
        for cell in self.cells:
            if cell.model == model and cell.dataset == dataset:
                return cell
        return None

    def value(self, model: str, dataset: str, metric: str, block: str | None = None) -> float | None:
        """A metric of a cell's block; None where the cell is not ok or has no such block."""
        cell = self.cell(model, dataset)
        return None if cell is None else cell.value(metric, block)

    def block_names(self) -> list[tuple["BlockKind", str]]:
        """Every (kind, name) of the blocks the run's ok cells hold besides the main one, kind by
        kind (records.BLOCK_KINDS), names in the order the cells give them (the matrix's)."""
        from raybench.rundir.records import BLOCK_KINDS

        found = {(kind.key, name): kind for c in self.cells if c.ok for kind, name, _ in c.result.blocks()}
        return [(found[key], key[1]) for kind in BLOCK_KINDS for key in found if key[0] == kind.key]

    def paradigm(self, model: str) -> str:
        """From the cells' results first, else the model spec in run.json."""
        for cell in self.cells:
            if cell.model == model and cell.paradigm != "unknown":
                return cell.paradigm
        return str(self.model_spec(model).get("paradigm") or "unknown")

    def model_spec(self, model: str) -> Mapping[str, Any]:
        """The model's resolved spec as run.json recorded it ({} when absent)."""
        return self.record.model_specs().get(model, {}) if self.record else {}

    def models_by_paradigm(self) -> list[tuple[str, list[str]]]:
        """[(paradigm, [models])] in the study's paradigm order, models in matrix order."""
        groups: dict[str, list[str]] = {}
        for model in self.models:
            groups.setdefault(self.paradigm(model), []).append(model)
        rank = {p: i for i, p in enumerate(PARADIGMS)}  # the study's order
        return sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def load_run(run_dir: str | RunStore, notes: list[str] | None = None) -> Run:
    """All cells of a run directory (results/<dataset>/<model>.json) plus run.json.

    ``notes`` receives a line when run.json itself cannot be trusted (the cells still show).
    """
    store = run_dir if isinstance(run_dir, RunStore) else RunStore.open(run_dir)
    if not store.exists(""):
        raise RaybenchError(f"{store.uri}: no such run directory (make one with "
                            f"`raybench run --matrix NAME --out {store.uri}`)")
    try:
        record = store.read_record()
    except RunFileError as exc:
        record = None
        if notes is not None:
            notes.append(f"run.json is not usable ({exc}): the matrix's order and model specs are unknown.")
    found = {}
    for rel in store.result_files():
        cell = _read_cell(store, rel)
        found[(cell.model, cell.dataset)] = cell
    planned_models = list(record.model_specs()) if record else []
    planned_datasets = list(record.dataset_specs()) if record else []
    models = _ordered(planned_models, [m for m, _ in found])
    datasets = _ordered(planned_datasets, [d for _, d in found])
    if not found and not (planned_models and planned_datasets):
        raise RaybenchError(
            f"{store.uri}: no results/<dataset>/<model>.json found; is this a run directory "
            f"(`raybench run --matrix NAME --out {store.uri}`)?"
        )
    for model in planned_models:
        for dataset in planned_datasets:
            if (model, dataset) not in found:
                found[(model, dataset)] = Cell(model, dataset, problem="missing",
                                               why="no result file: the run has not finished this cell")
    cells = tuple(found[(m, d)] for m in models for d in datasets if (m, d) in found)
    label = store.uri if isinstance(run_dir, RunStore) else str(run_dir)
    return Run(store=store, record=record, cells=cells, models=tuple(models), datasets=tuple(datasets), label=label)


def _read_cell(store: RunStore, rel: str) -> Cell:
    """A cell from its result file; the file's place names the cell, whatever its content."""
    _, dataset, name = rel.split("/")
    model = name.removesuffix(".json")
    try:
        result = store.read_result(dataset, model)
    except RunFileError as exc:
        return Cell(model, dataset, path=store.path(rel), problem="invalid", why=f"invalid result file: {exc}")
    return Cell(result.model, result.dataset, result, store.path(rel))


def _ordered(planned: list[str], found: list[str]) -> list[str]:
    """The matrix's order first, then anything else found, sorted."""
    return [*planned, *sorted(set(found) - set(planned))]
