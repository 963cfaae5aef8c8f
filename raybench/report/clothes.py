"""Clothes-changing results: the clothes table and the "clothes gap" figure.

The study's open question 3 asks whether models are robust to clothing changes. A
clothes-changing dataset is scored under its settings (raybench.eval.clothes): ``standard``
(same person, another camera), ``cc`` (and another outfit) and ``sc`` (and the same outfit).
A model that matches people keeps its mAP from standard to cc; one that matches outfits loses
it. The table shows mAP / Rank-1 of each setting per model, rows grouped by paradigm, one table
per dataset; the figure draws each model's reference mAP (standard, or sc where a dataset has
no standard setting: PRCC's camera-B queries) against its cc mAP, one panel per dataset.

Both read the cells' ``settings`` blocks (records.BLOCK_KINDS) and nothing else: a run without
a clothes-changing dataset writes neither.
"""

from __future__ import annotations

from pathlib import Path

from raybench.metrics import points
from raybench.report import tables
from raybench.report.load import Run

SETTINGS = ("standard", "cc", "sc")
FIGURE = "clothes_gap.png"


def clothes_datasets(run: Run) -> list[str]:
    """The run's datasets with a ``cc`` setting in some ok cell, in matrix order."""
    found = {c.dataset for c in run.cells if c.ok and c.result.settings and "cc" in c.result.settings}
    return [d for d in run.datasets if d in found]


def reference_setting(run: Run, dataset: str) -> str:
    """What cc is compared with on ``dataset``: standard, else sc (PRCC has no standard setting)."""
    names = {n for c in run.cells if c.dataset == dataset and c.ok for n in (c.result.settings or {})}
    return "standard" if "standard" in names else "sc"


def clothes_tables(run: Run) -> str:
    """Markdown: per clothes-changing dataset, mAP / Rank-1 (%) of standard, cc and sc per model
    (rows grouped by paradigm) and the gap in mAP points from the reference setting to cc."""
    parts = []
    for dataset in clothes_datasets(run):
        ref = reference_setting(run, dataset)
        lines = []
        for paradigm, models in run.models_by_paradigm():
            rows = [_row(run, model, dataset, ref) for model in models]
            rows = [r for r in rows if r]
            if rows:
                lines += [[f"**{paradigm}**"] + [""] * len(SETTINGS) + [""], *rows]
        header = ["model", *(f"{s} mAP / R1" for s in SETTINGS), f"gap {ref} -> cc (mAP points)"]
        parts += [f"### {dataset}", tables.md_table(header, lines, align="r")]
    return "\n\n".join(parts)


def _row(run: Run, model: str, dataset: str, ref: str) -> list[str] | None:
    cell = run.cell(model, dataset)
    if cell is None or not cell.ok:
        return None
    figures = [tables.figures(["mAP", "R1"], s)(cell) if cell.scores(s) else "-" for s in SETTINGS]
    reference, cc = cell.value("mAP", ref), cell.value("mAP", "cc")
    return [model, *figures, points(None if reference is None or cc is None else cc - reference)]


def write_gap_plot(run: Run, out: Path) -> list[Path]:
    """clothes_gap.png: per clothes-changing dataset, each model's reference-setting mAP and its
    cc mAP joined by a line, models grouped by paradigm (their colour). Nothing for a run
    without such a dataset."""
    datasets = clothes_datasets(run)
    if not datasets:
        return []
    from raybench.report.plots import DPI, _pyplot
    from raybench.report.tradeoff import PARADIGM_COLOURS

    models = [(p, m) for p, group in run.models_by_paradigm() for m in group]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(6.0, 2.2 + 3.6 * len(datasets)), 1.5 + 0.36 * len(models)),
                             dpi=DPI, layout="constrained", squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        ref = reference_setting(run, dataset)
        for y, (paradigm, model) in enumerate(models):
            cell = run.cell(model, dataset)
            left, right = (cell.value("mAP", ref), cell.value("mAP", "cc")) if cell is not None else (None, None)
            if left is None or right is None:
                continue
            colour = PARADIGM_COLOURS.get(paradigm, "#333333")
            ax.plot([100 * left, 100 * right], [y, y], "-", color=colour, linewidth=1.5, alpha=0.6)
            ax.scatter(100 * left, y, s=34, facecolors="white", edgecolors=colour, linewidths=1.5, zorder=3)
            ax.scatter(100 * right, y, s=34, color=colour, zorder=3)
        ax.set_title(f"{dataset}: {ref} -> cc", fontsize=9)
        ax.set_xlim(0, 100)
        ax.set_xlabel("mAP (%)")
        ax.grid(True, axis="x", linewidth=0.3, alpha=0.5)
    axes[0][0].set_yticks(range(len(models)), [m for _, m in models], fontsize=8)
    for tick, (paradigm, _) in zip(axes[0][0].get_yticklabels(), models):
        tick.set_color(PARADIGM_COLOURS.get(paradigm, "#333333"))
    axes[0][0].set_ylim(len(models) - 0.5, -0.5)  # first model on top
    fig.suptitle(f"Clothes gap, {run.name}\nmAP without (open) and with (filled) a change of clothes; "
                 "colour: paradigm", fontsize=10)
    path = out / FIGURE
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return [path]
