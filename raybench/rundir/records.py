"""The typed files of a run directory: a cell's result, a cell's _SUCCESS marker, run.json.

Each is a frozen dataclass with ``schema_version``, ``to_json()`` (a plain dict, the file's
content) and ``from_json(data, where)``, which checks required keys, types and ranges and raises
one ``RunFileError`` naming the file and the field. The pipeline writes these files, the planner
and the report read them, and so may a user's scripts::

    from raybench.rundir.records import CellResult
    result = CellResult.from_json(json.load(open(path)), where=path)

A file written before ``schema_version`` existed reads as version 1 (the same shape).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from raybench.errors import RaybenchError

SCHEMA_VERSION = 1
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


def protocol_block(protocol, spec) -> dict[str, Any]:
    """A result's "protocol" block: how the cell was scored (the dataset's Protocol and the
    matrix's EvalSpec). The one place it is built, for scored and failed cells alike."""
    return {"camera_filter": protocol.camera_filter, "cuhk03_metric": protocol.cuhk03_metric,
            "trials": protocol.trials, **eval_block(spec)}


def eval_block(spec) -> dict[str, Any]:
    """An EvalSpec as results state it (the protocol block's eval keys, and each eval variant's
    ``eval``): re-ranking's and query expansion's parameters only where they are on."""
    block = {"distance": spec.distance, "normalize": spec.normalize, "rerank": spec.rerank,
             "max_rank": spec.max_rank}
    if spec.rerank:
        block.update(rerank_k1=spec.rerank_k1, rerank_k2=spec.rerank_k2, rerank_lambda=spec.rerank_lambda)
    if spec.aqe:
        block.update(aqe_k=spec.aqe_k, aqe_alpha=spec.aqe_alpha, aqe_times=spec.aqe_times)
    return block


def variant_column(metric: str, variant: str) -> str:
    """How every table names an eval variant's metric: "mAP (rerank)" (the live table, and the
    report's results.md, results.csv and results.json)."""
    return f"{metric} ({variant})"


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
        value = self.get(key, _NUMBER, optional=optional)
        if value is None:
            return None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            self.fail(key, f"must be a fraction in [0, 1], got {value!r}")
        return float(value)

    def count(self, key: str, optional: bool = False) -> int | None:
        value = self.get(key, int, optional=optional)
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


# -- results/<dataset>/<model>.json -------------------------------------------------------------

#: The keys of a result's ``text`` block (text-to-image retrieval, raybench.eval.text).
TEXT_FRACTIONS = ("r1", "r5", "r10", "mAP", "mINP")
TEXT_COUNTS = ("num_captions", "num_images")


def _text_block(reader: _Reader) -> Mapping[str, Any] | None:
    block = reader.get("text", dict, default=None, optional=True)
    if block is None:
        return None
    inner = _Reader(block, f"{reader.where}: text")
    out: dict[str, Any] = {key: inner.fraction(key) for key in TEXT_FRACTIONS}
    out.update({key: inner.count(key) for key in TEXT_COUNTS})
    if not out["r1"] <= out["r5"] + 1e-9 <= out["r10"] + 2e-9:
        inner.fail("r5", f"r1 {out['r1']}, r5 {out['r5']}, r10 {out['r10']} must not decrease")
    if out["num_captions"] < 1 or out["num_images"] < 1:
        inner.fail("num_captions", "a scored text block has captions and images")
    return out


def _variants_block(reader: _Reader, ok: bool) -> Mapping[str, Mapping[str, Any]] | None:
    """``variants``: eval variant name -> its headline metrics (raybench.eval.protocol.variant_record),
    checked as the main metrics are; only an ok result has them."""
    block = reader.get("variants", dict, default=None, optional=True)
    if block is None:
        return None
    if not ok:
        reader.fail("variants", "a failed result has no variant metrics")
    out = {}
    for name, scored in block.items():
        inner = _Reader(scored, f"{reader.where}: variants.{name}")
        stated = _Reader(inner.get("eval", dict), f"{inner.where}: eval")
        for key, types in (("distance", str), ("normalize", bool), ("rerank", bool), ("max_rank", int)):
            stated.get(key, types)
        out[name] = {"mAP": inner.fraction("mAP"), "mINP": inner.fraction("mINP"), "cmc": list(_cmc(inner)),
                     "num_valid_query": inner.count("num_valid_query"),
                     "spread": inner.get("spread", dict, default=None, optional=True), "eval": stated.data}
        if not out[name]["cmc"]:
            inner.fail("cmc", "is empty in a scored variant")
    return out


