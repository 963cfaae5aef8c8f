"""Write a run's report folder: tables, heatmaps, the paper comparison and rank lists.

    report/
      results.md  results.csv  results.json     every cell, every metric (fractions in csv/json),
                                                each eval variant as its own column group
      heatmap_map.png  heatmap_rank1.png        mAP and Rank-1 (%) per model x dataset
      heatmap_t2i_r1.png                        text-to-image Rank-1 (%), caption datasets only
      domain_map.png                            supervised, hybrid: in-domain vs cross-domain mAP
      tradeoff_map.png                          in-domain vs mean cross-domain mAP, Pareto front
      clothes_gap.png                           clothes-changing datasets: standard vs cc mAP per model
      paper.md  paper.csv                       ours vs the study's published numbers
      ranklists/index.html, <dataset>__<model>.html   top-10 galleries of sampled queries
      ranklists/<dataset>__<model>__text.html  sampled captions and their top-10 images
    results.md holds a video table where the run has video cells (video.py), and their rank lists
    show each tracklet as a strip of its frames.

The output depends only on the run directory and the options (no dates), so regenerating a
committed report from the same run gives the same files.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raybench.console import count
from raybench.errors import RaybenchError
from raybench.metrics import HEADLINE, title as metric_title
from raybench.report import clothes, domain, paper, plots, ranklist, tables, tradeoff, video
from raybench.report.bootstrap import DEFAULT_BOOTSTRAPS, bootstrap_intervals
from raybench.report.load import Cell, Intervals, Run, load_run
from raybench.rundir.store import RunStore


@dataclass(frozen=True)
class ReportOptions:
    out: Path | None = None  # the report folder; default <run>/report
    paper: Path | None = None  # reference YAML; default configs/paper_reference.yaml
    ranklists: bool = True
    ranklist_queries: int = 8
    bootstraps: int = DEFAULT_BOOTSTRAPS
    seed: int = 0


@dataclass
class Report:
    run: Run  # its cells hold their bootstrap intervals
    out: Path  # where the files were written on this machine
    rows: list[dict[str, Any]]  # results.json's rows (tables.cell_row)
    paper_rows: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: files of the run that could not be read (also in notes): the console shows these
    problems: list[str] = field(default_factory=list)
    uploaded_to: str | None = None  # <run>/report on object storage, when the run lives there


def build_report(run_dir: str | Path | RunStore, options: ReportOptions = ReportOptions()) -> Report:
    """The report of a run directory: a local path or any URI that `raybench run --out` takes.

    It goes to ``options.out``, else to <run>/report: written there for a run on this machine's
    filesystem; for one on object storage, written to a temporary folder and uploaded.
    """
    problems: list[str] = []
    run = load_run(run_dir, problems)
    upload = not options.out and not run.store.is_local
    if options.out:
        out = Path(options.out)
    elif upload:
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="raybench-report-"))
    else:
        out = Path(run.store.path("report"))
    _make_dir(out, run)
    run = dataclasses.replace(run, cells=tuple(
        dataclasses.replace(c, intervals=_intervals(c, options), vs_main=_vs_main(c, options)) for c in run.cells))
    blocks = run.block_names()
    rows = [tables.cell_row(c, blocks) for c in run.cells]
    report = Report(run=run, out=out, rows=rows, problems=problems)
    sampled = [f"{c.model} x {c.dataset}" for c in run.cells if c.ok and _cuhk03_metric(c)]
    if sampled:
        report.notes.append("Rank-1 of " + ", ".join(sampled) + " is the classic CUHK03 single-shot "
                            "CMC (one random gallery image per identity): it has no bootstrap interval.")
    tables.write_json(rows, out / "results.json")
    tables.write_csv(rows, out / "results.csv", blocks)
    report.files += [out / "results.json", out / "results.csv"]
    _write_extras(report, options)
    (out / "results.md").write_text(markdown(report, options))
    report.files.append(out / "results.md")
    if upload:
        report.uploaded_to = _upload(report)
    return report


def _make_dir(out: Path, run: Run) -> None:
    reason = RunStore.open(out).unwritable_reason()  # the same probe as `raybench run --out`
    if reason:
        raise RaybenchError(f"cannot write the report to {out} ({reason}); pass --out DIR "
                            f"to write it elsewhere: raybench report {shlex.quote(run.uri)} --out DIR")


def _upload(report: Report) -> str:
    """Copy the report's files into <run>/report on the run's own filesystem."""
    store = report.run.store
    for path in report.files:
        rel = path.relative_to(report.out).as_posix()
        target = store.path("report", rel)
        store.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with store.fs.open_output_stream(target) as dst:
            dst.write(path.read_bytes())
    return f"{store.uri.rstrip('/')}/report"


def _intervals(cell: Cell, options: ReportOptions) -> Intervals:
    """Bootstrap intervals of an ok cell's blocks (those that keep their per-query numbers).
    Under the classic CUHK03 metric the reported Rank-1 is drawn from sampled galleries, which
    the per-query first matches (full gallery) do not describe, so that cell keeps its mAP
    intervals only."""
    if not cell.ok:
        return {}
    out = {}
    for name, scores in [("main", cell.result.main), *((n, s) for _, n, s in cell.result.blocks())]:
        found = bootstrap_intervals(scores.per_query, options.bootstraps, seed=options.seed)
        if found and _cuhk03_metric(cell):
            found.pop("R1", None)
        if found:
            out[name] = found
    return out


def _vs_main(cell: Cell, options: ReportOptions) -> dict[str, dict[str, Any]]:
    """Each paired block's difference to the main block (records.BlockKind.paired), per compared
    metric; a cell whose blocks kept no per-query numbers has none."""
    from raybench.report.paired import COMPARED, NotPaired, compare

    if not cell.ok:
        return {}
    out = {}
    for kind, name, scores in cell.result.blocks():
        if kind.paired:
            metrics = [m for m in COMPARED if not (m == "R1" and _cuhk03_metric(cell))]
            try:
                out[name] = {p.metric: p for p in compare(scores, cell.result.main, metrics, options.bootstraps,
                                                          options.seed)}
            except NotPaired:
                continue
    return out


def _cuhk03_metric(cell: Cell) -> bool:
    return bool((cell.result.protocol or {}).get("cuhk03_metric"))


def _write_extras(report: Report, options: ReportOptions) -> None:
    """Figures, paper comparison, rank lists: each adds its files or a note saying why not."""
    report.files += plots.write_heatmaps(report.run, report.out)
    report.files += plots.write_domain_plot(report.run, report.out, report.notes)
    for block in [None, *(name for kind, name in report.run.block_names() if kind.paired)]:
        report.files += tradeoff.write_tradeoff_plot(report.run, report.out, report.notes, block)
    report.files += clothes.write_gap_plot(report.run, report.out)
    report.paper_rows, files = paper.write_comparison(report.run.cells, report.out, options.paper, report.notes)
    report.files += files
    if options.ranklists:
        report.files += ranklist.write_ranklists(
            report.run, report.out / "ranklists", options.ranklist_queries, options.seed, report.problems
        )
    report.notes += report.problems


def _rehearsal_line(cells) -> list[str]:
    """A warning above the tables when any cell ran with --limit or --random-weights."""
    marked = [c for c in cells if c.ok and tables.rehearsal_note(c)]
    if not marked:
        return []
    kinds = sorted({n for c in marked for n in tables.rehearsal_note(c).split(", ")})
    return [f"**Rehearsal**: {count(len(marked), 'cell')} ran {' and '.join(kinds)} (`--limit` / "
            "`--random-weights`); their numbers are not the models' scores."]


def markdown(report: Report, options: ReportOptions) -> str:
    run, out = report.run, report.out
    failures: list[Cell] = []
    headline = " / ".join(m.title for m in HEADLINE)
    parts = [
        f"# raybench report: {run.name}",
        *([run.description] if run.description else []),
        f"{count(len(run.cells), 'cell')} ({tables.status_counts(run.cells)}) of {count(len(run.models), 'model')} x "
        f"{count(len(run.datasets), 'dataset')}, from `{run.label}`{_provenance(run)}.",
        *_rehearsal_line(run.cells),
        f"## {headline} (%)",
        tables.grid(run, tables.map_r1, failures),
        "## With 95% bootstrap intervals over queries",
        f"Percentile intervals from {options.bootstraps} resamples of the queries (seed "
        f"{options.seed}); where a dataset has several splits, queries are resampled within each "
        "and the spread between splits is shown as sd. Differences inside these intervals are "
        "not evidence of a better model.",
        tables.grid(run, tables.intervals, failures),
        *block_sections(run, failures),
        *video.video_section(run),
    ]
    if failures:
        parts += ["## Cells that did not finish", tables.failure_list(failures)]
    skipped = tables.skipped_lines((c.model, c.dataset, list(c.result.skipped_images)) for c in run.cells if c.ok)
    if skipped:
        parts += ["## Skipped images",
                  "Images that could not be read were left out of these cells (`on_bad_image: skip`); "
                  "their metrics are over the remaining images. Every path is in the cell's result JSON "
                  "(`skipped_images`).",
                  "\n".join(f"- {line}" for line in skipped)]
    parts += ["## Details", tables.details(run)]
    figures = [(p.name, plots.caption(p, run)) for p in report.files if p.suffix == ".png"]
    if figures:
        parts += ["## Figures", "\n\n".join(f"![{alt}]({name})" for name, alt in figures)]
    in_out = domain.domain_table(run)
    if in_out:
        parts += ["## In-domain vs cross-domain (supervised and hybrid models)",
                  "In-domain: the dataset the weights were trained on (the model spec's "
                  "`options.trained_on`, else a name ending in the dataset's name; for a weight "
                  "interpolation, its supervised member's).", in_out]
    clothing = clothes.clothes_tables(run)
    if clothing:
        parts += ["## Clothes-changing: standard / cc / sc (mAP / Rank-1 %)",
                  "Each clothes-changing dataset under its settings: `standard` (same person, another camera), "
                  "`cc` (and another outfit), `sc` (and the same outfit); the gap is cc minus the reference "
                  f"setting in mAP points ([{clothes.FIGURE}]({clothes.FIGURE}); docs/clothes.md).", clothing]
    parts += hybrid_sections(run, options)
    if report.paper_rows:
        parts += ["## Compared with the study (mAP %)",
                  "The study's numbers, their source and how far to trust them: [paper.md](paper.md).",
                  paper.table_md(report.paper_rows)]
    pages = [p for p in report.files if p.suffix == ".html" and p.parent.name == "ranklists"]
    if pages:
        parts += ["## Rank lists",
                  "Sampled queries and their top-10 gallery images: "
                  + ", ".join(f"[{p.stem}]({p.relative_to(out).as_posix()})"
                              for p in pages if p.name != "index.html")]
    if report.notes:
        parts += ["## Notes", "\n".join(f"- {n}" for n in report.notes)]
    return "\n\n".join(parts) + "\n"


def hybrid_sections(run: Run, options: ReportOptions) -> list[str]:
    """Fusions and weight interpolations beside their members, and against each member on the
    same queries (paired), under the main eval block and under each eval variant: does a
    hybrid still help once re-ranking or query expansion is on?"""
    parts: list[str] = []
    for block in [None, *(name for kind, name in run.block_names() if kind.paired)]:
        table = tradeoff.hybrids_table(run, block)
        if not table:
            continue
        figure = tradeoff.figure_name(block)
        under = "" if block is None else f" (eval variant `{block}`)"
        parts += [f"## Hybrids: fusions and weight interpolations{under}",
                  "Each beside its members, on its supervised member's training set (in domain) and the "
                  "run's other datasets (across); \"Pareto front\": no model of the trade-off figure is better "
                  f"on both ([{figure}]({figure})).", table,
                  "Each hybrid against each member, paired over the same queries: the difference in mAP "
                  f"points with its 95% interval ({options.bootstraps} bootstrap resamples of the queries, "
                  f"seed {options.seed}; across datasets, resampled within each) and two-sided p-value; "
                  "\"*\": the interval excludes zero, a difference the queries support.",
                  tradeoff.against_members(run, block, options.bootstraps, options.seed)]
    return parts


def block_sections(run: Run, failures: list[Cell]) -> list[str]:
    """A section per kind of block the run holds (records.BLOCK_KINDS), by one code for every
    kind: its title and what it is, then per block what it changes (as its results state it)
    and a grid of its figures with their 95% intervals where the block kept its per-query
    numbers, over the datasets that have it."""
    parts: list[str] = []
    for kind in dict.fromkeys(kind for kind, _ in run.block_names()):
        names = [name for k, name in run.block_names() if k is kind]
        parts += [f"## {kind.title}: {' / '.join(map(metric_title, kind.shown))} (%)", kind.about]
        for name in names:
            changes = tables.block_changes(run, name)
            if not kind.single:
                parts.append(f"### `{name}`" + (f": {changes}" if changes else ""))
            fmt = tables.vs_main(name) if kind.paired else tables.block_figures(kind, name)
            parts.append(tables.grid(run, fmt, failures, datasets=tables.block_datasets(run, name)))
    return parts


def _provenance(run: Run) -> str:
    """Where the numbers come from: the code's commit and the devices that embedded them."""
    git = run.record.git if run.record else {}
    text = ""
    if git.get("commit"):
        text += f", code at git `{str(git['commit'])[:12]}`" + (" with local changes" if git.get("dirty") else "")
    devices = sorted({c.result.device for c in run.cells if c.result is not None and c.result.device})
    if devices:
        text += ", embedded on " + ", ".join(f"`{d}`" for d in devices)
    return text
