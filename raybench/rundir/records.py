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
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from raybench.errors import RaybenchError
from raybench.metrics import LEGACY_NAMES, Scores

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


# -- checking one JSON object -------------------------------------------------------------------

_MISSING = object()
_NUMBER = (int, float)


class _Reader:
    """Takes typed fields out of one JSON object; the first problem raises RunFileError."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, Mapping):
            raise RunFileError(where, "<top>", f"expected a JSON object, got {type(data).__name__}")
        self.data, self.where = data, where

    def fail(self, key: str, reason: str):
        raise RunFileError(self.where, key, reason)

    def get(self, key: str, types, default: Any = _MISSING, optional: bool = False):
        """The value of ``key`` checked against ``types``; None passes when ``optional``."""
        if key not in self.data:
            if default is _MISSING:
                self.fail(key, "missing")
            return default
        value = self.data[key]
        if value is None and optional:
            return None
        types = types if isinstance(types, tuple) else (types,)
        is_bool = isinstance(value, bool)
        if not isinstance(value, types) or (is_bool and bool not in types):
            names = " or ".join(t.__name__ for t in types) + (" or null" if optional else "")
            self.fail(key, f"must be {names}, got {value!r}")
        return value

    def fraction(self, key: str, optional: bool = False) -> float | None:
        value = self.get(key, _NUMBER, default=None if optional else _MISSING, optional=optional)
        if value is None:
            return None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            self.fail(key, f"must be a fraction in [0, 1], got {value!r}")
        return float(value)

    def count(self, key: str, optional: bool = False) -> int | None:
        value = self.get(key, int, default=None if optional else _MISSING, optional=optional)
        if value is not None and value < 0:
            self.fail(key, f"must be a count >= 0, got {value!r}")
        return value

    def seconds(self, key: str) -> float:
        value = self.get(key, _NUMBER, default=0.0)
        if not (math.isfinite(value) and value >= 0):
            self.fail(key, f"must be seconds >= 0, got {value!r}")
        return float(value)

    def version(self, latest: int = SCHEMA_VERSION) -> int:
        version = self.get("schema_version", int, default=1)
        if version > latest:
            self.fail("schema_version", f"is {version}; this raybench reads up to {latest} "
                                        "(upgrade raybench to read this run)")
        return version

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        value = self.get(key, str, default=default)
        if value not in choices:
            self.fail(key, f"is {value!r}; allowed: {', '.join(choices)}")
        return value


def _cmc(reader: _Reader, key: str = "cmc") -> tuple[float, ...]:
    values = reader.get(key, list)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, _NUMBER) or not (math.isfinite(v) and 0 <= v <= 1):
            reader.fail(key, f"rank {i + 1} is {v!r}; CMC values are fractions in [0, 1]")
        if i and v < values[i - 1] - 1e-9:
            reader.fail(key, f"decreases at rank {i + 1} ({values[i - 1]!r} -> {v!r}); a CMC never decreases")
    return tuple(float(v) for v in values)


def _read(how: Callable[[_Reader, str, Mapping[str, Any]], Any]) -> dict:
    """A field's metadata: how ``from_json`` reads it (``how(reader, key, context)``); a field
    without it is read by its annotation (``_read_fields``)."""
    return {"read": how}


def _read_fields(cls, reader: _Reader, **context) -> dict[str, Any]:
    """The dataclass ``cls``'s fields out of one JSON object, in declaration order: each by its
    ``_read`` metadata, else by its annotation (str, int, float, bool, tuples from lists,
    mappings, each optional where it may be None) with its default where the key is absent.
    What a file must hold is then written once, on the field."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        how = f.metadata.get("read")
        values[f.name] = how(reader, f.name, context) if how else _by_annotation(reader, f, hints[f.name])
    return values


