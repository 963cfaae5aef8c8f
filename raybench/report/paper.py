"""Ours beside the study's published numbers, with the study's code defects that explain gaps.

The reference (configs/paper_reference.yaml) maps the study's model and dataset labels to
raybench names and lists which known defect each is exposed to. A difference larger than
`gap_points` is annotated with those defects, or flagged as unexplained when none applies:
a gap is a lead to follow, not a verdict.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from raybench.errors import SpecError
from raybench.report import tables
from raybench.report.load import Cell

TABLE_COLUMNS = {
    "model": "model", "paper_model": "study's label", "dataset": "dataset", "ours": "ours",
    "ours_ci": "ours 95% CI", "theirs": "study", "diff": "ours - study", "note": "note",
}


@dataclass(frozen=True)
class Reference:
    source: Mapping[str, Any]
    metric: str
    gap_points: float
    #: (raybench model, raybench dataset) -> (study model label, study dataset label, value %)
    values: Mapping[tuple[str, str], tuple[str, str, float]]
    #: raybench model or dataset name -> defect numbers it is exposed to
    exposure: Mapping[str, tuple[int, ...]]
    defects: Mapping[int, str]


def default_reference_path() -> Path:
    from raybench.paths import configs_dir

    return configs_dir() / "paper_reference.yaml"


def load_reference(path: str | Path | None = None) -> Reference:
    from raybench.specs import Fields, load_yaml

    path = Path(path) if path else default_reference_path()
    f = Fields(load_yaml(path), str(path))
    models = _labels(f.take("models", dict), f"{path}: models")
    datasets = _labels(f.take("datasets", dict), f"{path}: datasets")
    metric = f.take("metric", str, "mAP")
    table = f.take(metric, dict)
    values, exposure = {}, {}
    for label, (names, defects) in {**models, **datasets}.items():
        for name in names:
            exposure[name] = tuple(sorted({*exposure.get(name, ()), *defects}))
    for model_label, by_dataset in table.items():
        if model_label not in models or not isinstance(by_dataset, Mapping):
            raise SpecError(f"{path}: {metric}: {model_label!r} is not a study label listed under 'models'")
        for dataset_label, value in by_dataset.items():
            if dataset_label not in datasets or not isinstance(value, (int, float)):
                raise SpecError(f"{path}: {metric}: {model_label}/{dataset_label}: expected a number "
                                f"and a study label listed under 'datasets'")
            for model in models[model_label][0]:
                for dataset in datasets[dataset_label][0]:
                    values[(model, dataset)] = (model_label, dataset_label, float(value))
    ref = Reference(
        source=f.take("source", dict), metric=metric, gap_points=f.take("gap_points", float, 2.0),
        values=values, exposure=exposure,
        defects={int(k): str(v) for k, v in (f.take("defects", dict, {})).items()},
    )
    f.take("unit", str, "percent", choices=("percent",))
    f.done()
    return ref


def _labels(data: Mapping[str, Any], where: str) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """study label -> (raybench names, defect numbers); `raybench:` is one name or a list."""
    from raybench.specs import Fields

    out = {}
    for label, fields in data.items():
        g = Fields(fields, f"{where}: {label}")
        names = g.take("raybench", (list, str))
        names = (names,) if isinstance(names, str) else tuple(map(str, names))
        out[str(label)] = (names, tuple(int(d) for d in g.take("defects", list, [])))
        g.done()
    return out


def compare(cells: Sequence[Cell], ref: Reference) -> list[dict[str, Any]]:
    """One line per cell of the run that the study also reports; values in percent."""
    out = []
    for cell in cells:
        key = (cell.model, cell.dataset)
        if key not in ref.values:
            continue
        model_label, _, theirs = ref.values[key]
        value = cell.value("mAP")
        ours = None if value is None else 100 * value
        bounds = cell.interval("mAP")
        ci = None if bounds is None else f"[{tables.pct(bounds[0], 2)}, {tables.pct(bounds[1], 2)}]"
        diff = None if ours is None else round(ours - theirs, 2)
        out.append({
            "model": cell.model, "paper_model": model_label, "dataset": cell.dataset,
            "ours": None if ours is None else round(ours, 2), "ours_ci": ci, "theirs": theirs, "diff": diff,
            "note": _note(cell, diff, ref), "defects": list(_defects(ref, *key)),
        })
    return out


def _defects(ref: Reference, model: str, dataset: str) -> tuple[int, ...]:
    return tuple(sorted({*ref.exposure.get(model, ()), *ref.exposure.get(dataset, ())}))


def _note(cell: Cell, diff: float | None, ref: Reference) -> str:
    if diff is None:
        return f"ours {cell.status}"
    if abs(diff) <= ref.gap_points:
        return f"agrees within {ref.gap_points:g} points"
    defects = _defects(ref, cell.model, cell.dataset)
    if not defects:
        return "gap not explained by a known defect of the study's code"
    texts = [f"{d}: {ref.defects.get(d, '(not described)').rstrip('.')}" for d in defects]
    return ("study's code defect " if len(texts) == 1 else "study's code defects ") + "; ".join(texts) + "."


def write_comparison(cells: Sequence[Cell], out: Path, reference: Path | None,
                     notes: list[str]) -> tuple[list[dict[str, Any]], list[Path]]:
    """paper.md and paper.csv when the run shares cells with the reference."""
    path = Path(reference) if reference else default_reference_path()
    if not path.is_file():
        notes.append(f"No paper reference at {path}: no comparison with the study.")
        return [], []
    ref = load_reference(path)
    lines = compare(cells, ref)
    if not lines:
        notes.append("No cell of this run is among the study's published numbers: no paper comparison.")
        return [], []
    (out / "paper.md").write_text(markdown(lines, ref))
    with (out / "paper.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*TABLE_COLUMNS, "defects"])
        writer.writeheader()
        for line in lines:
            writer.writerow({**line, "defects": " ".join(map(str, line["defects"]))})
    return lines, [out / "paper.md", out / "paper.csv"]


def markdown(lines: Sequence[Mapping[str, Any]], ref: Reference) -> str:
    src = ref.source
    grade = src.get("grade", "unknown")
    header = [
        f"# Ours vs the study ({ref.metric}, %)",
        f"Study: *{src.get('title', '?')}* (arXiv {src.get('arxiv', '?')}); code: {src.get('code', '?')}.",
        f"Source of the study's numbers: **{grade}**"
        + (f" ({src['transcribed_from']})" if src.get("transcribed_from") else "")
        + (". Treat them as leads, not as checked values." if grade != "primary" else "."),
        f"Differences above {ref.gap_points:g} points name the study's code defects that the model "
        "or dataset is exposed to (numbers as in the project's PROTOCOLS.md).",
    ]
    return "\n\n".join([*header, table_md(lines)]) + "\n"


def table_md(lines: Sequence[Mapping[str, Any]]) -> str:
    return tables.md_table(
        list(TABLE_COLUMNS.values()),
        [[_fmt(line[k], signed=k == "diff") for k in TABLE_COLUMNS] for line in lines],
        align="r",
    )


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.2f}" if signed else f"{value:.2f}"
    return str(value)
