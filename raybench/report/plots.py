"""Figures: heatmaps of mAP and Rank-1, and in-domain vs cross-domain mAP of supervised models.

matplotlib with the Agg backend (no display needed, the same pixels everywhere). The colour
scale is fixed at 0..100 % so that two heatmaps, or two runs, compare by eye. Figures have a
fixed size (no tight bounding box), so a test can predict their pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raybench.metrics import percent
from raybench.report import tables
from raybench.report.domain import supervised_models
from raybench.report.load import Run

DPI = 120
HEATMAPS = {"mAP": ("heatmap_map.png", "mAP"), "R1": ("heatmap_rank1.png", "Rank-1")}
#: file -> alt text, for the Markdown that shows the figures (a block's heatmap: block_heatmap)
CAPTIONS = {"heatmap_map.png": "mAP heatmap", "heatmap_rank1.png": "Rank-1 heatmap",
            "domain_map.png": "in-domain vs cross-domain mAP of supervised and hybrid models",
            "tradeoff_map.png": "in-domain vs mean cross-domain mAP, Pareto front and interpolation curves",
            "clothes_gap.png": "clothes gap: each model's standard (or same-clothes) mAP against its clothes-changing mAP"}


def block_heatmap(name: str, metric: str) -> str:
    """The file of a block's heatmap (records.BlockKind.heatmap): heatmap_t2i_r1.png."""
    return f"heatmap_{name}_{metric.lower()}.png"


def caption(path: Path, run: Run) -> str:
    """A figure's alt text."""
    from raybench.metrics import title

    for kind, name in run.block_names():
        if kind.heatmap and path.name == block_heatmap(name, kind.heatmap):
            return f"{kind.title}: {title(kind.heatmap)} heatmap"
    return CAPTIONS.get(path.name, path.stem)
STATUS_COLOUR = "#d9d9d9"
IN_DOMAIN, CROSS_DOMAIN = "#e6550d", "#3182bd"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def heatmap_inches(n_models: int, n_datasets: int) -> tuple[float, float]:
    """Room for model names on the left, paradigms on the right, a colour bar below, and
    1.1 in per dataset column."""
    return 4.0 + 1.1 * n_datasets, 2.1 + 0.42 * n_models


def heatmap_pixels(n_models: int, n_datasets: int) -> tuple[int, int]:
    w, h = heatmap_inches(n_models, n_datasets)
    return int(w * DPI), int(h * DPI)  # as Agg sizes its canvas (truncated, not rounded)


def write_heatmaps(run: Run, out: Path) -> list[Path]:
    """The main block's mAP and Rank-1, and a heatmap per block whose kind asks for one
    (records.BlockKind.heatmap: text-to-image Rank-1), over the datasets that have the block."""
    from raybench.metrics import title

    files = []
    for key, (name, label) in HEATMAPS.items():
        models, values = tables.pivot(run, key)
        path = out / name
        heatmap(models, list(run.datasets), values, [run.paradigm(m) for m in models],
                f"{label} (%), {run.name}", path)
        files.append(path)
    for kind, block in run.block_names():
        if kind.heatmap:
            datasets = tables.block_datasets(run, block)
            models, values = tables.pivot(run, kind.heatmap, block, datasets, kind.absent)
            path = out / block_heatmap(block, kind.heatmap)
            heatmap(models, datasets, values, [run.paradigm(m) for m in models],
                    f"{kind.title}: {title(kind.heatmap)} (%), {run.name}", path)
            files.append(path)
    return files


