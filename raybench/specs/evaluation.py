"""How embeddings are compared (a matrix's ``eval:`` block) and the named changes of it that
score every cell again (``eval_variants:``)."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from raybench.errors import SpecError
from raybench.specs.schema import Group, Slot, at_least, key, read

DISTANCES = ("euclidean", "cosine")
#: How a video tracklet's frame embeddings become one (raybench.eval.tracklets).
POOLS = ("mean", "max")
#: Which frames of a tracklet: ``all``, or ``evenly:N`` (torchreid's test sampling: N frames at
#: a stride of len // N from the first; a shorter tracklet repeats its last frame up to N).
FRAMES_RULE = re.compile(r"all|evenly:([1-9][0-9]*)")


def frames_count(rule: str) -> int | None:
    """N of an ``evenly:N`` frames rule; None for ``all``."""
    found = FRAMES_RULE.fullmatch(rule)
    return int(found.group(1)) if found and found.group(1) else None


def frames_rule(value: str) -> str | None:
    """The check of a frames rule (``frames:`` in an eval block, ``embed_frames:`` on a dataset)."""
    return None if FRAMES_RULE.fullmatch(value) else f"must be 'all' or 'evenly:N' (N >= 1, e.g. evenly:15), got {value!r}"

#: fast-reid's average query expansion defaults (its config: TEST.AQE.QE_K, ALPHA, QE_TIME)
AQE_DEFAULTS = {"aqe_k": 5, "aqe_alpha": 3.0, "aqe_times": 1}
AQE_FIELDS = tuple(AQE_DEFAULTS)


def _non_negative(value: float) -> str | None:
    return None if math.isfinite(value) and value >= 0 else f"must be a number >= 0, got {value!r}"


@dataclass(frozen=True)
class _AqeKeys:
    """The mapping form of ``aqe:``."""

    k: int
    alpha: float = key(check=_non_negative)
    times: int = 1

    def _check(self, fail) -> None:
        if self.k < 1 or self.times < 1:
            fail("", f"keys 'k' and 'times' must be at least 1, got {self.k} and {self.times}")


def _parse_aqe(value: Any, slot: Slot) -> dict[str, Any]:
    """``aqe:`` -> the EvalSpec's aqe_* fields. false: off; true: fast-reid's defaults; a mapping
    {k, alpha, times}: those keys over the base's AQE (when on) or the defaults. (Absent: the
    base's.)"""
    slot.expect(value, dict, bool)
    if value is False:
        return {**AQE_DEFAULTS, "aqe_k": 0}
    start = dict(slot.base) if slot.base["aqe_k"] > 0 else dict(AQE_DEFAULTS)
    if value is True:
        return start
    keys = slot.read(_AqeKeys, value, {"k": start["aqe_k"], "alpha": start["aqe_alpha"], "times": start["aqe_times"]})
    return {"aqe_k": keys.k, "aqe_alpha": keys.alpha, "aqe_times": keys.times}


#: ``aqe: true | false | {k, alpha, times}``: one key for the three aqe_* fields
AQE = Group("aqe", _parse_aqe)

