"""The manifest: one row per image of a dataset copy, as a typed Arrow table.

Columns: path (string, absolute), pid (int32), camid (int32, 0-based), split (string: train,
query or gallery) and, for datasets with several published splits, trial (int16): then an
image appears once per trial, with its role in that trial. A clothes-changing dataset adds
clothes (string): a key unique per person and outfit (LTCC's "001_2", the name's
``{pid}_{clothes}`` prefix), which its clothes-changing scoring settings read.

A video dataset (MARS, iLIDS-VID, ...) has one row per frame, and two more columns: tracklet
(string: the tracklet's name, e.g. MARS's ``0001C1T0001``; every frame of a tracklet shares
its pid, camera and split) and frame (int32: the frame's place in its tracklet, in the order
the dataset gives). Frames are images to the embedding pipeline; the scorer pools each
tracklet's frame embeddings into one (raybench.eval.tracklets) and ranks tracklets.

A dataset with captions (text-to-person retrieval) also has a caption table, kept beside the
manifest: caption (string), pid (int32), path (string: the image the caption was written
for, as the manifest spells it) and split (string: ``query`` for the captions that are
evaluated as text queries, ``train`` for captions of training images). Text-to-image
retrieval ranks every non-train image of the manifest for each query caption: a caption
dataset's manifest holds its test images in split ``gallery`` and no image queries.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from raybench.errors import DatasetError
from raybench.specs import CLOTHES_RULES

SPLITS = ("train", "query", "gallery")
SCHEMA = pa.schema([
    pa.field("path", pa.string(), nullable=False),
    pa.field("pid", pa.int32(), nullable=False),
    pa.field("camid", pa.int32(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
])
TRIAL_FIELD = pa.field("trial", pa.int16(), nullable=False)
TRACKLET_FIELD = pa.field("tracklet", pa.string(), nullable=False)
FRAME_FIELD = pa.field("frame", pa.int32(), nullable=False)
CLOTHES_FIELD = pa.field("clothes", pa.string(), nullable=False)
#: The columns a manifest may add to SCHEMA, in this order, each only where its dataset has it:
#: ``trial`` (several published splits), ``clothes`` (outfit labels), ``tracklet`` and
#: ``frame`` (a video dataset: one row per frame). A new one is one entry here; the store keeps
#: every manifest column beside the embeddings and the scorer receives them all.
OPTIONAL_FIELDS: tuple[pa.Field, ...] = (TRIAL_FIELD, CLOTHES_FIELD, TRACKLET_FIELD, FRAME_FIELD)
CAPTION_SPLITS = ("train", "query")
CAPTION_SCHEMA = pa.schema([
    pa.field("caption", pa.string(), nullable=False),
    pa.field("pid", pa.int32(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
])


def manifest_schema(columns: Iterable[str]) -> pa.Schema:
    """The schema of a manifest with ``columns``: SCHEMA, then the optional fields among them."""
    present = set(columns)
    schema = SCHEMA
    for optional in OPTIONAL_FIELDS:
        if optional.name in present:
            schema = schema.append(optional)
    return schema


def make_manifest(rows: Iterable[Mapping[str, Any]] | Mapping[str, list]) -> pa.Table:
    """A manifest from records ({"path", "pid", "camid", "split"} and any OPTIONAL_FIELDS) or
    from columns."""
    if isinstance(rows, Mapping):
        columns = {k: list(v) for k, v in rows.items()}
    else:
        rows = list(rows)
        keys = rows[0].keys() if rows else SCHEMA.names
        columns = {k: [r[k] for r in rows] for k in keys}
    schema = manifest_schema(columns)
    return pa.table({name: columns.get(name, []) for name in schema.names}, schema=schema)


def validate_manifest(table: pa.Table, dataset: str, layout: str = "", trials: int | None = None,
                      captioned: bool = False) -> pa.Table:
    """Check schema, splits and contents; an empty evaluation set is an error, never passed on.

    With ``trials``, the table must hold exactly that many trials (0..trials-1), each with
    query and gallery images. ``captioned``: the queries are captions (a caption table), so
    the manifest needs gallery images only.
    """
    expected = manifest_schema(table.column_names)
    if not table.schema.equals(expected):
        raise DatasetError(f"{dataset}: manifest schema is {table.schema}, expected {expected}")

    where = f" Expected layout: {layout}" if layout else ""
    splits = set(table.column("split").to_pylist())
    unknown = splits - set(SPLITS)
    if unknown:
        raise DatasetError(f"{dataset}: unknown split {sorted(unknown)[0]!r}; allowed: {', '.join(SPLITS)}")
    for split in ("gallery",) if captioned else ("query", "gallery"):
        if split not in splits:
            raise DatasetError(f"{dataset}: no {split} images found.{where}")
    if pc.any(pc.less(table.column("pid"), 0)).as_py():
        raise DatasetError(f"{dataset}: junk images (pid -1) must be dropped from the manifest")
    if trials is not None and trials > 1:
        _check_trials(table, dataset, trials, where)
    if ("tracklet" in table.column_names) != ("frame" in table.column_names):
        raise DatasetError(f"{dataset}: a video manifest has both a 'tracklet' and a 'frame' column")
    if "clothes" in table.column_names and pc.any(pc.equal(table.column("clothes"), "")).as_py():
        raise DatasetError(f"{dataset}: some images have an empty clothes label; each needs its outfit's key")
    return table


#: Schema metadata key of a manifest's note: what a reader of its results must know about the
#: copy's protocol (PRID2011's seeded splits: "not the published splits"), carried to the
#: cells' results. A note does not change the schema's equality.
NOTE_KEY = b"raybench.note"


def with_note(table: pa.Table, note: str | None) -> pa.Table:
    """``table`` carrying ``note`` (none: unchanged)."""
    if not note:
        return table
    return table.replace_schema_metadata({**(table.schema.metadata or {}), NOTE_KEY: note.encode()})


def manifest_note(table: pa.Table) -> str | None:
    """The note a manifest carries (``with_note``), if any."""
    value = (table.schema.metadata or {}).get(NOTE_KEY)
    return value.decode() if value else None


def is_video(table: pa.Table) -> bool:
    """Whether a manifest (or an embedding table) holds frames of tracklets."""
    return "tracklet" in table.column_names


def check_settings(table: pa.Table, dataset: str, settings, adapter: str) -> None:
    """A dataset's scoring settings (raybench.specs.Setting) against its manifest: a clothes
    rule needs the clothes column, a camera subset needs images under its cameras. One line
    that says what is missing, before anything is embedded."""
    for setting in settings:
        if setting.rule in CLOTHES_RULES and "clothes" not in table.column_names:
            raise DatasetError(
                f"{dataset}: setting {setting.name!r} (rule {setting.rule}) needs clothes labels, and adapter "
                f"{adapter!r} gives none; use a clothes-changing dataset (ltcc, prcc, vcclothes, deepchange) "
                "or leave the setting out of the protocol")
        for split, cameras in (("query", setting.query_cameras), ("gallery", setting.gallery_cameras)):
            if not cameras:
                continue
            rows = table.filter(pc.equal(table.column("split"), split))
            found = set(rows.column("camid").to_pylist())
            if not found & set(cameras):
                raise DatasetError(
                    f"{dataset}: setting {setting.name!r} keeps {split} images of cameras {list(cameras)} (camids), "
                    f"but the copy's {split} images are under cameras {sorted(found)[:12]}")


def _check_trials(table: pa.Table, dataset: str, trials: int, where: str) -> None:
    if "trial" not in table.column_names:
        raise DatasetError(f"{dataset}: the protocol asks for {trials} trials but the manifest has no trial column")
    found = sorted(set(table.column("trial").to_pylist()))
    if found != list(range(trials)):
        raise DatasetError(f"{dataset}: the protocol asks for trials 0..{trials - 1}, the copy gives {found}.{where}")
    for trial in found:
        rows = table.filter(pc.equal(table.column("trial"), trial))
        roles = set(rows.column("split").to_pylist())
        if not {"query", "gallery"} <= roles:
            raise DatasetError(f"{dataset}: trial {trial} has no query or no gallery images.{where}")


def split_stats(table: pa.Table, trial: int | None = None) -> dict[str, dict[str, int]]:
    """Images, identities and cameras per split (unique paths, so trials do not multiply), and
    in a video manifest its tracklets (unique names; ``images`` then counts frames).

    With ``trial``, only that trial's rows count: a dataset with published splits is
    described one trial at a time, since an image changes role between trials.
    """
    if trial is not None and "trial" in table.column_names:
        table = table.filter(pc.equal(table.column("trial"), trial))
    stats = {}
    for split in SPLITS:
        rows = table.filter(pc.equal(table.column("split"), split)) if table.num_rows else table
        paths = rows.column("path").to_pylist()
        seen, pids, cams = set(), set(), set()
        for path, pid, cam in zip(paths, rows.column("pid").to_pylist(), rows.column("camid").to_pylist()):
            if path not in seen:
                seen.add(path)
                pids.add(pid)
                cams.add(cam)
        stats[split] = {"images": len(seen), "ids": len(pids), "cameras": len(cams)}
        if is_video(table):
            stats[split]["tracklets"] = len(pc.unique(rows.column("tracklet")))
    return stats


def trial_ids(table: pa.Table) -> list[int | None]:
    """The trials of a manifest ([None] when it has a single split)."""
    if "trial" not in table.column_names:
        return [None]
    return sorted(set(table.column("trial").to_pylist()))


def compare_stats(table: pa.Table, published: Mapping[str, Any]) -> list[str]:
    """Where a copy differs from the published statistics, one line per number.

    ``published`` holds per-split mappings (``train``/``query``/``gallery`` -> ``images``,
    ``ids``, ``cameras``; checked in every trial), ``images`` (unique images in the whole
    copy) and ``eval_images`` (unique query + gallery images); other keys are notes.
    """
    differences = []
    for trial in trial_ids(table):
        found = split_stats(table, trial)
        label = "" if trial is None else f"trial {trial}: "
        for split in SPLITS:
            for key, value in (published.get(split) or {}).items():
                if found[split].get(key) != value:
                    differences.append(f"{label}{split} {key}: {found[split].get(key)} (published {value})")
    totals = {
        "images": len(set(table.column("path").to_pylist())),
        "eval_images": len(set(table.filter(pc.not_equal(table.column("split"), "train")).column("path").to_pylist())),
    }
    for key, value in totals.items():
        if key in published and published[key] != value:
            differences.append(f"{key}: {value} (published {published[key]})")
    return differences


def make_captions(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """A caption table from records ({"caption", "pid", "path", "split"})."""
    rows = list(rows)
    return pa.table({name: [r[name] for r in rows] for name in CAPTION_SCHEMA.names}, schema=CAPTION_SCHEMA)


def validate_captions(captions: pa.Table, manifest: pa.Table, dataset: str, layout: str = "") -> pa.Table:
    """Check a caption table against its manifest: schema, splits, at least one query caption,
    no empty caption, and every query caption written for an evaluated (non-train) image of
    the manifest, with that image's pid."""
    if not captions.schema.equals(CAPTION_SCHEMA):
        raise DatasetError(f"{dataset}: caption table schema is {captions.schema}, expected {CAPTION_SCHEMA}")
    where = f" Expected layout: {layout}" if layout else ""
    unknown = set(captions.column("split").to_pylist()) - set(CAPTION_SPLITS)
    if unknown:
        raise DatasetError(f"{dataset}: unknown caption split {sorted(unknown)[0]!r}; allowed: {', '.join(CAPTION_SPLITS)}")
    images = {path: pid for path, pid, split in zip(manifest.column("path").to_pylist(), manifest.column("pid").to_pylist(),
                                                    manifest.column("split").to_pylist()) if split != "train"}
    queries = 0
    for row in captions.to_pylist():
        if not row["caption"].strip():
            raise DatasetError(f"{dataset}: an empty caption for {row['path']}.{where}")
        if row["split"] != "query":
            continue
        queries += 1
        if row["path"] not in images:
            raise DatasetError(f"{dataset}: a query caption describes {row['path']}, which is not an evaluated "
                               f"image of the manifest.{where}")
        if images[row["path"]] != row["pid"]:
            raise DatasetError(f"{dataset}: a caption of {row['path']} has pid {row['pid']}, the image has pid "
                               f"{images[row['path']]}.{where}")
    if not queries:
        raise DatasetError(f"{dataset}: no query captions found.{where}")
    return captions


def caption_stats(captions: pa.Table) -> dict[str, int]:
    """Query captions, the identities they describe and the images they were written for."""
    query = captions.filter(pc.equal(captions.column("split"), "query"))
    return {"captions": query.num_rows, "ids": len(set(query.column("pid").to_pylist())),
            "images": len(set(query.column("path").to_pylist()))}


def compare_caption_stats(captions: pa.Table, published: Mapping[str, Any]) -> list[str]:
    """Where the query captions differ from the published ``captions``/``ids``/``images``."""
    found = caption_stats(captions)
    labels = {"captions": "query captions", "ids": "caption ids", "images": "captioned images"}
    return [f"{labels.get(key, key)}: {found.get(key)} (published {value})"
            for key, value in published.items() if found.get(key) != value]
