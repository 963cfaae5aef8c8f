"""`raybench datasets check`: which catalog datasets a data folder holds, and whether each
copy matches its published statistics (``published_stats``: the adapter's declaration, or a
catalog entry's own ``stats:``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

from raybench.datasets import (DISTRACTOR_STATS, get_adapter, has_captions, is_generated, load_captions, load_manifest,
                               published_stats)
from raybench.datasets.common import DatasetNotFoundError
from raybench.datasets.manifest import compare_caption_stats, compare_stats
from raybench.errors import RaybenchError
from raybench.specs import DatasetSpec


def check_all(data: Path, catalog: Mapping[str, DatasetSpec]) -> list[dict]:
    """One row per ``catalog`` dataset found on disk or expected there (generated ones are
    skipped): status present-and-matching ``ok``, ``differs``, ``malformed`` or ``missing``."""
    return [check_one(spec, data) for spec in catalog.values() if not is_generated(spec)]


def check_one(spec, data: Path) -> dict:
    """A catalog entry with a root of its own (a custom dataset) is checked there, not under
    ``data``; the others at data/<layout_dir>, or at ``data`` when that folder is absent (the
    adapter then looks for another canonical name, e.g. MSMT17_V2)."""
    if spec.root:
        folder = root = Path(spec.root).expanduser()
    else:
        folder = data / spec.layout_dir if spec.layout_dir else data
        root = folder if folder.exists() else data
    row = {"dataset": spec.name, "folder": str(folder), "status": "ok", "detail": ""}
    located = dataclasses.replace(spec, root=str(root))
    try:
        table = load_manifest(located)
        captions = load_captions(located) if has_captions(spec) else None
    except RaybenchError as exc:
        if folder.exists() or not isinstance(exc, DatasetNotFoundError):
            row.update(status="malformed", detail=str(exc))
        else:
            row.update(status="missing", detail=f"expected {get_adapter(spec.adapter).layout}")
        return row
    stats = published_stats(spec)
    differences = compare_stats(table, {k: v for k, v in stats.items() if k not in ("source", "captions")})
    if captions is not None:
        differences += compare_caption_stats(captions, stats.get("captions") or {})
    if spec.distractors:
        try:
            found, named = distractor_counts(located)
        except RaybenchError as exc:
            row.update(status="malformed", detail=str(exc))
            return row
        published = (stats.get(DISTRACTOR_STATS) or {}).get("images")
        if published is not None and found != published:
            differences.append(f"distractors: {found} images (published {published})")
        row["distractors"] = {"images": found, "named": named, "published": published}
    if differences:
        more = f" (+{len(differences) - 3} more)" if len(differences) > 3 else ""
        row.update(status="differs", detail="; ".join(differences[:3]) + more)
    elif not stats.keys() - {"source"}:
        row["detail"] = "no published statistics to compare"
    else:
        more = f" and {captions.num_rows} captions" if captions is not None else ""
        more += f" and {row['distractors']['images']:,} distractors" if spec.distractors else ""
        row["detail"] = f"{table.num_rows} manifest rows{more} match the published statistics"
    return row


def distractor_counts(spec) -> tuple[int, int]:
    """A dataset's distractor set: its images, and how many of their names follow the dataset's
    naming (a camera could be read)."""
    from raybench.datasets.distractors import cameras, load_distractors

    table = load_distractors(spec)
    return table.num_rows, int((cameras(table.column("path").to_pylist(), get_adapter(spec.adapter).naming) >= 0).sum())
