"""`raybench rehearse --matrix NAME`: every model of a matrix with random weights, before GPU hours."""

from __future__ import annotations

import click

COLUMNS = ["model", "status", "params", "build s", "host GB", "GPU GB", "ceiling img/s", "pipeline img/s", "ratio",
           "start s", "batch"]


@click.command("rehearse")
@click.option("--matrix", "matrix_name", default="paper", show_default=True, metavar="NAME|PATH",
              help="configs/matrices/NAME.yaml, or a matrix YAML file.")
@click.option("--models", default=None, metavar="A,B", help="Only these models of the matrix.")
@click.option("--limit", type=click.IntRange(min=1), default=4, show_default=True, metavar="N",
              help="Timed batches (the pipeline streams one more per actor: its first, which carries "
                   "the model's start).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Every model's batch size (default: each model's own, but at most 4 for a torch model "
                   "on a CPU, so that large ViTs take seconds a batch).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Default: cuda when this machine has a GPU, else cpu.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON output (default: rehearse-<device>.json in the current folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON record instead of a table.")
def rehearse(matrix_name, models, limit, batch_size, device, out, as_json):
    """Build every model of a matrix with random weights (no download, no dataset) and measure
    it: build time, parameters, peak host and GPU memory, the Ray pipeline's rate on synthetic
    JPEG crops, the model's own rate on the same batches (the ceiling), their ratio, and an
    estimate of the whole matrix's time on this hardware. Exit code 1 when any model fails to
    build or run; 130 when interrupted (Ctrl-C, SIGTERM).

    \b
      raybench rehearse --matrix paper                      # on this machine's GPU, else CPU
      raybench rehearse --matrix smoke --limit 2 --json     # print the record
    """
    import time
    from pathlib import Path

    from raybench.bench import provenance, write_json
    from raybench.bench.rehearse import rehearse as run_rehearsal
    from raybench.catalog import load_matrix
    from raybench.commands.run import _names
    from raybench.console import notice, print_json, print_table

    matrix = load_matrix(matrix_name).select(_names(models), None)
    device = device or _default_device()
    notice(f"rehearse {matrix.name}: {len(matrix.models)} model(s), random weights, on {device}, {limit} timed batch(es)")
    start = time.perf_counter()
    record = run_rehearsal(matrix, limit=limit, device=device, batch_size=batch_size, echo=notice)
    record.update(matrix=matrix.name, seconds=time.perf_counter() - start, git=provenance(),
                  date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  command=f"raybench rehearse --matrix {matrix_name} --limit {limit} --device {device}"
                          + (f" --batch-size {batch_size}" if batch_size else ""))
    path = write_json(record, Path(out) if out else Path.cwd() / f"rehearse-{device}.json")
    if as_json:
        print_json(record)
    else:
        print_table(table_rows(record), COLUMNS, title=f"rehearse {matrix.name} on {device}: random weights")
        print(estimate_line(record))
    for row in record["models"]:
        if row["status"] != "ok":
            notice(f"FAILED {row['model']}: {row['error']}")
    notice(f"wrote {path} in {record['seconds']:.0f} s")
    if any(row["status"] != "ok" for row in record["models"]):
        click.get_current_context().exit(1)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _fixed(value, digits: int = 1):
    return None if value is None else f"{value:.{digits}f}"


def table_rows(record: dict) -> list[dict]:
    rows = []
    for r in record["models"]:
        gb = lambda b: None if b is None else f"{b / 1e9:.2f}"  # noqa: E731
        rows.append({"model": r["model"], "status": r["status"],
                     "params": None if r["params"] is None else f"{r['params'] / 1e6:.1f}M",
                     "build s": _fixed(r["build_seconds"]), "host GB": gb(r["peak_host_bytes"]),
                     "GPU GB": gb(r["peak_gpu_bytes"]), "ceiling img/s": _fixed(r["ceiling_images_per_s"]),
                     "pipeline img/s": _fixed(r["pipeline_images_per_s"]), "ratio": _fixed(r["ratio"], 2),
                     "start s": _fixed(r.get("start_seconds")), "batch": r.get("batch_size")})
    return rows


def estimate_line(record: dict) -> str:
    from raybench.pipeline.progress import format_seconds

    if record["estimate_seconds"] is None:
        return (f"full matrix on this hardware: at least {format_seconds(record['estimate_partial_seconds'])} "
                "(some cells have no rate or no known image count)")
    return (f"full matrix on this hardware ({len(record['cells'])} cells, their images / the pipeline rates "
            f"+ each model's start): about {format_seconds(record['estimate_seconds'])}")
