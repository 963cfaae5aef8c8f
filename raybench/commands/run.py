"""`raybench run --matrix NAME|PATH`: embed and score a model x dataset matrix on Ray."""

from __future__ import annotations

import shlex

import click


#: The live table: these, the main block's live metrics (raybench.metrics), "text" where a cell
#: scored captions, every other block's metric columns ("mAP (rerank)"), then the tail.
HEAD = ["dataset", "model", "status", "this_run"]
TAIL = ["queries", "seconds", "note"]
#: Summary-row keys the table never shows (they feed the closing lines).
HIDDEN = ("stream_cells", "skipped_images", "error")


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@click.command("run")
@click.option("--matrix", "matrix_name", default="smoke", show_default=True, metavar="NAME|PATH",
              help="configs/matrices/NAME.yaml, or a matrix YAML file.")
@click.option("--out", default=None, metavar="DIR|URI",
              help="Run directory: a path, or a pyarrow filesystem URI (s3://, gs://, file://). "
                   "Default: runs/<matrix name>.")
@click.option("--models", default=None, metavar="A,B", help="Only these models of the matrix.")
@click.option("--datasets", default=None, metavar="X,Y", help="Only these datasets of the matrix.")
@click.option("--force", is_flag=True, help="Recompute finished cells (default: resume, skip them).")
@click.option("--actors", type=click.IntRange(min=1), default=None,
              help="Embedding actors (default: one per GPU; one on CPU).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Override every model's batch size (does not change the results).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per CPU embedding actor (default: the node's CPUs, shared by its actors).")
@click.option("--num-cpus", type=click.IntRange(min=1), default=None,
              help="CPUs of the local Ray this command starts (ignored when joining RAY_ADDRESS).")
@click.option("--no-pixel-cache", is_flag=True,
              help="Decode images per model instead of once per dataset and input geometry.")
@click.option("--shared-out", is_flag=True, envvar="RAYBENCH_SHARED_OUT",
              help="--out is a path that every node of the cluster mounts [env: RAYBENCH_SHARED_OUT].")
@click.option("--dashboard", is_flag=True, help="Start the Ray dashboard with the local Ray (metrics, Ray Data).")
@click.option("--ray-progress", is_flag=True, help="Show Ray Data's per-operator progress bars too.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only the first N query identities (pid order) of each dataset and trial, with their "
                   "images and a deterministic share of the other gallery images: a first pass. Such "
                   "cells are marked limited, and a run without --limit recomputes them.")
@click.option("--random-weights", is_flag=True,
              help="Build every model at its architecture with seeded random weights (no download): "
                   "rehearse the pipeline. Results say so; a run without it recomputes them.")
def run(matrix_name, out, models, datasets, force, actors, batch_size, threads, num_cpus,
        no_pixel_cache, shared_out, dashboard, ray_progress, limit, random_weights):
    """Embed every (model, dataset) cell of a matrix and score it; resume where a run stopped.

    \b
    Starts a local Ray (or joins the cluster in RAY_ADDRESS), streams images through Ray Data
    to embedding actors (one per GPU; CPU when there is none), writes
    DIR/embeddings/<dataset>/<model>/ (Parquet) and DIR/results/<dataset>/<model>.json, and
    ends with the results table. A failed cell does not stop the others; the exit code is
    1 when any cell failed.
    \b
      raybench run                                     # the smoke matrix, no downloads
      raybench run --matrix paper --out runs/paper     # needs $RAYBENCH_DATA and weights
      raybench run --matrix paper --models osnet-x1_0-market --datasets market1501
    
    Besides models, datasets and eval, a matrix may hold (README, under the section quoted):
      fusions:             rows fused from stored embeddings ("Hybrids: fusions and weight interpolations")
      eval_variants:       every cell scored again with changed eval keys ("Eval variants")
      loader: interpolate  a model mixing two models' weights ("Weight interpolation (WiSE-FT)")
      trained:<run>        a model `raybench train` made ("Training the supervised side (ablations)")
      caption datasets     text-to-image retrieval by the models' text towers ("Text queries in the matrix")
    """
    from raybench.console import notice, print_table
    from raybench.pipeline.driver import RunOptions, run_matrix
    from raybench.catalog import load_matrix

    matrix = load_matrix(matrix_name).select(_names(models), _names(datasets))
    out = out or f"runs/{matrix.name}"
    options = RunOptions(force=force, actors=actors, batch_size=batch_size, threads=threads,
                         pixel_cache=not no_pixel_cache, shared_out=shared_out, num_cpus=num_cpus,
                         dashboard=dashboard, ray_progress=ray_progress, limit=limit,
                         random_weights=random_weights)
    notice(f"run {matrix.name}: {len(matrix.models)} model(s) x {len(matrix.datasets)} dataset(s) -> {out}")
    if limit or random_weights:
        notice("rehearsal: " + ", ".join(([f"first {limit} query identities per dataset"] if limit else [])
                                          + (["random weights"] if random_weights else []))
               + "; these results are not the models' scores")
    summary = run_matrix(matrix, out, options)
    columns = table_columns(summary.rows)
    percent = metric_columns(columns)
    print_table(_percent(summary.rows, percent), columns, title=f"{matrix.name}: metrics in %",
                headers={**{key: f"{key} %" for key in percent}, "this_run": "this run"})
    for line in closing_lines(summary):
        notice(line)
    if summary.failed:
        click.get_current_context().exit(1)


