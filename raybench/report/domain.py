"""In-domain vs cross-domain: which dataset a supervised model's weights were trained on (a
fusion's or an interpolation's: its supervised member's, as the run recorded it).

A supervised ReID model is strongest on its own training set's test split (same cameras, same
season, same annotators); every other dataset is a domain shift. The study blurred the two (its
"MSMT17-trained" OSNet was the Market-1501 checkpoint), so the report keeps them apart.

The training set is what the run recorded in run.json (each model's ``trained_on``, resolved
when the run started from the spec's `options.trained_on`, else the name convention
`<arch>-<dataset>`: osnet-x1_0-market -> market1501); the report reads nothing from configs/.
Models of the other paradigms have no in-domain dataset, except a weight interpolation, whose
run.json records its supervised member's (raybench.catalog.trained_on).
"""

from __future__ import annotations

from raybench.metrics import points
from raybench.report import tables
from raybench.report.load import Run


def trained_on(run: Run, model: str) -> str | None:
    """The dataset a model was trained on (in this run or not), or None: as the run recorded it
    (run.json's model spec, ``trained_on``, whatever the paradigm), else for a supervised model
    of a run recorded before that, from ``options.trained_on`` or the name convention among the
    run's own datasets."""
    spec = run.model_spec(model)
    if "trained_on" in spec:
        return spec["trained_on"]
    if run.paradigm(model) != "supervised":
        return None
    named = (spec.get("options") or {}).get("trained_on")
    if named:
        return str(named)
    from raybench.catalog import named_training_set  # the convention only: no catalog is read

    return named_training_set(model, list(run.datasets))


def supervised_models(run: Run) -> list[tuple[str, str]]:
    """[(model, training set)] for the run's supervised models (and interpolations of one) with
    a known training set and at least one scored cell."""
    ok = {c.model for c in run.cells if c.ok}
    pairs = [(m, trained_on(run, m)) for m in run.models if m in ok]
    return [(m, d) for m, d in pairs if d]


def domain_table(run: Run) -> str:
    """Markdown: each supervised model's in-domain mAP, its mean cross-domain mAP and the change."""
    lines = []
    for model, home in supervised_models(run):
        cross = [v for v in (run.value(model, d, "mAP") for d in run.datasets if d != home) if v is not None]
        mean = sum(cross) / len(cross) if cross else None
        inside = run.value(model, home, "mAP")
        change = None if mean is None or inside is None else points(mean - inside)
        lines.append([model, home, tables.pct(inside), tables.pct(mean), str(len(cross)), change or "-"])
    header = ["model", "trained on", "in-domain mAP", "cross-domain mean mAP", "cross datasets", "change (points)"]
    return tables.md_table(header, lines, align="r") if lines else ""
