"""Read a run directory for the report, through its RunStore (a local path or any URI that
`raybench run --out` takes): every cell's result and run.json for order and model specs.

A report must never hide a cell. A result file that is not JSON or breaks its contract
(raybench.rundir.records) becomes an `invalid` cell naming the file and the field; a cell that
run.json planned but that has no result yet becomes a `missing` cell. Nothing here recomputes
metrics, and nothing is read from configs/: what the report needs is recorded in the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from raybench.errors import RaybenchError
from raybench.rundir.records import RunFileError, RunRecord
from raybench.rundir.store import RunStore
from raybench.specs import PARADIGMS



@dataclass(frozen=True)
class Cell:
    """One model x dataset result: a validated CellResult as its JSON mapping, or, for an
    invalid or missing one, a mapping with status and error only."""

    model: str
    dataset: str
    result: Mapping[str, Any] = field(hash=False)
    path: str | None = None  # the result file, inside the run's filesystem

    @property
    def status(self) -> str:
        return str(self.result.get("status") or "failed")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def error(self) -> str | None:
        return self.result.get("error")

    @property
    def paradigm(self) -> str:
        return str(self.result.get("paradigm") or "unknown")


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
                found[(model, dataset)] = Cell(model, dataset, {
                    "model": model, "dataset": dataset, "status": "missing",
                    "error": "no result file: the run has not finished this cell",
                })
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
        return Cell(model, dataset, {"model": model, "dataset": dataset, "status": "invalid",
                                     "error": f"invalid result file: {exc}"}, store.path(rel))
    return Cell(result.model, result.dataset, result.to_json(), store.path(rel))


def _ordered(planned: list[str], found: list[str]) -> list[str]:
    """The matrix's order first, then anything else found, sorted."""
    return [*planned, *sorted(set(found) - set(planned))]