def table_columns(rows: list[dict]) -> list[str]:
    """The live table's columns (reducer.summary_row's keys): ``HEAD``, the main block's live
    metrics, the text status where a cell scored captions, every block's columns in the order
    the rows give them, then ``TAIL`` (the note only where a cell has one)."""
    from raybench.metrics import METRICS

    live = [m.name for m in METRICS if m.live]
    known = {*HEAD, *live, "text", *TAIL, *HIDDEN}
    blocks = _merged_order([[key for key in row if key not in known] for row in rows])
    text = ["text"] if any(row.get("text") == "ok" for row in rows) else []
    tail = [c for c in TAIL if c != "note" or any(row.get("note") for row in rows)]
    return [*HEAD, *live, *text, *blocks, *tail]


def _merged_order(orders: list[list[str]]) -> list[str]:
    """Every key of ``orders``, in an order that keeps each list's (rows hold their blocks kind
    by kind, a row without text blocks just lacks them); ties by first appearance."""
    seen = list(dict.fromkeys(key for order in orders for key in order))
    after = {key: set() for key in seen}
    for order in orders:
        for a, b in zip(order, order[1:]):
            after[b].add(a)
    out: list[str] = []
    while len(out) < len(seen):
        left = [k for k in seen if k not in out]
        out.append(next((k for k in left if after[k] <= set(out)), left[0]))  # left[0]: orders that disagree
    return out


def metric_columns(columns: list[str]) -> list[str]:
    """The columns of ``table_columns`` that hold fractions (shown as percentages)."""
    return [c for c in columns if c not in (*HEAD, "text", *TAIL)]


def closing_lines(summary) -> list[str]:
    """What the console says under the table: shared stream seconds, skipped images, failures,
    the counts, and how to build the report (the path shell-quoted, so it can be pasted)."""
    from raybench.console import count
    from raybench.report.tables import skipped_lines, stream_note

    lines = []
    note = stream_note(r.get("stream_cells") for r in summary.rows)
    if note:
        lines.append(note)
    skipped = skipped_lines((r["model"], r["dataset"], r.get("skipped_images") or [])
                            for r in summary.rows if r["status"] == "ok")
    if skipped:
        total = sum(len(r.get("skipped_images") or []) for r in summary.rows if r["status"] == "ok")
        verb = "was" if total == 1 else "were"
        lines.append(f"{count(total, 'image')} could not be read and {verb} skipped (on_bad_image: skip):")
        lines += [f"  {line}" for line in skipped]
    lines += [f"FAILED {row['dataset']} x {row['model']}: {row['error']}" for row in summary.failed]
    ok = len(summary.rows) - len(summary.failed)
    skipped_text = f", {len(skipped)} with skipped images" if skipped else ""
    lines.append(f"{count(len(summary.rows), 'cell')}: {ok} ok{skipped_text}, {len(summary.failed)} failed, "
                 f"in {summary.seconds:.1f} s. Results: {summary.out}/results "
                 f"(raybench report {shlex.quote(str(summary.out))})")
    return lines


def _percent(rows: list[dict], percent: list[str] | None = None) -> list[dict]:
    """Percentages (the ``percent`` keys, default the table's metric columns) with two
    decimals and seconds with one, so that a column's digits line up."""
    from raybench.metrics import percent as pct
    from raybench.report.tables import seconds_text

    percent = metric_columns(table_columns(rows)) if percent is None else percent
    scaled = []
    for row in rows:
        row = dict(row)
        for key in percent:
            if row.get(key) is not None:
                row[key] = pct(row[key], 2)
        if isinstance(row.get("seconds"), (int, float)):
            row["seconds"] = seconds_text(row)
        scaled.append(row)
    return scaled
