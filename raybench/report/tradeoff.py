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

from raybench.metrics import points as signed_points
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
    default), in the run's paradigm and model order: the models trained on that dataset, the
    models trained on nothing, and every member of a hybrid of that panel, wherever the member
    was trained (a fusion's or an interpolation's members are drawn beside it, at their own
    mAP on the panel's dataset and across the others)."""
    by_cell = {(c.model, c.dataset): c.value("mAP", block) for c in run.cells if c.value("mAP", block) is not None}
    models = [m for _, group in run.models_by_paradigm() for m in group]
    homes = {m: trained_on(run, m) for m in models}
    panels: dict[str, list[Point]] = {}
    for home in dict.fromkeys(h for h in homes.values() if h in run.datasets):
        shown = {m for m in models if homes[m] in (home, None)}
        shown |= {member for m in models if homes[m] == home and run.paradigm(m) == "hybrid"
                  for member in members(run, m)}
        for model in (m for m in models if m in shown):
            if (model, home) not in by_cell:
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


def figure_name(block: str | None = None) -> str:
    """The trade-off figure of a block: tradeoff_map.png (main), tradeoff_map_<variant>.png."""
    return FIGURE if block in (None, "main") else f"tradeoff_map_{block}.png"


def write_tradeoff_plot(run: Run, out: Path, notes: list[str], block: str | None = None) -> list[Path]:
    """The trade-off figure of the main block, or of the eval variant ``block``."""
    panels = points(run, block)
    if not panels:
        if block is None:
            notes.append("No model with a known training set was scored in domain and across: no trade-off figure.")
        return []
    from raybench.report.plots import DPI, _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(9.6 * len(panels), 5.6), dpi=DPI, layout="constrained",
                             squeeze=False)
    ends = {}  # curve -> its (first, second) member
    for model in run.models:
        found = interpolation(run, model)
        if found:
            ends[found[0]] = tuple(members(run, model)[:2])
    for ax, (home, panel) in zip(axes[0], panels.items()):
        _panel(ax, home, panel, ends)
    scored = "" if block in (None, "main") else f" (eval variant {block})"
    fig.suptitle(f"In-domain vs cross-domain mAP{scored}, {run.name}\nlines: interpolations from the first member "
                 "(alpha 0) to the second (1); circled: the Pareto front; numbers: the key beside each panel",
                 fontsize=10)
    path = out / figure_name(block)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return [path]


def _panel(ax, home: str, panel: list[Point], ends: dict[str, tuple[str, str]]) -> None:
    """``ends``: curve -> its (first, second) member, drawn as the line's alpha 0 and 1 ends
    where they are points of the panel. Every point is numbered (a curve once, at its first
    alpha; its alphas in small type), the numbers placed so that no label overlaps another or
    leaves the axes (``place_labels``), and the key beside the panel names each number."""
    curves: dict[str, list[Point]] = {}
    for p in panel:
        if p.curve:
            curves.setdefault(p.curve, []).append(p)
    by_model = {p.model: p for p in panel}
    labels: list[tuple[str, tuple[float, float], str, float]] = []
    for name, curve in curves.items():
        curve.sort(key=lambda p: p.alpha)
        first, second = (by_model.get(m) for m in ends.get(name, ("", "")))
        line = [first] * (first is not None and curve[0].alpha > 0) + curve + [second] * (
            second is not None and curve[-1].alpha < 1)
        ax.plot([100 * p.in_domain for p in line], [100 * p.cross for p in line], "-", color=PARADIGM_COLOURS["hybrid"],
                linewidth=1.2, alpha=0.7, zorder=1)
        labels += [(f"{p.alpha:g}", (100 * p.in_domain, 100 * p.cross), PARADIGM_COLOURS["hybrid"], 6.5) for p in curve]
    key = []
    for p in panel:
        ax.scatter(100 * p.in_domain, 100 * p.cross, s=36, color=PARADIGM_COLOURS.get(p.paradigm, "#333333"),
                   marker="D" if p.paradigm == "hybrid" else "o", zorder=3, label=p.paradigm)
        if not p.curve or p is curves[p.curve][0]:  # a curve is named once, at its first alpha
            key.append(p.curve or p.model)
            labels.append((str(len(key)), (100 * p.in_domain, 100 * p.cross), "#111111", 8.0))
    front = pareto(panel)
    ax.step([100 * p.in_domain for p in front], [100 * p.cross for p in front], "--", where="post",
            color="#333333", linewidth=0.9, zorder=2)
    ax.scatter([100 * p.in_domain for p in front], [100 * p.cross for p in front], s=130, facecolors="none",
               edgecolors="#333333", linewidths=1.0, zorder=4, label="Pareto front")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    ax.set_xlabel(f"in-domain mAP (%), on {home}")
    ax.set_ylabel("mean cross-domain mAP (%)")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    _pad_limits(ax)
    place_labels(ax, labels)
    ax.text(1.02, 1.0, "\n".join(f"{i} {name}" for i, name in enumerate(key, 1)), transform=ax.transAxes,
            fontsize=7, va="top", ha="left", family="monospace")


