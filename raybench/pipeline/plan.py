"""Plan a matrix: which cells are finished, which only need scoring, which need embedding.

A cell is one (model, dataset) pair: the unit of work, of caching and of failure. Its key is
the model's spec hash (everything that changes the embeddings) plus a hash of the dataset's
evaluated manifest rows, so new weights or a different copy of the images recompute it, while
a new batch size or a renamed description does not.

A dataset with captions (text queries) adds them to its cells: a cell of a model with a text
tower embeds the query captions too (``Cell.text``), and its key adds a hash of them; a cell
of a model without one is an image cell whose result says "no text tower".

A dataset with ``distractors:`` (raybench.datasets.distractors) adds a cell per model for its
distractor set (``kind`` DISTRACTORS), shared by every dataset that names the same images: it
is embedded in the model's stream like any cell (first, so that its datasets wait least) but
never scored on its own; each dataset cell that names it (``Cell.distractors``) is scored once
it is committed, and its eval hash holds the set's key, so new distractor embeddings re-score
the dataset's cell without embedding it again. A fusion has a cell of the set too, never
embedded: the reducer fuses it from its members' cells of the set (as it fuses their dataset
cells) before it scores the fusion's first dataset cell that names the set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from raybench.rundir.records import CellMarker, CellResult, RunFileError
from raybench.specs import DatasetSpec, EvalSpec, EvalVariant, MatrixSpec, ModelSpec

#: Only these splits are embedded and stored: scoring never reads the training split.
EVAL_SPLITS = ("query", "gallery")

#: FUSE: a fusion cell whose fused embeddings are missing or stale; the reducer makes them from
#: its members' cells (pipeline/fusion.py) once these are committed.
DONE, EVALUATE, EMBED, FUSE, FAILED = "done", "evaluate", "embed", "fuse", "failed"
#: Cell.kind: a (model, dataset) cell, scored and reported; a model's cell of a distractor set.
DATASET, DISTRACTORS = "dataset", "distractors"


@dataclass(frozen=True)
class DatasetImages:
    """One dataset's evaluated rows, loaded once for every model of the run.

    ``manifest`` keeps the manifest's rows (query and gallery, trials repeated); ``paths`` are
    its unique image paths in first-seen order; ``index[i]`` is the position in ``paths`` of
    manifest row i, so each image is embedded once however many trials list it.
    """

    spec: DatasetSpec
    manifest: pa.Table | None
    paths: tuple[str, ...] = ()
    index: object = None  # numpy int64 [rows]
    hash: str = ""
    error: str | None = None  # the manifest could not be loaded: every cell of it fails
    captions: pa.Table | None = None  # the query captions (caption, pid, path, split); None: no text
    text_hash: str = ""
    limit: int | None = None  # --limit: only the first N query identities (datasets/limit.py)
    #: a video dataset: what is embedded (``video_record``), each tracklet's name, and the
    #: tracklet of each of ``paths`` (an index into ``tracklets``; numpy int64)
    video: dict | None = None
    tracklets: tuple[str, ...] = ()
    tracklet_index: object = None
    distractors: "DatasetImages | None" = None  # the set its spec's ``distractors:`` names, loaded once

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Cell:
    model: ModelSpec
    data: DatasetImages
    state: str  # DONE, EVALUATE, EMBED or FAILED
    key: str
    reason: str = ""  # why the state (for FAILED, the error)
    random_weights: bool = False  # --random-weights: the model's architecture, seeded random weights
    previous: CellResult | CellMarker | None = field(default=None, compare=False)  # to reuse
    text: bool = False  # embed and score the dataset's captions (a model with a text tower)
    members: tuple["Cell", ...] = ()  # a fusion cell: its members' cells of the same dataset
    kind: str = DATASET  # DISTRACTORS: a distractor set's cell (module docstring)
    distractors: "Cell | None" = None  # a dataset cell's distractor cell (same model), if any

    @property
    def text_status(self) -> str | None:
        """None on a dataset without captions; "ok" when the cell embeds them; else why not."""
        if self.data.captions is None:
            return None
        return "ok" if self.text else "no text tower"

    @property
    def label(self) -> str:
        return f"{self.data.name} x {self.model.name}"


def load_images(spec: DatasetSpec, load_manifest: Callable[[DatasetSpec], pa.Table],
                load_captions: Callable[[DatasetSpec], pa.Table] | None = None,
                limit: int | None = None) -> DatasetImages:
    """Load and index a dataset's manifest (and, with ``load_captions``, its query captions);
    a user error becomes the cells' error, not a crash. ``limit``: keep only the first N query
    identities of each trial (datasets/limit.py), and the captions of the images kept."""
    import numpy as np
    import pyarrow.compute as pc

    from raybench.errors import RaybenchError

    try:
        table = load_manifest(spec)
        captions = load_captions(spec) if load_captions else None
    except RaybenchError as exc:
        return DatasetImages(spec, None, error=str(exc))
    table = table.filter(pc.is_in(table.column("split"), pa.array(EVAL_SPLITS))).combine_chunks()
    if limit is not None:
        from raybench.datasets.limit import limit_manifest

        table = limit_manifest(table, limit).combine_chunks()
    frames_in_copy = len(pc.unique(table.column("path")))
    if spec.embed_frames != "all":
        if "tracklet" not in table.column_names:
            return DatasetImages(spec, None, error=f"{spec.name}: embed_frames ({spec.embed_frames}) applies to video "
                                                   "datasets; this one has no tracklets")
        table = embedded_frames(table, spec.embed_frames)
    paths = pc.unique(table.column("path"))
    index = pc.index_in(table.column("path"), value_set=paths).to_numpy().astype(np.int64)
    text_hash = ""
    if captions is not None:
        captions = captions.filter(pc.equal(captions.column("split"), "query")).combine_chunks()
        if limit is not None:
            captions = captions.filter(pc.is_in(captions.column("path"), paths)).combine_chunks()
        text_hash = manifest_hash(captions)
    video = {} if "tracklet" not in table.column_names else video_images(table, paths, spec, frames_in_copy)
    return DatasetImages(spec, table, tuple(paths.to_pylist()), index, manifest_hash(table),
                         captions=captions, text_hash=text_hash, limit=limit, **video)


def embedded_frames(table: pa.Table, rule: str) -> pa.Table:
    """The rows of a video manifest that ``embed_frames: rule`` embeds: those that pooling
    with ``frames: rule`` reads (raybench.eval.tracklets)."""
    from raybench.eval.tracklets import selected_rows

    cols = {name: table.column(name).to_numpy(zero_copy_only=False)
            for name in ("tracklet", "frame", "split", "trial") if name in table.column_names}
    return table.filter(pa.array(selected_rows(cols, rule))).combine_chunks()


def video_images(table: pa.Table, paths: pa.Array, spec: DatasetSpec, frames_in_copy: int) -> dict:
    """DatasetImages' video fields: the record of what is embedded (tracklets, frames, the
    frames of the copy that ``embed_frames`` leaves out, the manifest's note), each tracklet's
    name, and each unique image's tracklet."""
    import numpy as np
    import pyarrow.compute as pc

    from raybench.datasets.manifest import manifest_note

    names = pc.unique(table.column("tracklet"))
    first = pc.index_in(paths, value_set=table.column("path")).to_numpy()  # each image's first row
    codes = pc.index_in(table.column("tracklet"), value_set=names).to_numpy()[first].astype(np.int64)
    record = {"tracklets": len(names), "frames": len(paths), "embed_frames": spec.embed_frames,
              "frames_in_copy": frames_in_copy}
    note = manifest_note(table)
    return {"video": {**record, **({"note": note} if note else {})}, "tracklets": tuple(names.to_pylist()),
            "tracklet_index": codes}


