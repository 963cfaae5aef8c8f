"""`raybench list models|datasets|matrices`."""

from __future__ import annotations

import click

from raybench.commands.lazy import LazyGroup


@click.group(
    "list",
    cls=LazyGroup,
    lazy={
        "models": "raybench.commands.models:list_models",
        "datasets": "raybench.commands.datasets:list_datasets",
    },
)
def list_group():
    """List what raybench knows: models, datasets, matrices."""


@list_group.command("matrices")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_matrices(as_json: bool):
    """Matrices in configs/matrices/ (run one with `raybench run --matrix NAME`)."""
    from raybench.console import print_json, print_table
    from raybench.catalog import config_files, matrices_dir
    from raybench.specs import Fields, load_yaml

    rows = []
    for name, path in config_files(matrices_dir()).items():
        data = load_yaml(path) or {}
        f = Fields(data, name)
        rows.append({
            "name": name,
            "models": len(f.data.get("models") or []),
            "datasets": len(f.data.get("datasets") or []),
            "description": f.data.get("description", ""),
        })
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["name", "models", "datasets", "description"])
