"""Read a run directory: one result JSON per cell, and run.json for order and model specs.

A report must never hide a cell. A result file that cannot be parsed becomes a failed cell
naming the file; a cell that run.json planned but that has no result yet becomes a
`missing` cell. Nothing here recomputes metrics: the result JSONs are the source of truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from raybench.errors import RaybenchError

#: The study's grouping, in the order its tables use.
PARADIGM_ORDER = ("supervised", "self-supervised", "language-aligned", "baseline")


@dataclass(frozen=True)
class Cell:
    """One model x dataset result, as the pipeline wrote it (see the result-JSON contract)."""

    model: str
    dataset: str
    result: Mapping[str, Any] = field(hash=False)
    path: Path | None = None

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

    root: Path
    info: Mapping[str, Any] = field(hash=False)
    cells: tuple[Cell, ...]
    models: tuple[str, ...]
    datasets: tuple[str, ...]

    @property
    def name(self) -> str:
        matrix = self.info.get("matrix")
        if isinstance(matrix, Mapping) and matrix.get("name"):
            return str(matrix["name"])
        return str(self.info.get("name") or self.root.name)

    @property
    def description(self) -> str:
        matrix = self.info.get("matrix")
        return str(matrix.get("description") or "") if isinstance(matrix, Mapping) else ""

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
        return _matrix_items(self.info, "models").get(model, {})

    def models_by_paradigm(self) -> list[tuple[str, list[str]]]:
        """[(paradigm, [models])] in the study's paradigm order, models in matrix order."""
        groups: dict[str, list[str]] = {}
        for model in self.models:
            groups.setdefault(self.paradigm(model), []).append(model)
        rank = {p: i for i, p in enumerate(PARADIGM_ORDER)}
        return sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def load_run(run_dir: str | Path) -> Run:
    """All cells of a run directory (results/<dataset>/<model>.json) plus run.json."""
    if "://" in str(run_dir):
        raise RaybenchError(f"{run_dir}: `raybench report` reads a local run directory; copy it first "
                            f"(for example `aws s3 sync` or `gsutil rsync`) and report the copy")
    root = Path(run_dir)
    results = root / "results"
    if not root.is_dir():
        raise RaybenchError(f"{root}: no such run directory (make one with `raybench run --matrix NAME --out {root}`)")
    info = _read_json(root / "run.json") if (root / "run.json").is_file() else {}
    if not isinstance(info, Mapping):
        info = {}
    found = {}
    for path in sorted(results.glob("*/*.json")) if results.is_dir() else []:
        if path.name.startswith(".") or path.parent.name.startswith("."):
            continue  # the store's temporary files (.tmp-*), mid-write
        cell = _read_cell(path)
        found[(cell.model, cell.dataset)] = cell
    planned_models = list(_matrix_items(info, "models"))
    planned_datasets = list(_matrix_items(info, "datasets"))
    models = _ordered(planned_models, [m for m, _ in found])
    datasets = _ordered(planned_datasets, [d for _, d in found])
    if not found and not (planned_models and planned_datasets):
        raise RaybenchError(
            f"{root}: no results/<dataset>/<model>.json found; is this a run directory "
            f"(`raybench run --matrix NAME --out {root}`)?"
        )
    for model in planned_models:
        for dataset in planned_datasets:
            if (model, dataset) not in found:
                found[(model, dataset)] = Cell(model, dataset, {
                    "model": model, "dataset": dataset, "status": "missing",
                    "error": "no result file: the run has not finished this cell",
                })
    cells = tuple(found[(m, d)] for m in models for d in datasets if (m, d) in found)
    return Run(root=root, info=info, cells=cells, models=tuple(models), datasets=tuple(datasets))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return exc


def _read_cell(path: Path) -> Cell:
    """A cell from its result file; the file's place names the cell when its content cannot."""
    model, dataset = path.stem, path.parent.name
    data = _read_json(path)
    if isinstance(data, Exception) or not isinstance(data, Mapping):
        reason = data if isinstance(data, Exception) else f"expected a JSON object, got {type(data).__name__}"
        data = {"status": "failed", "error": f"unreadable result file {path}: {reason}"}
    data = {"model": model, "dataset": dataset, **data}
    return Cell(str(data["model"]), str(data["dataset"]), data, path)


def _matrix_items(info: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    """Names (and spec mappings when recorded) of run.json's matrix models or datasets."""
    matrix = info.get("matrix", info)
    items = matrix.get(key) if isinstance(matrix, Mapping) else None
    out: dict[str, Mapping[str, Any]] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            out[item] = {}
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            out[item["name"]] = item
    return out


def _ordered(planned: list[str], found: list[str]) -> list[str]:
    """The matrix's order first, then anything else found, sorted."""
    return [*planned, *sorted(set(found) - set(planned))]