#: Keys that say where a cell is scored, never what: no eval hash reads them, and a variant is
#: scored on the matrix's shards (raybench.eval.shard).
PLACEMENT_FIELDS = ("shards", "shard_memory")
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
          "TIB": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def _parse_shards(value: Any, slot: Slot) -> int | str:
    """``shards: auto | N``."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    slot.fail(f"must be 'auto' or a number of shards >= 1, got {value!r}")


def _parse_bytes(value: Any, slot: Slot) -> int:
    """A memory size: bytes, or a number with a unit (``4GB``, ``512MB``, ``1.5GiB``)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    found = _SIZE.fullmatch(value) if isinstance(value, str) else None
    unit = found.group(2).upper() if found else ""
    if not found or unit not in _UNITS or float(found.group(1)) <= 0:
        slot.fail(f"must be a memory size such as 4GB, 512MB or 1.5GiB (units: {', '.join(_UNITS)}), got {value!r}")
    return int(float(found.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class EvalSpec:
    """How embeddings are compared: distance, normalisation, CMC length, and the optional
    average query expansion (before the distance) and k-reciprocal re-ranking (after it)."""

    distance: str = key("euclidean", choices=DISTANCES)
    normalize: bool = True
    max_rank: int = key(50, check=at_least(1))
    rerank: bool = False
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    #: average query expansion (raybench.eval.qe): 0 is off; else every feature becomes the
    #: mean of its aqe_k most similar features (itself included) weighted by similarity **
    #: aqe_alpha, aqe_times rounds
    aqe_k: int = key(0, group=AQE)
    aqe_alpha: float = key(3.0, group=AQE)
    aqe_times: int = key(1, group=AQE)
    #: video datasets (a manifest of tracklets): each tracklet's frame embeddings pooled into
    #: one, by their mean or element-wise max, over ``frames`` (all, or evenly:N as torchreid's
    #: test loader takes them), before normalisation and distance; image datasets ignore both
    pool: str = key("mean", choices=POOLS)
    frames: str = key("all", check=frames_rule)
    #: how many shards a cell's gallery is scored in (raybench.eval.shard): "auto" (as many as
    #: shard_memory asks for: every study-sized gallery stays one) or N
    shards: int | str = key("auto", parse=_parse_shards)
    #: the memory one shard's process may use, in bytes (YAML: 4GB, 512MB, 1.5GiB)
    shard_memory: int = key(4 * 10**9, parse=_parse_bytes)

    @property
    def aqe(self) -> bool:
        return self.aqe_k > 0

    def hash_fields(self) -> dict[str, Any]:
        """The fields an eval hash reads. The AQE fields count only when AQE is on, and the
        pooling fields only away from their defaults (what an image dataset means), so an eval
        block without them hashes as it did before they existed (finished cells stay fresh); the
        placement fields never (sharding changes no score)."""
        fields = dataclasses.asdict(self)
        for name in PLACEMENT_FIELDS:
            fields.pop(name)
        if not self.aqe:
            for name in AQE_FIELDS:
                fields.pop(name)
        for name, default in POOLING_DEFAULTS.items():
            if fields[name] == default:
                fields.pop(name)
        return fields


#: The pooling fields' defaults: the mean over every frame (and, for an image, the image).
POOLING_DEFAULTS = {"pool": "mean", "frames": "all"}


@dataclass(frozen=True)
class EvalVariant:
    """A named change of a matrix's eval block (``eval_variants:``): every cell is scored again
    with it from the same stored embeddings, and reported as its own column group."""

    name: str
    eval: EvalSpec


def parse_eval(data: Any, where: str, base: EvalSpec | None = None) -> EvalSpec:
    """An EvalSpec from YAML; with ``base`` (a variant's matrix eval block), only the keys
    given override it."""
    return read(EvalSpec, data, where, base=base)


#: A variant's name becomes a column suffix ("mAP (rerank)"): a word, and not the main figures'.
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: A variant's name names its block's columns ("mAP (rerank)"): not the main block's, nor a
#: single block's (raybench.rundir.records.BLOCK_KINDS: "t2i"; a test keeps the two in step).
RESERVED_VARIANT_NAMES = ("main", "t2i")


def parse_eval_variants(data: Any, where: str, base: EvalSpec) -> tuple[EvalVariant, ...]:
    """``eval_variants:``: a list of ``{name: ..., <eval keys>}``, each key over ``base`` (the
    matrix's eval block) as parse_eval reads it. Names are unique words; a variant that scores
    exactly as the main eval block or as an earlier variant is an error (it would add nothing)."""
    if not isinstance(data, list):
        raise SpecError(f"{where}: expected a list of {{name: ..., <eval keys>}}, got {type(data).__name__}")
    variants: list[EvalVariant] = []
    for i, item in enumerate(data):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise SpecError(f"{at}: expected a mapping with a 'name' and the eval keys it changes, got {item!r}")
        name = item["name"]
        if not VARIANT_NAME.fullmatch(name) or name in RESERVED_VARIANT_NAMES:
            raise SpecError(f"{at}: name {name!r} must be a word of letters, digits, '_', '.' or '-' "
                            f"(not {', '.join(map(repr, RESERVED_VARIANT_NAMES))})")
        if any(v.name == name for v in variants):
            raise SpecError(f"{at}: variant name {name!r} is listed twice")
        spec = parse_eval({k: v for k, v in item.items() if k != "name"}, f"{at} {name!r}", base)
        moved = [f for f in PLACEMENT_FIELDS if getattr(spec, f) != getattr(base, f)]
        if moved:
            raise SpecError(f"{at} {name!r}: key {moved[0]!r} belongs to the matrix's eval block: every variant "
                            "is scored on the same shards as the main block")
        twin = "the matrix's eval block" if spec == base else next(
            (f"variant {v.name!r}" for v in variants if v.eval == spec), None)
        if twin:
            raise SpecError(f"{at} {name!r}: scores exactly as {twin}; give the eval keys it changes")
        variants.append(EvalVariant(name, spec))
    return tuple(variants)
