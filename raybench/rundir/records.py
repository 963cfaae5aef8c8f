"""The typed files of a run directory: a cell's result, a cell's _SUCCESS marker, run.json.

Each is a frozen dataclass with ``schema_version``, ``to_json()`` (a plain dict, the file's
content) and ``from_json(data, where)``, which checks required keys, types and ranges and raises
one ``RunFileError`` naming the file and the field. The pipeline writes these files, the planner
and the report read them, and so may a user's scripts::

    from raybench.rundir.records import CellResult
    result = CellResult.from_json(json.load(open(path)), where=path)

What each file must hold is declared once, on the dataclass's fields: ``from_json`` reads
them in order, each by its annotation or by its ``_read`` metadata. A file written before
``schema_version`` existed reads as version 1 (the same shape). Version 2 (scoring blocks,
raybench.metrics) renamed the text-to-image block's keys (``r1`` -> a CMC curve, ``R1``) and
the spread's ``rank1_std`` (-> ``R1_std``); version-1 results are still read, their old names
mapped (``metrics.LEGACY_NAMES``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from raybench.errors import RaybenchError
from raybench.metrics import LEGACY_NAMES, Scores
from raybench.specs.schema import Slot, Style, at_least, count, fraction, key, read
from raybench.specs.schema import seconds as in_seconds

SCHEMA_VERSION = 2
#: The _SUCCESS marker's version: 2 names the committed attempt folder and its files (the
#: embeddings written as parts, rundir/store.py); a version-1 cell (whole tables in
#: part-*.parquet beside its marker) is still read as it was written.
MARKER_VERSION = 2
CELL_STATUSES = ("ok", "failed")
RUN_STATUSES = ("running", "finished", "failed", "interrupted")


class RunFileError(RaybenchError):
    """A run-directory file whose content breaks its contract; the message names file and field."""

    def __init__(self, where: str, field_name: str, reason: str):
        super().__init__(f"{where}: field {field_name!r}: {reason}")
        self.where, self.field, self.reason = where, field_name, reason


# -- reading one JSON object (raybench.specs.schema, the one field-driven reader) ---------------

#: How run files are read: unknown keys ignored (a newer raybench may add some), null only where
#: a field's annotation allows it, errors as RunFileError(where, field, reason).
RUN_FILE = Style(error=RunFileError, refuse_unknown=False, null_is_default=False, mapping="a JSON object",
                 top="<top>", type_names={float: "int or float"})


def _version(latest: int) -> Callable[[int], str | None]:
    return lambda v: None if v <= latest else (f"is {v}; this raybench reads up to {latest} "
                                               "(upgrade raybench to read this run)")


def _cmc(value: Any, slot: Slot) -> tuple[float, ...]:
    """A CMC curve: fractions that never decrease."""
    values = slot.expect(value, list)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0 <= v <= 1):
            slot.fail(f"rank {i + 1} is {v!r}; CMC values are fractions in [0, 1]")
        if i and v < values[i - 1] - 1e-9:
            slot.fail(f"decreases at rank {i + 1} ({values[i - 1]!r} -> {v!r}); a CMC never decreases")
    return tuple(float(v) for v in values)


def _if_ok(read_value: Callable[[Any, Slot], Any]) -> Callable[[Any, Slot], Any]:
    """A main-block field: read by ``read_value`` in an ok result (``_check`` makes sure it is
    there); a failed result may hold it as null."""
    def hook(value: Any, slot: Slot) -> Any:
        if slot.values.get("status") != "ok":
            return None if value is None else slot.coerce(value)
        if value is None:
            slot.fail("is null in an ok result")
        return read_value(value, slot)
    return hook


def _checked(kind: type, check: Callable[[Any], str | None]) -> Callable[[Any, Slot], Any]:
    """A number of ``kind`` that passes ``check``."""
    def read_value(value: Any, slot: Slot) -> Any:
        value = slot.expect(value, kind)
        reason = check(value)
        if reason:
            slot.fail(reason)
        return kind(value)
    return read_value


# -- scoring blocks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockKind:
    """A kind of scoring block a result may hold besides its main one (raybench.metrics.Scores).

    ``key``: the CellResult field and JSON key; ``single``: the block's name when a cell has
    at most one block of this kind (stored as a block, not as name -> block). The report shows
    every kind by the same code: a section titled ``title`` explaining ``about``, a grid per
    block name with ``shown`` in each cell (or, for an ok cell without the block, the result
    field ``absent`` that says why), a heatmap of ``heatmap`` where it names a metric, and
    every block's columns ``"<metric> (<name>)"`` (``block_column``); the run's live table
    shows ``live`` of each block. ``paired``: the blocks score the main block's queries, so the
    report gives their paired difference to it (report/paired.py). Adding a kind is a
    CellResult field and a line in BLOCK_KINDS."""

    key: str
    title: str
    about: str
    single: str | None = None
    shown: tuple[str, ...] = ("mAP", "R1")
    live: tuple[str, ...] = ("mAP",)
    absent: str | None = None
    heatmap: str | None = None
    paired: bool = False


BLOCK_KINDS: tuple[BlockKind, ...] = (
    BlockKind("text", "Text-to-image retrieval",
              "Each query caption ranks every test image by cosine similarity (IRRA's protocol, "
              "raybench.eval.text); \"no text tower\": the model embeds images only (its image-to-image "
              "numbers above still count). On a dataset without image queries the image-to-image numbers "
              "are leave-one-out over the test images (raybench.eval.protocol).",
              single="t2i", shown=("R1", "R5", "R10", "mAP"), live=("R1", "mAP"), absent="text_status",
              heatmap="R1"),
    BlockKind("variants", "Eval variants",
              "Every cell scored again from the same stored embeddings, once per variant of the eval "
              "block (the matrix's `eval_variants`), with 95% bootstrap intervals and, after \"vs main\", "
              "the paired difference of its mAP to the main eval block's on the same queries (interval and "
              "p-value; \"*\": the interval excludes zero).", paired=True),
    BlockKind("settings", "Scoring settings",
              "A dataset's own settings (its protocol's `settings`), each scored from the same stored "
              "embeddings: `standard` (same person, another camera), `cc` (clothes-changing: and another "
              "outfit) and `sc` (same-clothes: and the same outfit), on the queries and gallery the "
              "setting keeps; the dataset's headline setting is also its main figures "
              "(raybench.eval.clothes, docs/clothes.md)."),
)
#: Names a block may not take: the main block's, and the single blocks'.
RESERVED_BLOCK_NAMES = ("main", *(kind.single for kind in BLOCK_KINDS if kind.single))


def block_column(metric: str, block: str) -> str:
    """How every table names a block's metric: "mAP (rerank)", "R1 (t2i)" (the live table, and
    the report's results.md, results.csv and results.json)."""
    return f"{metric} ({block})"