def _pad_limits(ax, share: float = 0.08) -> None:
    """Room inside the axes around the outermost points, for their labels."""
    for get, set_ in ((ax.get_xlim, ax.set_xlim), (ax.get_ylim, ax.set_ylim)):
        low, high = get()
        pad = (high - low) * share
        set_(low - pad, high + pad)


#: Label offsets tried in turn, in points from the labelled point: close first, all around.
_OFFSETS = [(dx * r, dy * r) for r in (5, 10, 16, 24)
            for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))]


def place_labels(ax, labels: Sequence[tuple[str, tuple[float, float], str, float]]) -> list:
    """Place each (text, xy, colour, size) label at the first offset (``_OFFSETS``) where it
    overlaps no label placed before it and stays inside the axes; the annotations, in order.
    Measured by the figure's renderer, so what is checked is what is drawn."""
    fig = ax.figure
    fig.canvas.draw()  # the layout engine settles the axes before anything is measured
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    placed, boxes = [], []
    for text, xy, colour, size in labels:
        for i, (dx, dy) in enumerate(_OFFSETS):
            note = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", fontsize=size, color=colour,
                               ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top", zorder=5)
            box = note.get_window_extent(renderer)
            fits = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            if (fits and not any(box.overlaps(b) for b in boxes)) or i == len(_OFFSETS) - 1:
                placed.append(note)
                boxes.append(box)
                break
            note.remove()
    return placed


def hybrids_table(run: Run, block: str | None = None) -> str:
    """Markdown: each fusion and interpolation beside its members, in domain and across (mAP of
    the block ``block``), and whether it is on its panel's Pareto front."""
    panels = points(run, block)
    lines = []
    for home, panel in panels.items():
        by_model = {p.model: p for p in panel}
        front = {p.model for p in pareto(panel)}
        for p in panel:
            if p.paradigm != "hybrid":
                continue
            shown = ", ".join(f"{m} {_pair(by_model.get(m))}" for m in members(run, p.model))
            lines.append([p.model, _made_of(run, p.model), home, tables.pct(p.in_domain), tables.pct(p.cross),
                          str(p.cross_datasets), "yes" if p.model in front else "", shown or "-"])
    header = ["hybrid", "made of", "in-domain dataset", "in-domain mAP", "cross-domain mean mAP", "cross datasets",
              "Pareto front", "members (in / cross mAP)"]
    return tables.md_table(header, lines) if lines else ""


def against_members(run: Run, block: str | None = None, n_boot: int = 1000, seed: int = 0) -> str:
    """Markdown: each hybrid against each member, paired over the same queries (report/paired.py):
    the difference of their mAP on the hybrid's in-domain dataset and of their mean mAP across
    the other datasets both were scored on, with 95% intervals and p-values; "*" where the
    interval excludes zero."""
    from raybench.report.paired import NotPaired, paired

    lines = []
    for home, panel in points(run, block).items():
        for hybrid in (p.model for p in panel if p.paradigm == "hybrid"):
            for member in members(run, hybrid):
                inside = _pairs(run, hybrid, member, [home], block)
                across = _pairs(run, hybrid, member, [d for d in run.datasets if d != home], block)
                cells = []
                for pairs in (inside, across):
                    try:
                        cells.append(paired_text(paired(pairs, "mAP", n_boot, seed)) if pairs else "-")
                    except NotPaired as exc:
                        cells.append(f"not paired: {exc}")
                lines.append([hybrid, member, home, *cells, str(len(across))])
    header = ["hybrid", "member", "in-domain dataset", "in-domain mAP, hybrid - member", "cross-domain mean mAP, "
              "hybrid - member", "cross datasets"]
    return tables.md_table(header, lines) if lines else ""


def _pairs(run: Run, a: str, b: str, datasets, block):
    """(A's block, B's block) on each of ``datasets`` where both are scored."""
    found = [(run.cell(a, d), run.cell(b, d)) for d in datasets]
    return [(x.scores(block), y.scores(block)) for x, y in found
            if x is not None and y is not None and x.scores(block) is not None and y.scores(block) is not None]


def paired_text(p) -> str:
    """"+1.2 [0.4, 2.0] p 0.004*": a paired difference in points, its interval and p-value,
    starred where the interval excludes zero."""
    return (f"{signed_points(p.delta)} [{tables.pct(p.ci_low)}, {tables.pct(p.ci_high)}] p {p.p_value:.3f}"
            + ("*" if p.significant else ""))


def members(run: Run, model: str) -> list[str]:
    """A fusion's or an interpolation's members, as run.json recorded them ([] otherwise)."""
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