@dataclass(frozen=True)
class CellResult:
    """One cell's result. Metrics are fractions in [0, 1]; they are None (cmc empty) when the
    cell failed. ``cell_key``, ``manifest_hash`` and ``eval_hash`` tell resume whether the
    result still matches the embeddings and the eval block.

    On a dataset with captions: ``text`` holds the text-to-image metrics (``TEXT_FRACTIONS``
    and ``TEXT_COUNTS``), ``text_status`` is "ok", or why there are none ("no text tower");
    both are None on an image-only dataset. ``i2i_rule`` says how image-to-image was scored
    when the dataset has no image queries ("leave-one-out").

    ``variants``: with the matrix's ``eval_variants``, each variant's name -> its mAP, mINP,
    cmc, num_valid_query, spread (over trials, or None) and ``eval`` (the eval block it was
    scored with, as ``eval_block`` states it); None without variants."""

    model: str
    dataset: str
    status: str  # CELL_STATUSES
    error: str | None = None
    error_kind: str | None = None  # why it failed: one of pipeline.failure.KINDS
    mAP: float | None = None
    mINP: float | None = None
    cmc: tuple[float, ...] = ()
    num_query: int | None = None
    num_valid_query: int | None = None
    num_gallery: int | None = None
    trials: tuple[Mapping[str, Any], ...] = ()
    spread: Mapping[str, float] | None = field(default=None, hash=False)
    protocol: Mapping[str, Any] | None = field(default=None, hash=False)
    per_query: Mapping[str, list] | None = field(default=None, hash=False, repr=False)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    eval_seconds: float = 0.0
    paradigm: str = ""
    spec_hash: str = ""
    num_params: int | None = None
    skipped_images: tuple[str, ...] = ()
    #: cells embedded in one Ray Data stream with this one; above 1, embed_seconds is this
    #: cell's share of the stream (the time since the previous cell of it finished)
    stream_cells: int = 1
    device: str = ""
    cell_key: str = ""
    manifest_hash: str = ""
    eval_hash: str = ""
    text: Mapping[str, Any] | None = field(default=None, hash=False)
    text_status: str | None = None
    i2i_rule: str | None = None
    limit: int | None = None  # --limit N: only the first N query identities of each trial
    random_weights: bool = False  # --random-weights: the architecture with seeded random weights
    variants: Mapping[str, Mapping[str, Any]] | None = field(default=None, hash=False)
    schema_version: int = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["cmc"], out["trials"], out["skipped_images"] = list(self.cmc), list(self.trials), list(self.skipped_images)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "result") -> "CellResult":
        r = _Reader(data, where)
        status = r.choice("status", CELL_STATUSES)
        ok = status == "ok"
        result = cls(
            model=r.get("model", str), dataset=r.get("dataset", str), status=status,
            error=r.get("error", str, default=None, optional=True),
            error_kind=r.get("error_kind", str, default=None, optional=True),
            mAP=r.fraction("mAP", optional=not ok), mINP=r.fraction("mINP", optional=not ok),
            cmc=_cmc(r) if ok else tuple(r.get("cmc", list, default=[], optional=True) or ()),
            num_query=r.count("num_query", optional=not ok),
            num_valid_query=r.count("num_valid_query", optional=not ok),
            num_gallery=r.count("num_gallery", optional=not ok),
            trials=tuple(r.get("trials", list, default=[], optional=True) or ()),
            spread=r.get("spread", dict, default=None, optional=True),
            protocol=r.get("protocol", dict, default=None, optional=True),
            per_query=r.get("per_query", dict, default=None, optional=True),
            seconds=r.seconds("seconds"), embed_seconds=r.seconds("embed_seconds"),
            eval_seconds=r.seconds("eval_seconds"),
            paradigm=r.get("paradigm", str, default=""), spec_hash=r.get("spec_hash", str, default=""),
            num_params=r.count("num_params", optional=True) if "num_params" in r.data else None,
            skipped_images=tuple(r.get("skipped_images", list, default=[])),
            stream_cells=r.get("stream_cells", int, default=1),
            device=r.get("device", str, default=""), cell_key=r.get("cell_key", str, default=""),
            manifest_hash=r.get("manifest_hash", str, default=""),
            eval_hash=r.get("eval_hash", str, default=""),
            text=_text_block(r), text_status=r.get("text_status", str, default=None, optional=True),
            i2i_rule=r.get("i2i_rule", str, default=None, optional=True),
            limit=r.count("limit", optional=True) if "limit" in r.data else None,
            random_weights=r.get("random_weights", bool, default=False), variants=_variants_block(r, ok),
            schema_version=r.version(),
        )
        if ok and result.text_status == "ok" and result.text is None:
            r.fail("text", "is missing where text_status is 'ok'")
        if result.limit is not None and result.limit < 1:
            r.fail("limit", f"must be at least 1, got {result.limit}")
        if not ok and not result.error:
            r.fail("error", f"is empty in a {status} result: a failed cell says why")
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
    dim: int
    rows: int
    num_params: int | None = None
    embed_seconds: float = 0.0
    skipped_images: tuple[str, ...] = ()
    stream_cells: int = 1  # as CellResult.stream_cells
    device: str = ""
    written: str = ""
    text_rows: int | None = None
    attempt: str = ""
    files: Mapping[str, int] = field(default_factory=dict, hash=False)
    schema_version: int = MARKER_VERSION

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "skipped_images": list(self.skipped_images), "files": dict(self.files)}

    @classmethod
    def from_json(cls, data: Any, where: str = "_SUCCESS") -> "CellMarker":
        r = _Reader(data, where)
        marker = cls(
            key=r.get("key", str), model=r.get("model", str), dataset=r.get("dataset", str),
            spec_hash=r.get("spec_hash", str), manifest_hash=r.get("manifest_hash", str),
            dim=r.count("dim"), rows=r.count("rows"),
            num_params=r.count("num_params", optional=True) if "num_params" in r.data else None,
            embed_seconds=r.seconds("embed_seconds"),
            skipped_images=tuple(r.get("skipped_images", list, default=[])),
            stream_cells=r.get("stream_cells", int, default=1),
            device=r.get("device", str, default=""), written=r.get("written", str, default=""),
            text_rows=r.count("text_rows", optional=True) if "text_rows" in r.data else None,
            attempt=r.get("attempt", str, default=""), files=r.get("files", dict, default={}),
            schema_version=r.version(MARKER_VERSION),
        )
        if marker.dim < 1:
            r.fail("dim", f"must be at least 1, got {marker.dim}")
        for name, size in marker.files.items():
            if "/" in name or isinstance(size, bool) or not isinstance(size, int) or size < 0:
                r.fail("files", f"{name!r}: {size!r}; expected a file name and its size in bytes")
        if marker.schema_version >= 2 and not (marker.attempt and "/" not in marker.attempt and marker.files):
            r.fail("attempt", f"is {marker.attempt!r}: a version-2 marker names its attempt folder and its files")
        return marker


