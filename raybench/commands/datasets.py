"""`raybench datasets info|check|synth` and `raybench list datasets`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import click


@click.group("datasets")
def datasets():
    """Inspect dataset copies and generate synthetic ones."""


def _spec(name: str, root: str | None):
    from raybench.catalog import catalog_get, load_dataset_catalog

    spec = catalog_get(load_dataset_catalog(), name, "dataset")
    return dataclasses.replace(spec, root=root) if root else spec


@datasets.command("info")
@click.argument("name")
@click.option("--root", type=click.Path(), help="The copy's folder (default: $RAYBENCH_DATA/<layout dir>).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(name: str, root: str | None, as_json: bool):
    """Images, identities and cameras per split of dataset NAME.

    Cameras are counted per split. For a dataset with several published splits (GRID),
    the numbers are those of the first trial.
    """
    from raybench.console import print_json, print_table
    from raybench.datasets import has_captions, load_captions, load_manifest, resolve_root
    from raybench.datasets.common import absolute
    from raybench.datasets.manifest import SPLITS, caption_stats, split_stats, trial_ids

    spec = _spec(name, root)
    where = absolute(resolve_root(spec))
    spec = dataclasses.replace(spec, root=where)  # a generated dataset is generated once
    table = load_manifest(spec)
    trials = trial_ids(table)
    stats = split_stats(table, trials[0])
    captions = caption_stats(load_captions(spec)) if has_captions(spec) else None
    if as_json:
        extra = {"captions": captions} if captions else {}
        print_json({"dataset": spec.name, "root": where, "splits": {s: stats[s] for s in ("query", "gallery", "train")},
                    **extra})
        return
    title = f"{spec.name} at {where}"
    if trials[0] is not None:
        title += f" (trial {trials[0]} of {len(trials)} published splits)"
    columns = ["split", "images", "ids", "cameras"] + (["tracklets"] if "tracklets" in stats["query"] else [])
    print_table([{"split": s, **stats[s]} for s in SPLITS], columns, title=title,
                headers={"images": "frames"} if "tracklets" in columns else None)
    cameras = len(set(table.column("camid").to_pylist()))
    filtering = "on" if spec.protocol.camera_filter else "off (no camera semantics)"
    click.echo(f"cameras overall: {cameras}; camera filtering: {filtering}; trials: {spec.protocol.trials}")
    if captions:
        click.echo(f"query captions: {captions['captions']} of {captions['ids']} ids, written for {captions['images']} images")


@datasets.command("check")
@click.option("--root", type=click.Path(), help="The folder holding the dataset copies (default: $RAYBENCH_DATA).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def check(root: str | None, as_json: bool):
    """Which of the study's datasets are present, and whether each matches its published statistics."""
    from raybench.console import print_json, print_table
    from raybench.catalog import load_dataset_catalog
    from raybench.datasets.check import check_all
    from raybench.errors import DatasetError
    from raybench.paths import data_dir

    data = Path(root) if root else data_dir()
    if data is None:
        raise DatasetError("no data folder: pass --root DATA or set RAYBENCH_DATA to the folder holding your dataset copies")
    if not data.is_dir():
        raise DatasetError(f"{data} is not a folder")
    rows = check_all(data, load_dataset_catalog())
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["dataset", "status", "folder", "detail"], title=f"datasets under {os.path.abspath(data)}")


@datasets.command("synth")
@click.option("--out", required=True, type=click.Path(), help="New folder to write (must not exist or be empty).")
@click.option("--ids", default=50, show_default=True, help="Identities.")
@click.option("--cams", default=6, show_default=True, help="Cameras.")
@click.option("--images-per-id", default=8, show_default=True, help="Images of each identity.")
@click.option("--domain", default="a", show_default=True, help="Camera network style: a (outdoor daylight) or b (indoor).")
@click.option("--seed", default=0, show_default=True, help="Everything drawn depends on it.")
@click.option("--distractors", default=0, show_default=True, help="Gallery images of people seen once (pid 0).")
@click.option("--junk", default=0, show_default=True, help="Background-only gallery crops (pid -1).")
@click.option("--outfits", default=1, show_default=True,
              help="Above 1: each person owns 2..N outfits across cameras (clothes changes, LTCC's layout).")
@click.option("--workers", default=None, type=int, help="Processes (default: all cores for large sets).")
def synth(out, ids, cams, images_per_id, domain, seed, distractors, junk, outfits, workers):
    """Write a synthetic dataset of procedurally drawn persons in the Market-1501 layout (LTCC's
    with --outfits)."""
    import json
    import time

    from raybench.datasets.synthetic import generate

    start = time.perf_counter()
    folder = generate(Path(out), workers=workers, ids=ids, cams=cams, images_per_id=images_per_id,
                      domain=domain, seed=seed, distractors=distractors, junk=junk, outfits=outfits)
    summary = json.loads((folder / "synth.json").read_text())
    splits = ", ".join(f"{n} {s}" for s, n in summary["splits"].items())
    click.echo(f"wrote {summary['images']} images ({splits}) to {folder} in {time.perf_counter() - start:.1f}s")


@click.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_datasets(as_json: bool):
    """Datasets in configs/datasets.yaml (inspect one with `raybench datasets info NAME`)."""
    from raybench.console import print_json, print_table
    from raybench.catalog import load_dataset_catalog
    from raybench.datasets import is_generated, published_stats

    rows = []
    for name, spec in load_dataset_catalog().items():
        # a custom entry's own root; is_generated imports the adapter, so only where it decides
        folder = spec.root or spec.layout_dir or ("(generated)" if is_generated(spec) else "")
        rows.append({
            "name": name,
            "adapter": spec.adapter,
            "folder": folder,
            "camera_filter": spec.protocol.camera_filter,
            "trials": spec.protocol.trials,
            "stats": dict(published_stats(spec)) or None,
            "description": spec.description,
        })
    if as_json:
        print_json(rows)
    else:
        table = [{**row, "stats": stats_summary(row["stats"] or {})} for row in rows]
        print_table(table, ["name", "adapter", "folder", "camera_filter", "trials", "stats", "description"],
                    headers={"stats": "published"})


def stats_summary(stats) -> str | None:
    """Published statistics in a table cell: the image (or tracklet and frame) counts per
    split (per trial where there are trials), the copy's or the evaluation's image total, the
    text queries."""
    parts = [_split_summary(split, stats.get(split) or {}) for split in ("query", "gallery", "train")
             if {"images", "tracklets"} & set(stats.get(split) or {})]
    if "eval_images" in stats:
        parts.append(f"{stats['eval_images']:,} evaluated")
    if "images" in stats:
        parts.append(f"{stats['images']:,} images")
    if "captions" in (stats.get("captions") or {}):
        parts.append(f"{stats['captions']['captions']:,} captions")
    return ", ".join(parts) or None


def _split_summary(split: str, counts) -> str:
    """"query 3,368" (images), or "query 1,980 tracklets / 114,493 frames" (a video split)."""
    if "tracklets" not in counts:
        return f"{split} {counts['images']:,}"
    frames = f" / {counts['images']:,} frames" if "images" in counts else ""
    return f"{split} {counts['tracklets']:,} tracklets{frames}"
