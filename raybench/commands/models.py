"""`raybench models fetch` and `raybench list models`.

Listing reads configs/models.yaml and the weight caches only: it never imports torch.
"""

from __future__ import annotations

import click

COLUMNS = ["name", "loader", "arch", "weights", "paradigm", "input", "dim", "params", "cached"]


@click.group("models")
def models():
    """Model weights: download ahead of time for machines without internet access."""


@models.command("fetch")
@click.argument("names", nargs=-1, required=True)
def fetch(names: tuple[str, ...]):
    """Download the weights of the named models (see `raybench list models`).

    \b
    Hub weights (open_clip, timm, transformers) go to the Hugging Face cache, or to
    $RAYBENCH_WEIGHTS/hub when RAYBENCH_WEIGHTS is set; zoo files (torchreid, CLIP-ReID) to
    $RAYBENCH_WEIGHTS (default ~/.cache/raybench/weights). For a cluster without egress: set
    RAYBENCH_WEIGHTS to shared storage, fetch once here, and set the same variable on every node.
    """
    from raybench.console import notice
    from raybench.errors import RaybenchError, WeightsUnavailableError
    from raybench.models.weights import fetch as fetch_weights
    from raybench.catalog import catalog_get, load_model_catalog

    catalog = load_model_catalog()
    specs = [catalog_get(catalog, name, "model") for name in names]
    failed = []
    for spec in specs:
        try:
            notice(f"{spec.name}: {fetch_weights(spec)}")
        except RaybenchError as exc:
            failed.append(spec.name)
            notice(f"error: {exc}")
    if failed:
        raise WeightsUnavailableError(f"could not fetch {len(failed)} of {len(specs)} models: {', '.join(failed)}")


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_models(as_json: bool):
    """Models in configs/models.yaml: loader, weights, paradigm, input size, feature size,
    image-tower parameters, and whether the weights are cached here."""
    from raybench.console import print_json, print_table
    from raybench.catalog import load_model_catalog

    rows = [model_row(spec) for spec in load_model_catalog().values()]
    if as_json:
        print_json(rows)
    else:
        print_table([{**row, "weights": _short(row["weights"])} for row in rows], COLUMNS)


def _short(weights: str | None) -> str | None:
    """Google Drive links are long; the table shows their file id."""
    marker = "drive.google.com/file/d/"
    if weights and marker in weights:
        return "gdrive:" + weights.split(marker, 1)[1].split("/", 1)[0]
    return weights


def model_row(spec) -> dict:
    from raybench.models.weights import cached_status

    pre = spec.preprocess
    return {
        "name": spec.name,
        "loader": spec.loader,
        "arch": spec.arch,
        "weights": spec.weights,
        "paradigm": spec.paradigm,
        "input": list(pre.size) if pre else None,
        "dim": spec.dim,
        "params": spec.options.get("params"),
        "cached": cached_status(spec),
    }