def scores_json(scores: Scores, paths: bool = True) -> dict[str, Any]:
    """A block as result files hold it; ``paths``: keep the per-query image paths (the main
    block's; other blocks score the same queries in the same order)."""
    out = dataclasses.asdict(scores)
    out["cmc"], out["trials"] = list(scores.cmc), list(scores.trials)
    if not paths and out["per_query"]:
        out["per_query"] = {k: v for k, v in out["per_query"].items() if k != "path"}
    for key in ("ranks", "scoring", "per_query", "spread"):
        if out[key] is None:
            out.pop(key)
    if not out["trials"]:
        out.pop("trials")
    return out


@dataclass(frozen=True)
class _StoredBlock:
    """A block as a result file holds it (``scores_json``), read into a Scores."""

    mAP: float = key(check=fraction)
    mINP: float = key(check=fraction)
    num_query: int = key(check=count)
    num_valid_query: int = key(check=count)
    num_gallery: int = key(check=count)
    cmc: tuple[float, ...] = key((), parse=_cmc)
    spread: Mapping[str, float] | None = None
    trials: tuple[Mapping[str, Any], ...] = ()
    per_query: Mapping[str, list] | None = None
    scoring: Mapping[str, Any] | None = None
    ranks: Mapping[str, float] | None = None

    def _check(self, fail) -> None:
        if not self.cmc and not self.ranks:
            fail("cmc", "is empty in a scored block")
        if self.num_valid_query > self.num_query:
            fail("num_valid_query", f"is {self.num_valid_query}, more than num_query {self.num_query}")
        if self.num_query < 1 or self.num_gallery < 1:
            fail("num_query", "a scored block has queries and a gallery")
        if self.ranks and not {"1", "5", "10"} <= set(self.ranks):
            fail("ranks", "must state ranks 1, 5 and 10")

    def scores(self) -> Scores:
        ranks = None if not self.ranks else {int(k): float(v) for k, v in self.ranks.items()}
        return Scores(self.mAP, self.mINP, self.cmc, self.num_query, self.num_valid_query, self.num_gallery,
                      self.spread, self.trials, self.per_query, self.scoring, ranks)