def attach_distractors(datasets: dict[str, DatasetImages], limit: int | None = None) -> dict[str, DatasetImages]:
    """Each dataset with ``distractors:`` gets its set (``DatasetImages.distractors``), loaded
    once per folder however many datasets name it; a set that cannot be read is loaded as its
    error (its cells fail, and the cells of the datasets that name it)."""
    from raybench.datasets.distractors import distractor_source
    from raybench.errors import RaybenchError

    loaded: dict[str, DatasetImages] = {}
    out = dict(datasets)
    for name, data in datasets.items():
        if not data.spec.distractors or data.error:
            continue
        try:
            where = str(distractor_source(data.spec))
        except RaybenchError as exc:
            out[name] = dataclasses.replace(data, error=f"its distractors: {exc}")
            continue
        if where not in loaded:
            loaded[where] = load_distractor_set(data.spec, limit)
        out[name] = dataclasses.replace(data, distractors=loaded[where])
    return out


def load_distractor_set(spec: DatasetSpec, limit: int | None = None) -> DatasetImages:
    """The distractor set that ``spec`` names, as the rows of a cell of its own (named by its
    content: datasets/distractors.py); under --limit, a share of it (datasets/limit.py)."""
    from raybench.datasets.distractors import distractor_source, load_distractors, set_name
    from raybench.errors import RaybenchError

    try:
        table = load_distractors(spec)
        if limit is not None:
            from raybench.datasets.limit import limit_distractors

            table = limit_distractors(table, limit)
        name = set_name(table)
    except RaybenchError as exc:
        return DatasetImages(DatasetSpec(name=f"{spec.name}-distractors", adapter="folder", layout_dir=""), None, error=str(exc))
    import numpy as np

    paths = tuple(table.column("path").to_pylist())
    set_spec = DatasetSpec(name=name, adapter="folder", layout_dir="", root=str(distractor_source(spec)),
                           description=f"distractors named by {spec.name}")
    return DatasetImages(set_spec, table, paths, np.arange(len(paths), dtype=np.int64), manifest_hash(table),
                         limit=limit)