def heatmap(models: list[str], datasets: list[str], values: list[list[Any]], paradigms: list[str],
            title: str, path: Path) -> None:
    """values[i][j]: a fraction, a status string (failed, missing) or None (not in the run)."""
    import numpy as np

    plt = _pyplot()
    grid = np.array([[100 * v if isinstance(v, float) else np.nan for v in line] for line in values]).reshape(
        len(models), len(datasets))
    fig, ax = plt.subplots(figsize=heatmap_inches(len(models), len(datasets)), dpi=DPI, layout="constrained")
    ax.set_facecolor(STATUS_COLOUR)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i, line in enumerate(values):
        for j, v in enumerate(line):
            text, colour = _label(v)
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color=colour)
    long = max(map(len, datasets)) > 8
    ax.set_xticks(range(len(datasets)), datasets, rotation=30 if long else 0, ha="right" if long else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(len(models)), models)
    ax.tick_params(length=0)
    _paradigm_bands(ax, paradigms)
    ax.set_title(title, loc="left", fontsize=11)
    fig.colorbar(image, ax=ax, orientation="horizontal", fraction=0.06, pad=0.02, aspect=40, label="%")
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def _label(value: Any) -> tuple[str, str]:
    if isinstance(value, float):
        return percent(value), "white" if value < 0.6 else "black"
    return ("" if value is None else str(value)), "#555555"


def _paradigm_bands(ax, paradigms: list[str]) -> None:
    """White rules between paradigm groups, and each group's name on a right-hand axis."""
    centres, names, start = [], [], 0
    for i in range(1, len(paradigms) + 1):
        if i == len(paradigms) or paradigms[i] != paradigms[start]:
            if i < len(paradigms):
                ax.axhline(i - 0.5, color="white", linewidth=3)
            centres.append((start + i - 1) / 2)
            names.append(paradigms[start])
            start = i
    side = ax.secondary_yaxis("right")
    side.set_yticks(centres, names, fontsize=8, color="#444444", style="italic")
    side.tick_params(length=0)
    side.spines["right"].set_visible(False)


# ---------------------------------------------------------------------------------------------
# In-domain vs cross-domain


def write_domain_plot(run: Run, out: Path, notes: list[str]) -> list[Path]:
    """Per supervised model with a known training set: its mAP on every dataset, in-domain
    highlighted, with the bootstrap intervals as error bars."""
    by_cell = {(c.model, c.dataset): c for c in run.cells if c.ok}
    models = supervised_models(run)
    if not models:
        notes.append("No supervised model with a known training set (a name ending in a dataset's "
                     "name, or options.trained_on) was scored: no in-domain plot.")
        return []
    plt = _pyplot()
    cols = min(3, len(models))
    nrows = -(-len(models) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(1.0 + max(3.0, 1.0 + 0.55 * len(run.datasets)) * cols, 0.6 + 3.2 * nrows),
                             dpi=DPI, layout="constrained", squeeze=False, sharey=True)
    for ax, (model, home) in zip(axes.flat, models):
        _domain_panel(ax, model, home, [d for d in run.datasets if (model, d) in by_cell], by_cell)
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("mAP (%)")
    fig.suptitle(f"In-domain (orange) vs cross-domain (blue) mAP\nsupervised and hybrid models, {run.name}", fontsize=10)
    path = out / "domain_map.png"
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return [path]


def _domain_panel(ax, model: str, home: str, datasets: list[str], by_cell) -> None:
    import numpy as np

    cells = [by_cell[(model, d)] for d in datasets]
    values = np.array([100 * c.value("mAP") for c in cells])
    bounds = [c.interval("mAP") or (c.value("mAP"),) * 2 for c in cells]
    lo, hi = (np.array([100 * b[side] for b in bounds]) for side in (0, 1))
    colours = [IN_DOMAIN if d == home else CROSS_DOMAIN for d in datasets]
    x = np.arange(len(datasets))
    ax.bar(x, values, color=colours, yerr=[values - lo, hi - values], capsize=3, ecolor="#333333")
    for xi, v, top in zip(x, values, hi):
        ax.text(xi, top + 1.5, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    cross = [v for d, v in zip(datasets, values) if d != home]
    if cross:
        ax.axhline(float(np.mean(cross)), color=CROSS_DOMAIN, linestyle="--", linewidth=1,
                   label=f"cross-domain mean {np.mean(cross):.1f}")
        # Above the axes, between them and the title: inside, it hid the value labels of tall bars.
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False,
                  borderaxespad=0.1, handlelength=2.5)
    ax.set_xticks(x, datasets, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 112)
    where = "" if home in datasets else " (not in this run)"
    ax.set_title(f"{model}\ntrained on {home}{where}", fontsize=9, pad=20 if cross else 6)