def _upgraded(data: Any, main: Mapping[str, Any]) -> Any:
    """A block written before result files had version 2, in version 2's shape: the text block's
    ``r1``/``r5``/``r10`` become stated ``ranks`` (its curve was not stored), ``num_captions``
    and ``num_images`` its counts; an eval variant's ``eval`` is its ``scoring``, and its counts,
    which it did not state, are the main block's (a variant scores the same queries and
    gallery); the spread's old names (``rank1_std``) are mapped (metrics.LEGACY_NAMES)."""
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    if "r1" in out:
        out["ranks"] = {LEGACY_NAMES[k][1:]: out.pop(k) for k in ("r1", "r5", "r10") if k in out}
        captions = out.pop("num_captions", None)
        out.update(num_query=captions, num_valid_query=captions, num_gallery=out.pop("num_images", None))
    if "eval" in out and "scoring" not in out:
        out["scoring"] = out.pop("eval")
    for name in ("num_query", "num_gallery"):
        out.setdefault(name, main.get(name))
    if isinstance(out.get("spread"), Mapping):
        out["spread"] = {LEGACY_NAMES.get(k, k): v for k, v in out["spread"].items()}
    return out


def _block(value: Any, slot: Slot) -> Scores | None:
    """A single block (``BlockKind.single``): only an ok result has one."""
    if value is None:
        return None
    if slot.values.get("status") != "ok":
        slot.fail("a failed result has no scores")
    return slot.read(_StoredBlock, _upgraded(value, slot.values)).scores()


def _blocks(value: Any, slot: Slot) -> Mapping[str, Scores] | None:
    """Name -> block; only an ok result has them."""
    if value is None:
        return None
    if slot.values.get("status") != "ok":
        slot.fail("a failed result has no scores")
    return {name: slot.read(_StoredBlock, _upgraded(block, slot.values), where=f"{slot.where}.{name}").scores()
            for name, block in slot.expect(value, dict).items()}


def _spread(value: Any, slot: Slot) -> Mapping[str, float] | None:
    """Sd over trials by metric (``<name>_std``), older names mapped; null for one split."""
    return None if value is None else {LEGACY_NAMES.get(k, k): v for k, v in slot.expect(value, dict).items()}


# -- results/<dataset>/<model>.json -------------------------------------------------------------


