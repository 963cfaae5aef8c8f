"""In-domain vs cross-domain: which dataset a supervised model's weights were trained on.

A supervised ReID model is strongest on its own training set's test split (same cameras, same
season, same annotators); every other dataset is a domain shift. The study blurred the two (its
"MSMT17-trained" OSNet was the Market-1501 checkpoint), so the report keeps them apart.

The training set comes from, in order: `options.trained_on` of the model spec recorded in
run.json or in configs/models.yaml; else the name convention `<arch>-<dataset>`, where the
last dash-separated part of the name starts exactly one dataset's name (osnet-x1_0-market ->
market1501, clipreid-vit-b16-msmt17 -> msmt17, osnet-x0_25-duke -> dukemtmcreid), among the
run's datasets and the catalog's. Models of the other paradigms have no in-domain dataset.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from raybench.report import tables
from raybench.report.load import Run


def trained_on(run: Run, model: str) -> str | None:
    """The dataset a supervised model was trained on (in this run or not), or None."""
    if run.paradigm(model) != "supervised":
        return None
    named = (run.model_spec(model).get("options") or {}).get("trained_on")
    catalog_models, catalog_datasets = _catalogs()
    if not named and model in catalog_models:
        named = (catalog_models[model].options or {}).get("trained_on")
    if named:
        return str(named)
    token = model.rsplit("-", 1)[-1].lower()
    names = dict.fromkeys([*run.datasets, *catalog_datasets])
    matches = [d for d in names if len(token) >= 4 and d.lower().startswith(token)]
    return matches[0] if len(matches) == 1 else None


def _catalogs() -> tuple[Mapping[str, Any], Sequence[str]]:
    """The model and dataset catalogs, or empty ones when they cannot be read: the run's own
    record and the model's name still count."""
    from raybench.errors import RaybenchError
    from raybench.catalog import load_dataset_catalog, load_model_catalog

    try:
        return load_model_catalog(), list(load_dataset_catalog())
    except RaybenchError:
        return {}, []


def supervised_models(run: Run, rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """[(model, training set)] for the run's supervised models with a known training set and
    at least one scored cell."""
    ok = {r["model"] for r in rows if r["status"] == "ok"}
    pairs = [(m, trained_on(run, m)) for m in run.models if m in ok]
    return [(m, d) for m, d in pairs if d]


def domain_table(run: Run, rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: each supervised model's in-domain mAP, its mean cross-domain mAP and the change."""
    by_cell = {(r["model"], r["dataset"]): r for r in rows if r["status"] == "ok"}
    lines = []
    for model, home in supervised_models(run, rows):
        cross = [by_cell[(model, d)]["mAP"] for d in run.datasets if d != home and (model, d) in by_cell]
        mean = sum(cross) / len(cross) if cross else None
        inside = by_cell[(model, home)]["mAP"] if (model, home) in by_cell else None
        change = None if mean is None or inside is None else f"{100 * (mean - inside):+.1f}"
        lines.append([model, home, tables.pct(inside), tables.pct(mean), str(len(cross)), change or "-"])
    header = ["model", "trained on", "in-domain mAP", "cross-domain mean mAP", "cross datasets", "change (points)"]
    return tables.md_table(header, lines, align="r") if lines else ""