def _by_annotation(reader: _Reader, f: dataclasses.Field, hint) -> Any:
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    origin = typing.get_origin(base) or base
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = f.default_factory()  # type: ignore[misc]
    else:
        default = _MISSING
    types = {tuple: list, float: _NUMBER}.get(origin, dict if origin in (Mapping, dict) else origin)
    value = reader.get(f.name, types, default=default, optional=optional)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return float(value) if origin is float and value is not None else value


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
    shows ``live`` of each block. Adding a kind is a CellResult field and a line in BLOCK_KINDS."""

    key: str
    title: str
    about: str
    single: str | None = None
    shown: tuple[str, ...] = ("mAP", "R1")
    live: tuple[str, ...] = ("mAP",)
    absent: str | None = None
    heatmap: str | None = None


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
              "block (the matrix's `eval_variants`)."),
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


def _spread(reader: _Reader) -> Mapping[str, float] | None:
    spread = reader.get("spread", dict, default=None, optional=True)
    if spread is None:
        return None
    return {LEGACY_NAMES.get(k, k): v for k, v in spread.items()}


def _scores(data: Any, where: str, counts: Mapping[str, int] | None = None) -> Scores:
    """One block (``scores_json``'s shape), checked as the main metrics are. ``counts``: the
    main block's query and gallery counts, for blocks written before blocks stated them (eval
    variants score the main block's queries and gallery). A block written before text blocks
    had a CMC curve (``r1``, ``r5``, ``r10``, ``num_captions``, ``num_images``) keeps its stated
    ranks."""
    r = _Reader(data, where)
    legacy_text = "r1" in r.data or r.data.get("ranks")
    counts = counts or {}
    if legacy_text:
        if "r1" in r.data:
            ranks = {int(LEGACY_NAMES[k][1:]): r.fraction(k) for k in ("r1", "r5", "r10")}
        else:  # such a block as ``scores_json`` writes it again
            ranks = {int(k): float(v) for k, v in r.get("ranks", dict).items()}
            ranks = {k: ranks.get(k) for k in (1, 5, 10)}
            if None in ranks.values():
                r.fail("ranks", "must state ranks 1, 5 and 10")
        if not ranks[1] <= ranks[5] + 1e-9 <= ranks[10] + 2e-9:
            r.fail("r5", f"r1 {ranks[1]}, r5 {ranks[5]}, r10 {ranks[10]} must not decrease")
        queries = r.count("num_captions" if "num_captions" in r.data else "num_query")
        scores = Scores(mAP=r.fraction("mAP"), mINP=r.fraction("mINP"), cmc=(), num_query=queries,
                        num_valid_query=queries, num_gallery=r.count("num_images" if "num_images" in r.data else "num_gallery"),
                        ranks=ranks)
    else:
        def count(key):
            return r.count(key) if key in r.data or key not in counts else counts[key]

        scores = Scores(
            mAP=r.fraction("mAP"), mINP=r.fraction("mINP"), cmc=_cmc(r), num_query=count("num_query"),
            num_valid_query=r.count("num_valid_query"), num_gallery=count("num_gallery"), spread=_spread(r),
            trials=tuple(r.get("trials", list, default=[])),
            per_query=r.get("per_query", dict, default=None, optional=True),
            scoring=r.get("scoring", dict, default=None, optional=True) or r.get("eval", dict, default=None),
        )
        if not scores.cmc:
            r.fail("cmc", "is empty in a scored block")
    if scores.num_valid_query > scores.num_query:
        r.fail("num_valid_query", f"is {scores.num_valid_query}, more than num_query {scores.num_query}")
    if scores.num_query < 1 or scores.num_gallery < 1:
        r.fail("num_query", "a scored block has queries and a gallery")
    return scores


def _block(reader: _Reader, key: str, context: Mapping[str, Any]) -> Scores | None:
    """A single block (``BlockKind.single``): only an ok result has one."""
    data = reader.get(key, dict, default=None, optional=True)
    if data is None:
        return None
    if not context["ok"]:
        reader.fail(key, "a failed result has no scores")
    return _scores(data, f"{reader.where}: {key}")


def _blocks(reader: _Reader, key: str, context: Mapping[str, Any]) -> Mapping[str, Scores] | None:
    """Name -> block; only an ok result has them."""
    data = reader.get(key, dict, default=None, optional=True)
    if data is None:
        return None
    if not context["ok"]:
        reader.fail(key, "a failed result has no scores")
    counts = {k: reader.data.get(k) for k in ("num_query", "num_gallery") if isinstance(reader.data.get(k), int)}
    return {name: _scores(block, f"{reader.where}: {key}.{name}", counts) for name, block in data.items()}


# -- results/<dataset>/<model>.json -------------------------------------------------------------

_IF_OK = {
    "fraction": _read(lambda r, key, c: r.fraction(key, optional=not c["ok"])),
    "count": _read(lambda r, key, c: r.count(key, optional=not c["ok"])),
}
_CMC = _read(lambda r, key, c: _cmc(r) if c["ok"] else tuple(r.get(key, list, default=[], optional=True) or ()))
_COUNT = _read(lambda r, key, c: r.count(key, optional=True) if key in r.data else None)
_SECONDS = _read(lambda r, key, c: r.seconds(key))
_VERSION = _read(lambda r, key, c: r.version())
_BLOCK, _BLOCKS = _read(_block), _read(_blocks)
_SPREAD = _read(lambda r, key, c: _spread(r))


@dataclass(frozen=True)
class CellResult:
    """One cell's result. The main block's metrics are fractions in [0, 1] at the top level
    (the stable interface: ``mAP``, ``mINP``, ``cmc``, counts, ``trials``, ``spread``); they
    are None (cmc empty) when the cell failed. ``cell_key``, ``manifest_hash`` and
    ``eval_hash`` tell resume whether the result still matches the embeddings and the eval
    block. Besides the main block, a result holds the blocks of BLOCK_KINDS
    (raybench.metrics.Scores): ``text`` (on a dataset with captions: text-to-image retrieval;
    ``text_status`` is "ok", or why there is none, "no text tower") and ``variants`` (each eval
    variant of the matrix, by name). ``i2i_rule`` says how image-to-image was scored when the
    dataset has no image queries ("leave-one-out")."""

    model: str
    dataset: str
    status: str = field(metadata=_read(lambda r, key, c: r.choice(key, CELL_STATUSES)))
    error: str | None = None
    error_kind: str | None = None  # why it failed: one of pipeline.failure.KINDS
    mAP: float | None = field(default=None, metadata=_IF_OK["fraction"])
    mINP: float | None = field(default=None, metadata=_IF_OK["fraction"])
    cmc: tuple[float, ...] = field(default=(), metadata=_CMC)
    num_query: int | None = field(default=None, metadata=_IF_OK["count"])
    num_valid_query: int | None = field(default=None, metadata=_IF_OK["count"])
    num_gallery: int | None = field(default=None, metadata=_IF_OK["count"])
    trials: tuple[Mapping[str, Any], ...] = ()
    spread: Mapping[str, float] | None = field(default=None, hash=False, metadata=_SPREAD)
    protocol: Mapping[str, Any] | None = field(default=None, hash=False)
    per_query: Mapping[str, list] | None = field(default=None, hash=False, repr=False)
    seconds: float = field(default=0.0, metadata=_SECONDS)
    embed_seconds: float = field(default=0.0, metadata=_SECONDS)
    eval_seconds: float = field(default=0.0, metadata=_SECONDS)
    paradigm: str = ""
    spec_hash: str = ""
    num_params: int | None = field(default=None, metadata=_COUNT)
    skipped_images: tuple[str, ...] = ()
    #: cells embedded in one Ray Data stream with this one; above 1, embed_seconds is this
    #: cell's share of the stream (the time since the previous cell of it finished)
    stream_cells: int = 1
    device: str = ""
    cell_key: str = ""
    manifest_hash: str = ""
    eval_hash: str = ""
    text: Scores | None = field(default=None, hash=False, metadata=_BLOCK)
    text_status: str | None = None
    i2i_rule: str | None = None
    limit: int | None = field(default=None, metadata=_COUNT)  # --limit N: the first N query identities
    random_weights: bool = False  # --random-weights: the architecture with seeded random weights
    variants: Mapping[str, Scores] | None = field(default=None, hash=False, metadata=_BLOCKS)
    schema_version: int = field(default=SCHEMA_VERSION, metadata=_VERSION)

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
        r = _Reader(data, where)
        result = cls(**_read_fields(cls, r, ok=r.get("status", str, default="") == "ok"))
        ok = result.ok
        if ok and result.text_status == "ok" and result.text is None:
            r.fail("text", "is missing where text_status is 'ok'")
        if result.limit is not None and result.limit < 1:
            r.fail("limit", f"must be at least 1, got {result.limit}")
        if not ok and not result.error:
            r.fail("error", f"is empty in a {result.status} result: a failed cell says why")
        if ok and not result.cmc:
            r.fail("cmc", "is empty in an ok result")
        if ok and result.num_valid_query > result.num_query:
            r.fail("num_valid_query", f"is {result.num_valid_query}, more than num_query {result.num_query}")
        return result


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
    dim: int = field(metadata=_read(lambda r, key, c: r.count(key)))
    rows: int = field(metadata=_read(lambda r, key, c: r.count(key)))
    num_params: int | None = field(default=None, metadata=_COUNT)
    embed_seconds: float = field(default=0.0, metadata=_SECONDS)
    skipped_images: tuple[str, ...] = ()
    stream_cells: int = 1  # as CellResult.stream_cells
    device: str = ""
    written: str = ""
    text_rows: int | None = field(default=None, metadata=_COUNT)
    attempt: str = ""
    files: Mapping[str, int] = field(default_factory=dict, hash=False)
    schema_version: int = field(default=MARKER_VERSION, metadata=_read(lambda r, key, c: r.version(MARKER_VERSION)))

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "skipped_images": list(self.skipped_images), "files": dict(self.files)}

    @classmethod
    def from_json(cls, data: Any, where: str = "_SUCCESS") -> "CellMarker":
        r = _Reader(data, where)
        marker = cls(**_read_fields(cls, r))
        if marker.dim < 1:
            r.fail("dim", f"must be at least 1, got {marker.dim}")
        for name, size in marker.files.items():
            if "/" in name or isinstance(size, bool) or not isinstance(size, int) or size < 0:
                r.fail("files", f"{name!r}: {size!r}; expected a file name and its size in bytes")
        if marker.schema_version >= 2 and not (marker.attempt and "/" not in marker.attempt and marker.files):
            r.fail("attempt", f"is {marker.attempt!r}: a version-2 marker names its attempt folder and its files")
        return marker


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
    status: str = field(metadata=_read(lambda r, key, c: r.choice(key, RUN_STATUSES)))
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
    schema_version: int = field(default=SCHEMA_VERSION, metadata=_VERSION)

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
        r = _Reader(data, where)
        matrix = r.get("matrix", dict)
        for key in ("models", "datasets"):
            items = matrix.get(key)
            if not isinstance(items, list) or not all(
                    isinstance(i, str) or (isinstance(i, Mapping) and isinstance(i.get("name"), str)) for i in items):
                r.fail(f"matrix.{key}", "must be a list of names or of specs with a 'name'")
        return cls(**_read_fields(cls, r))


def _named(items: Any) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            out[item] = {}
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            out[item["name"]] = item
    return out
