"""The study's open question as a figure: in-domain mAP against mean cross-domain mAP.

One panel per in-domain dataset D (a training set of the run's supervised or hybrid models):
every model trained on D, every fusion and interpolation that inherits D from its supervised
member, and every model trained on nothing (zero-shot, self-supervised, baselines) is a point
at (mAP on D, mean mAP over the run's other datasets). An interpolation's alphas
(``<name>@<alpha>``) are joined by a line in alpha order: the WiSE-FT curve. The Pareto front
(no other point is at least as good on both axes and better on one) is drawn as a step line,
and its points are named in the hybrids table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from raybench.report import tables
from raybench.report.domain import trained_on
from raybench.report.load import Run
from raybench.specs import INTERPOLATE

FIGURE = "tradeoff_map.png"
PARADIGM_COLOURS = {"supervised": "#e6550d", "self-supervised": "#31a354", "language-aligned": "#3182bd",
                    "hybrid": "#756bb1", "baseline": "#969696"}


@dataclass(frozen=True)
class Point:
    model: str
    paradigm: str
    in_domain: float  # mAP on the panel's dataset (a fraction)
    cross: float  # mean mAP over the model's scored cells of the other datasets
    cross_datasets: int
    curve: str | None = None  # an interpolation's name without "@alpha"
    alpha: float | None = None


def interpolation(run: Run, model: str) -> tuple[str, float] | None:
    """(curve name, alpha) of an interpolated model (loader ``interpolate``), else None."""
    spec = run.model_spec(model)
    alpha = (spec.get("options") or {}).get("alpha")
    if spec.get("loader") != INTERPOLATE or alpha is None:
        return None
    return model.rsplit("@", 1)[0], float(alpha)


def points(run: Run, block: str | None = None) -> dict[str, list[Point]]:
    """In-domain dataset -> its panel's points (mAP of the block ``block``, the main one by
    default), in the run's paradigm and model order."""
    by_cell = {(c.model, c.dataset): c.value("mAP", block) for c in run.cells if c.value("mAP", block) is not None}
    models = [m for _, group in run.models_by_paradigm() for m in group]
    homes = {m: trained_on(run, m) for m in models}
    panels: dict[str, list[Point]] = {}
    for home in dict.fromkeys(h for h in homes.values() if h in run.datasets):
        for model in models:
            if homes[model] not in (home, None) or (model, home) not in by_cell:
                continue
            cross = [by_cell[(model, d)] for d in run.datasets if d != home and (model, d) in by_cell]
            if not cross:
                continue
            curve, alpha = interpolation(run, model) or (None, None)
            panels.setdefault(home, []).append(Point(model, run.paradigm(model), by_cell[(model, home)],
                                                     sum(cross) / len(cross), len(cross), curve, alpha))
    return panels


def pareto(panel: Sequence[Point]) -> list[Point]:
    """The points no other point dominates (>= on both axes, > on one), by in-domain mAP."""
    def dominated(p: Point) -> bool:
        return any(q.in_domain >= p.in_domain and q.cross >= p.cross and (q.in_domain, q.cross) != (p.in_domain, p.cross)
                   for q in panel)

    return sorted((p for p in panel if not dominated(p)), key=lambda p: (p.in_domain, -p.cross))


def write_tradeoff_plot(run: Run, out: Path, notes: list[str]) -> list[Path]:
    panels = points(run)
    if not panels:
        notes.append("No model with a known training set was scored in domain and across: no trade-off figure.")
        return []
    from raybench.report.plots import DPI, _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(7.6 * len(panels), 5.6), dpi=DPI, layout="constrained",
                             squeeze=False)
    ends = {}  # curve -> its (first, second) member
    for model in run.models:
        found = interpolation(run, model)
        if found:
            ends[found[0]] = tuple(_members(run, model)[:2])
    for ax, (home, panel) in zip(axes[0], panels.items()):
        _panel(ax, home, panel, ends)
    fig.suptitle(f"In-domain vs cross-domain mAP, {run.name}\nlines: interpolations from the first member "
                 "(alpha 0) to the second (1); circled: the Pareto front", fontsize=10)
    path = out / FIGURE
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return [path]