@dataclass(frozen=True)
class CellResult:
    """One cell's result. The main block's metrics are fractions in [0, 1] at the top level
    (the stable interface: ``mAP``, ``mINP``, ``cmc``, counts, ``trials``, ``spread``); they
    are None (cmc empty) when the cell failed. ``cell_key``, ``manifest_hash`` and
    ``eval_hash`` tell resume whether the result still matches the embeddings and the eval
    block. Besides the main block, a result holds the blocks of BLOCK_KINDS
    (raybench.metrics.Scores): ``text`` (on a dataset with captions: text-to-image retrieval;
    ``text_status`` is "ok", or why there is none, "no text tower"), ``variants`` (each eval
    variant of the matrix, by name) and ``settings`` (each scoring setting of the dataset, by
    name: standard, cc, sc on a clothes-changing dataset). ``i2i_rule`` says how image-to-image
    was scored when the dataset has no image queries ("leave-one-out"). A video cell's counts
    are tracklets, its ``protocol`` states the pooling (pool, frames) and ``video`` what was
    embedded."""

    model: str
    dataset: str
    status: str = key(choices=CELL_STATUSES)
    error: str | None = None
    error_kind: str | None = None  # why it failed: one of pipeline.failure.KINDS
    mAP: float | None = key(None, parse=_if_ok(_checked(float, fraction)))
    mINP: float | None = key(None, parse=_if_ok(_checked(float, fraction)))
    cmc: tuple[float, ...] = key((), parse=_if_ok(_cmc))
    num_query: int | None = key(None, parse=_if_ok(_checked(int, count)))
    num_valid_query: int | None = key(None, parse=_if_ok(_checked(int, count)))
    num_gallery: int | None = key(None, parse=_if_ok(_checked(int, count)))
    trials: tuple[Mapping[str, Any], ...] = ()
    spread: Mapping[str, float] | None = key(None, hash=False, parse=_spread)
    protocol: Mapping[str, Any] | None = key(None, hash=False)
    per_query: Mapping[str, list] | None = key(None, hash=False, repr=False)
    seconds: float = key(0.0, check=in_seconds)
    embed_seconds: float = key(0.0, check=in_seconds)
    eval_seconds: float = key(0.0, check=in_seconds)
    paradigm: str = ""
    spec_hash: str = ""
    num_params: int | None = key(None, check=count)
    skipped_images: tuple[str, ...] = ()
    #: cells embedded in one Ray Data stream with this one; above 1, embed_seconds is this
    #: cell's share of the stream (the time since the previous cell of it finished)
    stream_cells: int = 1
    device: str = ""
    cell_key: str = ""
    manifest_hash: str = ""
    eval_hash: str = ""
    text: Scores | None = key(None, hash=False, parse=_block)
    text_status: str | None = None
    i2i_rule: str | None = None
    limit: int | None = key(None, check=at_least(1))  # --limit N: the first N query identities
    random_weights: bool = False  # --random-weights: the architecture with seeded random weights
    variants: Mapping[str, Scores] | None = key(None, hash=False, parse=_blocks)
    #: a video cell: what was embedded (as its marker says; pipeline/collect.py video_record)
    video: Mapping[str, Any] | None = key(None, hash=False)
    #: the dataset's scoring settings (Protocol.settings), by name; the headline one is also the main block
    settings: Mapping[str, Scores] | None = key(None, hash=False, parse=_blocks)
    #: the shards its gallery was scored in (raybench.pipeline.shards: count, items, the nodes
    #: they ran on, restarts), None where one process scored it
    shards: Mapping[str, Any] | None = key(None, hash=False)
    #: the distractor set in its gallery (a dataset's ``distractors:``: the set's name in
    #: embeddings/, its images, where they are), None without one
    distractors: Mapping[str, Any] | None = key(None, hash=False)
    schema_version: int = key(SCHEMA_VERSION, absent=1, check=_version(SCHEMA_VERSION))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def main(self) -> Scores | None:
        """The main block (None when the cell failed)."""
        if not self.ok:
            return None
        return Scores(mAP=self.mAP, mINP=self.mINP, cmc=self.cmc, num_query=self.num_query,
                      num_valid_query=self.num_valid_query, num_gallery=self.num_gallery, spread=self.spread,
                      trials=self.trials, per_query=self.per_query, scoring=self.protocol)

    def blocks(self) -> list[tuple[BlockKind, str, Scores]]:
        """Every block but the main one, kind by kind (BLOCK_KINDS), as (kind, name, scores)."""
        out = []
        for kind in BLOCK_KINDS:
            held = getattr(self, kind.key)
            if held is None:
                continue
            out += [(kind, kind.single, held)] if kind.single else [(kind, name, s) for name, s in held.items()]
        return out

    def block(self, name: str | None) -> Scores | None:
        """The block of this name ("main" or None: the main block)."""
        if name in (None, "main"):
            return self.main
        return next((s for _, n, s in self.blocks() if n == name), None)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["cmc"], out["trials"], out["skipped_images"] = list(self.cmc), list(self.trials), list(self.skipped_images)
        for kind in BLOCK_KINDS:
            held = getattr(self, kind.key)
            if held is not None:
                out[kind.key] = scores_json(held, False) if kind.single else \
                    {name: scores_json(s, False) for name, s in held.items()}
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "result") -> "CellResult":
        return read(cls, data, where, style=RUN_FILE)

    def _check(self, fail) -> None:
        """The rules across fields, applied once ``from_json`` has read them."""
        if self.ok:
            for name in ("mAP", "mINP", "num_query", "num_valid_query", "num_gallery"):
                if getattr(self, name) is None:
                    fail(name, "missing")
            if not self.cmc:
                fail("cmc", "missing")
            if self.text_status == "ok" and self.text is None:
                fail("text", "is missing where text_status is 'ok'")
            if self.num_valid_query > self.num_query:
                fail("num_valid_query", f"is {self.num_valid_query}, more than num_query {self.num_query}")
        elif not self.error:
            fail("error", f"is empty in a {self.status} result: a failed cell says why")


# -- embeddings/<dataset>/<model>/_SUCCESS ------------------------------------------------------


