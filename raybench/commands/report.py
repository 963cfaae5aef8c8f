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
def report(run_dir: str, fmt: str, show_paper: bool, out: Path | None, reference: Path | None,
           queries: int, no_ranklists: bool, bootstraps: int, seed: int):
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

    options = ReportOptions(out=out, paper=reference, ranklists=not no_ranklists,
                            ranklist_queries=queries, bootstraps=bootstraps, seed=seed)
    result = build_report(run_dir, options)
    if fmt == "json":
        print_json(result.rows)
    elif fmt == "csv":
        sys.stdout.write((result.out / "results.csv").read_text())
    else:
        print_table(*_grid(result), title=f"{result.run.name}: mAP / Rank-1 (%)")
    if show_paper:
        if result.paper_rows:
            from raybench.report.paper import TABLE_COLUMNS

            print_table(result.paper_rows, list(TABLE_COLUMNS), title="ours vs the study (mAP %)")
        else:
            notice("no cell of this run is in the paper reference")
    failed = [r for r in result.rows if r["status"] != "ok"]
    for r in failed:
        notice(f"{r['model']} x {r['dataset']} {r['status']}: {r['error']}")
    for problem in result.problems:  # unreadable files the tables could do without
        notice(problem)
    from raybench.report.tables import status_counts

    notice(f"report: {result.uploaded_to or result.out} ({count(len(result.files), 'file')}; {count(len(result.rows), 'cell')}: {status_counts(result.rows)})")


def _grid(result):
    """(rows, columns) of the study's layout: a line per model, a column per dataset."""
    from raybench.report.tables import map_r1

    by_cell = {(r["model"], r["dataset"]): r for r in result.rows}
    rows = []
    for paradigm, models in result.run.models_by_paradigm():
        for model in models:
            line = {"model": model, "paradigm": paradigm}
            for dataset in result.run.datasets:
                row = by_cell.get((model, dataset))
                line[dataset] = "" if row is None else map_r1(row) if row["status"] == "ok" else row["status"]
            rows.append(line)
    return rows, ["model", "paradigm", *result.run.datasets]