def manifest_hash(table: pa.Table) -> str:
    """A stable hash of the rows that are embedded and scored."""
    digest = hashlib.sha256()
    for name in table.column_names:
        digest.update(name.encode())
        digest.update(json.dumps(table.column(name).to_pylist()).encode())
    return digest.hexdigest()[:16]


def eval_hash(dataset: DatasetSpec, spec: EvalSpec, variants: tuple[EvalVariant, ...] = (),
              distractors: str | None = None) -> str:
    """What changes a cell's scores without changing its embeddings: the dataset's protocol,
    the eval block, the eval variants and the key of its distractor cell (``distractors``).
    Without variants and distractors, and with AQE off, it is the hash raybench wrote before
    any of them existed, so those results stay fresh."""
    blocks: list = [dataset.protocol.hash_fields(), spec.hash_fields()]
    if variants:
        blocks.append([[v.name, v.eval.hash_fields()] for v in variants])
    if distractors:
        blocks.append({"distractors": distractors})
    text = json.dumps(blocks, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cell_key(model: ModelSpec, data: DatasetImages, text: bool = False, random_weights: bool = False) -> str:
    """Spec hash + manifest hash (+ the query captions' hash for a cell that embeds them: an
    image cell's key does not change when a dataset gains captions); a limited or
    random-weights cell says so in its key, so a run without those options never keeps it
    (even where the limit kept every row)."""
    key = f"{model.spec_hash()}-{data.hash}"
    if text:
        key += f"-{data.text_hash}"
    if data.limit is not None:
        key += f"-limit{data.limit}"
    return key + ("-random" if random_weights else "")


def plan_cells(matrix: MatrixSpec, datasets: dict[str, DatasetImages], store, force: bool,
               random_weights: bool = False) -> list[Cell]:
    """Every cell of the matrix with its state, in matrix order (models outer), then the
    fusions' cells."""
    from raybench.models import has_text_tower

    text = {model.name: has_text_tower(model) for model in matrix.models}
    sets = {data.distractors.name: data.distractors for data in datasets.values() if data.distractors is not None}
    extra = {(model.name, name): _plan_distractors(model, data, store, force, random_weights)
             for model in matrix.models for name, data in sets.items()}
    cells = [
        _plan_one(model, datasets[dataset.name], matrix, store, force, text[model.name], random_weights,
                  _distractor_cell(extra, model, datasets[dataset.name]))
        for model in matrix.models
        for dataset in matrix.datasets
    ]
    by_name = {(c.model.name, c.data.name): c for c in cells}
    for fusion in matrix.fusions:
        model = fusion.as_model()
        for name, data in sets.items():
            members = tuple(extra[(member, name)] for member in fusion.of)
            extra[(model.name, name)] = _plan_fused_set(model, data, members, store, force, random_weights)
        for dataset in matrix.datasets:
            members = tuple(by_name[(member, dataset.name)] for member in fusion.of)
            cells.append(_plan_fusion(model, datasets[dataset.name], members, matrix, store, force, random_weights,
                                      _distractor_cell(extra, model, datasets[dataset.name])))
    return cells + list(extra.values())


def _distractor_cell(extra: dict, model: ModelSpec, data: DatasetImages) -> Cell | None:
    return None if data.distractors is None else extra[(model.name, data.distractors.name)]


def _plan_distractors(model: ModelSpec, data: DatasetImages, store, force: bool, random_weights: bool) -> Cell:
    """A model's cell of a distractor set: DONE when its embeddings are committed and current
    (it has no result of its own), else EMBED; FAILED when the set cannot be read."""
    cell = Cell(model, data, EMBED, cell_key(model, data, random_weights=random_weights), kind=DISTRACTORS,
                random_weights=random_weights)
    if data.error:
        return dataclasses.replace(cell, state=FAILED, key="", reason=data.error)
    if force:
        return dataclasses.replace(cell, reason="--force")
    return _committed_set(cell, store, "embeddings")


def _committed_set(cell: Cell, store, what: str) -> Cell:
    """A set's cell DONE when ``what`` (its embeddings, or fused embeddings) are committed under
    its key and readable; else as planned, with why (a damaged or truncated set is made again)."""
    try:
        marker = store.cell_marker(cell.data.name, cell.model.name)
        if marker and marker.key == cell.key:
            store.check_embeddings(cell.data.name, marker)
            return dataclasses.replace(cell, state=DONE, reason="finished", previous=marker)
    except RunFileError as exc:
        return dataclasses.replace(cell, reason=f"unreadable {what} ({exc})")
    return dataclasses.replace(cell, reason=f"no {what}" if not marker else f"stale {what}")


def fusion_key(model: ModelSpec, members: tuple[Cell, ...]) -> str:
    """A fusion cell's key: its spec hash (members' names and weights) + a hash of its members'
    keys, so that a member embedded again (new weights, other images, --limit) makes it stale."""
    digest = hashlib.sha256(json.dumps([c.key for c in members]).encode()).hexdigest()[:16]
    return f"{model.spec_hash()}-fusion-{digest}"


def _plan_fusion(model: ModelSpec, data: DatasetImages, members: tuple[Cell, ...], matrix: MatrixSpec, store,
                 force: bool, random_weights: bool, distractors: Cell | None = None) -> Cell:
    """A fusion cell: kept or re-scored as any cell; else FUSE, made by the reducer from its
    members' embeddings (never embedded). ``distractors``: the fusion's cell of the dataset's
    distractor set (``_plan_fused_set``); one that is to be fused again makes this cell FUSE
    too, so that the reducer fuses the set before it scores the cell."""
    if data.error:
        return Cell(model, data, FAILED, "", data.error, random_weights=random_weights, members=members)
    if distractors is not None and distractors.state == FAILED:
        return Cell(model, data, FAILED, "", f"its distractors: {distractors.reason}", random_weights=random_weights,
                    members=members)
    planned = _plan_state(model, data, matrix, store, force, fusion_key(model, members),
                          distractors.key if distractors else None)
    again = [m.model.name for m in members if m.state == EMBED]
    if planned.state == EMBED:
        planned = dataclasses.replace(planned, state=FUSE, reason=planned.reason.replace("embeddings", "fused embeddings"))
    elif again:  # the same key, but the member's files will be new
        planned = dataclasses.replace(planned, state=FUSE, reason=f"member {again[0]} is embedded again")
    elif distractors is not None and distractors.state == FUSE:
        planned = dataclasses.replace(planned, state=FUSE, reason=f"its distractors are fused again ({distractors.reason})")
    return dataclasses.replace(planned, random_weights=random_weights, members=members, distractors=distractors)


def _plan_fused_set(model: ModelSpec, data: DatasetImages, members: tuple[Cell, ...], store, force: bool,
                    random_weights: bool) -> Cell:
    """A fusion's cell of a distractor set: DONE when its fused embeddings are committed under
    the key of its members' set cells, FUSE when they are to be made (by the reducer, with the
    fusion's first dataset cell that names the set), FAILED with a member's set."""
    cell = Cell(model, data, FUSE, fusion_key(model, members), kind=DISTRACTORS, random_weights=random_weights,
                members=members)
    failed = [m for m in members if m.state == FAILED]
    if failed:
        return dataclasses.replace(cell, state=FAILED, key="", reason=f"member {failed[0].model.name}: {failed[0].reason}")
    again = [m.model.name for m in members if m.state == EMBED]
    if force or again:
        return dataclasses.replace(cell, reason="--force" if force else f"member {again[0]} is embedded again")
    return _committed_set(cell, store, "fused embeddings")


def _plan_one(model: ModelSpec, data: DatasetImages, matrix: MatrixSpec, store, force: bool,
              text_tower: bool = False, random_weights: bool = False, distractors: Cell | None = None) -> Cell:
    if data.error:
        return Cell(model, data, FAILED, "", data.error, random_weights=random_weights)
    if distractors is not None and distractors.state == FAILED:
        return Cell(model, data, FAILED, "", f"its distractors: {distractors.reason}", random_weights=random_weights)
    text = text_tower and data.captions is not None
    planned = _plan_state(model, data, matrix, store, force, cell_key(model, data, text, random_weights),
                          distractors.key if distractors else None)
    if distractors is not None and distractors.state == EMBED and planned.state == DONE:
        planned = dataclasses.replace(planned, state=EVALUATE, reason="its distractors are embedded again",
                                      previous=store.cell_marker(data.name, model.name))
    return dataclasses.replace(planned, text=text, random_weights=random_weights, distractors=distractors)


def _plan_state(model: ModelSpec, data: DatasetImages, matrix: MatrixSpec, store, force: bool, key: str,
                distractors: str | None = None) -> Cell:
    if force:
        return Cell(model, data, EMBED, key, "--force")
    try:
        marker = store.cell_marker(data.name, model.name)
    except RunFileError as exc:
        return Cell(model, data, EMBED, key, f"invalid embeddings marker ({exc})")
    if not marker or marker.key != key:
        return Cell(model, data, EMBED, key, "no embeddings" if not marker else "stale embeddings")
    try:
        store.check_embeddings(data.name, marker)
    except RunFileError as exc:  # a truncated or lost part: embedded again
        return Cell(model, data, EMBED, key, f"unreadable embeddings ({exc})")
    if marker.skipped_images and matrix.on_bad_image == "fail":
        return Cell(model, data, EMBED, key, "embedded with skipped images; on_bad_image is fail")
    try:
        result = store.read_result(data.name, model.name)
    except RunFileError as exc:  # a damaged result is re-scored from the stored embeddings
        return Cell(model, data, EVALUATE, key, f"invalid result ({exc})", previous=marker)
    fresh = (
        result is not None
        and result.ok
        and result.cell_key == key
        and result.eval_hash == eval_hash(data.spec, matrix.eval, matrix.eval_variants, distractors)
    )
    if fresh:
        return Cell(model, data, DONE, key, "finished", previous=result)
    return Cell(model, data, EVALUATE, key, "embeddings finished, scores missing or stale", previous=marker)


def group_by_model(cells: list[Cell]) -> list[tuple[ModelSpec, list[Cell]]]:
    """Cells to embed, grouped so that each model is loaded once per actor for all its datasets."""
    groups: dict[str, tuple[ModelSpec, list[Cell]]] = {}
    for cell in cells:
        if cell.state == EMBED:
            groups.setdefault(cell.model.name, (cell.model, []))[1].append(cell)
    for _, group in groups.values():
        group.sort(key=lambda c: c.kind != DISTRACTORS)  # distractor sets first: their datasets wait on them
    return list(groups.values())