@dataclass(frozen=True)
class CellMarker:
    """A committed cell's embeddings: ``key`` (spec hash + manifest hash) says which model and
    which images they are of; a reader trusts the folder only when the key is the expected one.
    ``rows``: the manifest rows stored; ``text_rows``: the captions embedded beside the images,
    None for a cell without text. ``attempt`` is the folder, beside the marker, of the attempt
    that was committed, and ``files`` its files that hold the cell (name -> bytes): the reader
    reads those and nothing else (rundir/store.py)."""

    key: str
    model: str
    dataset: str
    spec_hash: str
    manifest_hash: str
    dim: int = key(check=at_least(1))
    rows: int = key(check=count)
    num_params: int | None = key(None, check=count)
    embed_seconds: float = key(0.0, check=in_seconds)
    skipped_images: tuple[str, ...] = ()
    stream_cells: int = 1  # as CellResult.stream_cells
    device: str = ""
    written: str = ""
    text_rows: int | None = key(None, check=count)
    attempt: str = ""
    files: Mapping[str, int] = field(default_factory=dict, hash=False)
    #: a video cell: tracklets and frames embedded, the rule that chose them, the tracklets
    #: that lost frames to unreadable images (pipeline/collect.py video_record)
    video: Mapping[str, Any] | None = key(None, hash=False)
    schema_version: int = key(MARKER_VERSION, absent=1, check=_version(MARKER_VERSION))

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "skipped_images": list(self.skipped_images), "files": dict(self.files)}

    @classmethod
    def from_json(cls, data: Any, where: str = "_SUCCESS") -> "CellMarker":
        return read(cls, data, where, style=RUN_FILE)

    def _check(self, fail) -> None:
        for name, size in self.files.items():
            if "/" in name or isinstance(size, bool) or not isinstance(size, int) or size < 0:
                fail("files", f"{name!r}: {size!r}; expected a file name and its size in bytes")
        if self.schema_version >= 2 and not (self.attempt and "/" not in self.attempt and self.files):
            fail("attempt", f"is {self.attempt!r}: a version-2 marker names its attempt folder and its files")


#: What a cell's result takes from its embeddings' marker: the fields of both dataclasses,
#: known when the cell is embedded (a new one is declared on both, nowhere else).
MARKER_FIELDS = tuple(f.name for f in dataclasses.fields(CellMarker)
                      if f.name in {g.name for g in dataclasses.fields(CellResult)}
                      and f.name not in ("model", "dataset", "schema_version"))


# -- run.json -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """run.json: what ran (the resolved matrix, with each model's ``trained_on``), where, with
    which code (versions, git), its plan, and, once finished, every cell's summary row."""

    run: str
    run_id: str
    status: str = key(choices=RUN_STATUSES)
    out: str
    started: str
    matrix: Mapping[str, Any] = field(hash=False)
    previous_run_id: str | None = None
    previous_status: str | None = None  # how the previous run into this directory ended ("killed", ...)
    command: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    versions: Mapping[str, Any] = field(default_factory=dict, hash=False)
    git: Mapping[str, Any] = field(default_factory=dict, hash=False)
    cluster: Mapping[str, Any] = field(default_factory=dict, hash=False)
    pool: Mapping[str, Any] = field(default_factory=dict, hash=False)
    ray_logs: str | None = None
    plan: tuple[Mapping[str, Any], ...] = ()
    finished: str | None = None
    seconds: float | None = None
    cells: tuple[Mapping[str, Any], ...] = ()
    summary: Mapping[str, int] = field(default_factory=dict, hash=False)
    schema_version: int = key(SCHEMA_VERSION, absent=1, check=_version(SCHEMA_VERSION))

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("command", "plan", "cells"):
            out[key] = list(out[key])
        return out

    def model_specs(self) -> dict[str, Mapping[str, Any]]:
        """Model name -> its resolved spec as recorded (matrix order), then the fusions' (name,
        of, weights, paradigm "hybrid", trained_on)."""
        return {**_named(self.matrix.get("models")), **_named(self.matrix.get("fusions"))}

    def dataset_specs(self) -> dict[str, Mapping[str, Any]]:
        return _named(self.matrix.get("datasets"))

    @classmethod
    def from_json(cls, data: Any, where: str = "run.json") -> "RunRecord":
        return read(cls, data, where, style=RUN_FILE)

    def _check(self, fail) -> None:
        for name in ("models", "datasets"):
            items = self.matrix.get(name)
            if not isinstance(items, list) or not all(
                    isinstance(i, str) or (isinstance(i, Mapping) and isinstance(i.get("name"), str)) for i in items):
                fail(f"matrix.{name}", "must be a list of names or of specs with a 'name'")


def _named(items: Any) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            out[item] = {}
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            out[item["name"]] = item
    return out
