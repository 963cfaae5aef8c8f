"""`raybench report DIR`: write DIR/report/ and print the results table."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True,
              help="What to print: a table, CSV, or JSON (one row per cell, metrics as fractions 0..1).")
@click.option("--paper", "show_paper", is_flag=True,
              help="Also print ours vs the study's published numbers (always written to paper.md).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default: RUN_DIR/report).")
@click.option("--reference", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The published numbers to compare with (default: configs/paper_reference.yaml).")
@click.option("--queries", type=click.IntRange(min=1), default=12, show_default=True,
              help="Queries sampled per rank-list page.")
@click.option("--no-ranklists", is_flag=True, help="Skip the HTML rank lists (they read the embeddings).")
@click.option("--bootstraps", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and of the query sample.")
def report(run_dir: Path, fmt: str, show_paper: bool, out: Path | None, reference: Path | None,
           queries: int, no_ranklists: bool, bootstraps: int, seed: int):
    """Tables (md, csv, json), heatmaps, the paper comparison and rank lists of a run.

    \b
    Writes RUN_DIR/report/ (or --out) and prints the results table:
      raybench report runs/smoke
      raybench report runs/smoke --format json     # one row per cell, for scripts
      raybench report runs/paper --paper           # ours vs the study's numbers
    """
    import sys

    from raybench.console import notice, print_json, print_table
    from raybench.report.build import ReportOptions, build_report
    from raybench.report.tables import pct

    options = ReportOptions(out=out, paper=reference, ranklists=not no_ranklists,
                            ranklist_queries=queries, bootstraps=bootstraps, seed=seed)
    result = build_report(run_dir, options)
    if fmt == "json":
        print_json(result.rows)
    elif fmt == "csv":
        sys.stdout.write((result.out / "results.csv").read_text())
    else:
        columns = ["model", "dataset", "paradigm", "status", "mAP", "R1", "mINP", "error"]
        shown = [{**r, **{k: pct(r[k]) for k in ("mAP", "R1", "mINP")}} for r in result.rows]
        print_table(shown, columns, title=f"{result.run.name} (%)")
    if show_paper:
        if result.paper_rows:
            from raybench.report.paper import TABLE_COLUMNS

            print_table(result.paper_rows, list(TABLE_COLUMNS), title="ours vs the study (mAP %)")
        else:
            notice("no cell of this run is in the paper reference")
    failed = sum(r["status"] != "ok" for r in result.rows)
    notice(f"report: {result.out} ({len(result.files)} files; {failed} of {len(result.rows)} cells not ok)")