def _panel(ax, home: str, panel: list[Point], ends: dict[str, tuple[str, str]]) -> None:
    """``ends``: curve -> its (first, second) member, drawn as the line's alpha 0 and 1 ends
    where they are points of the panel."""
    curves: dict[str, list[Point]] = {}
    for p in panel:
        if p.curve:
            curves.setdefault(p.curve, []).append(p)
    by_model = {p.model: p for p in panel}
    for name, curve in curves.items():
        curve.sort(key=lambda p: p.alpha)
        first, second = (by_model.get(m) for m in ends.get(name, ("", "")))
        line = [first] * (first is not None and curve[0].alpha > 0) + curve + [second] * (
            second is not None and curve[-1].alpha < 1)
        ax.plot([100 * p.in_domain for p in line], [100 * p.cross for p in line], "-", color=PARADIGM_COLOURS["hybrid"],
                linewidth=1.2, alpha=0.7, zorder=1)
        for p in curve:
            ax.annotate(f"{p.alpha:g}", (100 * p.in_domain, 100 * p.cross), fontsize=7, xytext=(3, -9),
                        textcoords="offset points", color=PARADIGM_COLOURS["hybrid"])
    for p in panel:
        ax.scatter(100 * p.in_domain, 100 * p.cross, s=36, color=PARADIGM_COLOURS.get(p.paradigm, "#333333"),
                   marker="D" if p.paradigm == "hybrid" else "o", zorder=3, label=p.paradigm)
        if not p.curve or p is curves[p.curve][0]:  # a curve is named once, at its first alpha
            ax.annotate(p.curve or p.model, (100 * p.in_domain, 100 * p.cross), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    front = pareto(panel)
    ax.step([100 * p.in_domain for p in front], [100 * p.cross for p in front], "--", where="post",
             color="#333333", linewidth=0.9, zorder=2)
    ax.scatter([100 * p.in_domain for p in front], [100 * p.cross for p in front], s=130, facecolors="none",
               edgecolors="#333333", linewidths=1.0, zorder=4, label="Pareto front")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    ax.set_xlabel(f"in-domain mAP (%), on {home}")
    ax.set_ylabel("mean cross-domain mAP (%)")
    ax.grid(True, linewidth=0.3, alpha=0.5)


def hybrids_table(run: Run) -> str:
    """Markdown: each fusion and interpolation beside its members, in domain and across, and
    whether it is on its panel's Pareto front."""
    panels = points(run)
    lines = []
    for home, panel in panels.items():
        by_model = {p.model: p for p in panel}
        front = {p.model for p in pareto(panel)}
        for p in panel:
            if p.paradigm != "hybrid":
                continue
            members = _members(run, p.model)
            shown = ", ".join(f"{m} {_pair(by_model.get(m))}" for m in members)
            lines.append([p.model, _made_of(run, p.model), home, tables.pct(p.in_domain), tables.pct(p.cross),
                          str(p.cross_datasets), "yes" if p.model in front else "", shown or "-"])
    header = ["hybrid", "made of", "in-domain dataset", "in-domain mAP", "cross-domain mean mAP", "cross datasets",
              "Pareto front", "members (in / cross mAP)"]
    return tables.md_table(header, lines) if lines else ""


def _members(run: Run, model: str) -> list[str]:
    spec = run.model_spec(model)
    if "of" in spec:
        return list(spec["of"])
    return [m.get("name", "?") for m in (spec.get("options") or {}).get("members") or []]


def _made_of(run: Run, model: str) -> str:
    spec = run.model_spec(model)
    if "of" in spec:
        return "fusion, weights " + ":".join(f"{w:g}" for w in spec.get("weights") or [])
    found = interpolation(run, model)
    return f"interpolation, alpha {found[1]:g}" if found else "-"


def _pair(point: Point | None) -> str:
    return f"({tables.pct(point.in_domain)} / {tables.pct(point.cross)})" if point else "(not scored here)"