# -- run.json -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """run.json: what ran (the resolved matrix, with each model's ``trained_on``), where, with
    which code (versions, git), its plan, and, once finished, every cell's summary row."""

    run: str
    run_id: str
    status: str  # RUN_STATUSES
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
    schema_version: int = SCHEMA_VERSION

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
        seconds = r.get("seconds", _NUMBER, default=None, optional=True)
        return cls(
            run=r.get("run", str), run_id=r.get("run_id", str), status=r.choice("status", RUN_STATUSES),
            out=r.get("out", str), started=r.get("started", str), matrix=matrix,
            previous_run_id=r.get("previous_run_id", str, default=None, optional=True),
            previous_status=r.get("previous_status", str, default=None, optional=True),
            command=tuple(r.get("command", list, default=[])),
            options=r.get("options", dict, default={}), versions=r.get("versions", dict, default={}),
            git=r.get("git", dict, default={}), cluster=r.get("cluster", dict, default={}),
            pool=r.get("pool", dict, default={}), ray_logs=r.get("ray_logs", str, default=None, optional=True),
            plan=tuple(r.get("plan", list, default=[])),
            finished=r.get("finished", str, default=None, optional=True),
            seconds=None if seconds is None else float(seconds),
            cells=tuple(r.get("cells", list, default=[])), summary=r.get("summary", dict, default={}),
            schema_version=r.version(),
        )


def _named(items: Any) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            out[item] = {}
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            out[item["name"]] = item
    return out
