"""`raybench report DIR`: write DIR/report/ and print the results table."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dir")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True,
              help="What to print: a table, CSV, or JSON (one row per cell, metrics as fractions 0..1).")
@click.option("--paper", "show_paper", is_flag=True,
              help="Also print ours vs the study's published numbers (always written to paper.md).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default: RUN_DIR/report).")
@click.option("--reference", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The published numbers to compare with (default: configs/paper_reference.yaml).")
@click.option("--queries", type=click.IntRange(min=1), default=8, show_default=True,
              help="Queries sampled per rank-list page.")
@click.option("--no-ranklists", is_flag=True, help="Skip the HTML rank lists (they read the embeddings).")
@click.option("--bootstraps", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and of the query sample.")
@click.option("--compare", "pair", default=None, metavar="A,B",
              help="Print the paired difference A - B (mAP, R1, mINP) on each dataset both were scored on, "
                   "with 95% paired-bootstrap intervals over the same queries and two-sided p-values, instead "
                   "of writing the report. A and B are models of the run, each optionally MODEL:VARIANT for "
                   "one of its eval variants (osnet:rerank,osnet: re-ranking against the main block).")
@click.option("--dataset", "datasets", default=None, metavar="X,Y", help="With --compare: only these datasets.")
def report(run_dir: str, fmt: str, show_paper: bool, out: Path | None, reference: Path | None,
           queries: int, no_ranklists: bool, bootstraps: int, seed: int, pair: str | None, datasets: str | None):
    """Tables (md, csv, json), heatmaps, the paper comparison and rank lists of a run.

    \b
    Writes RUN_DIR/report/ (or --out) and prints the results table. RUN_DIR is a
    path or any URI that `raybench run --out` takes (file://, s3://, gs://): a run on
    object storage gets its report uploaded to RUN_DIR/report.
      raybench report runs/smoke
      raybench report runs/smoke --format json     # one row per cell, for scripts
      raybench report runs/paper --paper           # ours vs the study's numbers
    
    What the matrix's features add (README, under the section quoted; "What a report holds"):
      fusions:             the hybrids table and tradeoff_map.png ("Hybrids: fusions and weight interpolations")
      loader: interpolate  the same, an interpolation's alphas joined ("Weight interpolation (WiSE-FT)")
      eval_variants:       a column group per variant ("Eval variants")
      trained:<run>        trained models, in domain on their training set ("Training the supervised side")
      caption datasets     a text-retrieval table, heatmap_t2i_r1.png ("Text queries in the matrix")
    """
    import sys

    from raybench.console import count, notice, print_json, print_table
    from raybench.report.build import ReportOptions, build_report

    if pair is not None:
        _compare(run_dir, pair, datasets, fmt, bootstraps, seed)
        return

    options = ReportOptions(out=out, paper=reference, ranklists=not no_ranklists,
                            ranklist_queries=queries, bootstraps=bootstraps, seed=seed)
    result = build_report(run_dir, options)
    if fmt == "json":
        print_json(result.rows)
    elif fmt == "csv":
        sys.stdout.write((result.out / "results.csv").read_text())
    else:
        from raybench.metrics import title as metric_title
        from raybench.report.tables import block_figures, map_r1, vs_main

        print_table(*_grid(result, map_r1), title=f"{result.run.name}: mAP / Rank-1 (%)")
        for kind, name in result.run.block_names():  # the text-to-image and eval-variant tables it writes
            fmt = vs_main(name) if kind.paired else block_figures(kind, name)
            shown = " / ".join(map(metric_title, kind.shown)) + (", intervals, vs main" if kind.paired else "")
            print_table(*_grid(result, fmt, name), title=f"{kind.title} `{name}`: {shown} (%)")
    if show_paper:
        if result.paper_rows:
            from raybench.report.paper import TABLE_COLUMNS

            print_table(result.paper_rows, list(TABLE_COLUMNS), title="ours vs the study (mAP %)")
        else:
            notice("no cell of this run is in the paper reference")
    for cell in result.run.cells:
        if not cell.ok:
            notice(f"{cell.model} x {cell.dataset} {cell.status}: {cell.error}")
    for problem in result.problems:  # unreadable files the tables could do without
        notice(problem)
    from raybench.report.tables import status_counts

    cells = result.run.cells
    notice(f"report: {result.uploaded_to or result.out} ({count(len(result.files), 'file')}; "
           f"{count(len(cells), 'cell')}: {status_counts(cells)})")


def _grid(result, fmt, block: str | None = None):
    """(rows, columns) of the study's layout: a line per model, a column per dataset (those that
    have the block ``block``), ``fmt(cell)`` in ok cells."""
    from raybench.report.tables import block_datasets

    run = result.run
    datasets = run.datasets if block is None else block_datasets(run, block)
    rows = []
    for paradigm, models in run.models_by_paradigm():
        for model in models:
            line = {"model": model, "paradigm": paradigm}
            for dataset in datasets:
                cell = run.cell(model, dataset)
                line[dataset] = "" if cell is None else fmt(cell) if cell.ok else cell.status
            rows.append(line)
    return rows, ["model", "paradigm", *datasets]


def _compare(run_dir: str, pair: str, datasets: str | None, fmt: str, bootstraps: int, seed: int) -> None:
    """``--compare A,B``: the paired differences, as a table, CSV or JSON rows."""
    import csv
    import sys

    from raybench.console import print_json, print_table
    from raybench.errors import RaybenchError
    from raybench.metrics import percent, points
    from raybench.report.load import load_run
    from raybench.report.paired import compare_models

    names = [n.strip() for n in pair.split(",")]
    if len(names) != 2 or not all(names):
        raise RaybenchError(f"--compare takes two names, A,B; got {pair!r}")
    chosen = [d.strip() for d in datasets.split(",") if d.strip()] if datasets else None
    rows = compare_models(load_run(run_dir), *names, chosen, n_boot=bootstraps, seed=seed)
    if fmt == "json":
        print_json(rows)
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    else:
        shown = [{**r, "a_value": percent(r["a_value"], 2), "b_value": percent(r["b_value"], 2),
                  "delta": points(r["delta"], 2) + ("*" if r["ci_low"] > 0 or r["ci_high"] < 0 else ""),
                  "95% interval": f"[{points(r['ci_low'], 2)}, {points(r['ci_high'], 2)}]",
                  "p": f"{r['p_value']:.4f}"} for r in rows]
        print_table(shown, ["dataset", "metric", "a_value", "b_value", "delta", "95% interval", "p", "num_queries"],
                    title=f"{names[0]} - {names[1]}, paired over the same queries (%; *: the interval excludes 0)",
                    headers={"a_value": names[0], "b_value": names[1], "num_queries": "queries"})
