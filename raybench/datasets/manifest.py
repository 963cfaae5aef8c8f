"""The manifest: one row per image of a dataset copy, as a typed Arrow table.

Columns: path (string, absolute), pid (int32), camid (int32, 0-based), split (string: train,
query or gallery) and, for datasets with several published splits, trial (int16): then an
image appears once per trial, with its role in that trial.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pyarrow as pa

from raybench.errors import DatasetError

SPLITS = ("train", "query", "gallery")
SCHEMA = pa.schema([
    pa.field("path", pa.string(), nullable=False),
    pa.field("pid", pa.int32(), nullable=False),
    pa.field("camid", pa.int32(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
])
TRIAL_FIELD = pa.field("trial", pa.int16(), nullable=False)


def make_manifest(rows: Iterable[Mapping[str, Any]] | Mapping[str, list]) -> pa.Table:
    """A manifest from records ({"path", "pid", "camid", "split"[, "trial"]}) or from columns."""
    if isinstance(rows, Mapping):
        columns = {k: list(v) for k, v in rows.items()}
    else:
        rows = list(rows)
        keys = rows[0].keys() if rows else SCHEMA.names
        columns = {k: [r[k] for r in rows] for k in keys}
    schema = SCHEMA.append(TRIAL_FIELD) if "trial" in columns else SCHEMA
    return pa.table({name: columns.get(name, []) for name in schema.names}, schema=schema)


def validate_manifest(table: pa.Table, dataset: str, layout: str = "") -> pa.Table:
    """Check schema, splits and contents; an empty evaluation set is an error, never passed on."""
    expected = SCHEMA.append(TRIAL_FIELD) if "trial" in table.column_names else SCHEMA
    if not table.schema.equals(expected):
        raise DatasetError(f"{dataset}: manifest schema is {table.schema}, expected {expected}")
    import pyarrow.compute as pc

    where = f" Expected layout: {layout}" if layout else ""
    splits = set(table.column("split").to_pylist())
    unknown = splits - set(SPLITS)
    if unknown:
        raise DatasetError(f"{dataset}: unknown split {sorted(unknown)[0]!r}; allowed: {', '.join(SPLITS)}")
    for split in ("query", "gallery"):
        if split not in splits:
            raise DatasetError(f"{dataset}: no {split} images found.{where}")
    if pc.any(pc.less(table.column("pid"), 0)).as_py():
        raise DatasetError(f"{dataset}: junk images (pid -1) must be dropped from the manifest")
    return table


def split_stats(table: pa.Table) -> dict[str, dict[str, int]]:
    """Images, identities and cameras per split (unique paths, so trials do not multiply)."""
    stats = {}
    for split in SPLITS:
        rows = table.filter(table.column("split") == split) if table.num_rows else table
        paths = rows.column("path").to_pylist()
        seen, pids, cams = set(), set(), set()
        for path, pid, cam in zip(paths, rows.column("pid").to_pylist(), rows.column("camid").to_pylist()):
            if path not in seen:
                seen.add(path)
                pids.add(pid)
                cams.add(cam)
        stats[split] = {"images": len(seen), "ids": len(pids), "cameras": len(cams)}
    return stats
