"""Frozen specs for models, datasets and matrices, and their parsing from flat YAML.

A spec is data: it names registry keys and values, never code. Validation errors name the
file, the key and the allowed values, so a typo in a matrix is a one-line fix. This module is
the schema only (it imports nothing of raybench but its errors): finding config files,
reading the catalogs and resolving a matrix's names is raybench.catalog's job.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from raybench.errors import SpecError, UnknownNameError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
#: squash: resize to H x W ignoring aspect (torchreid); shortest_crop: resize the short side,
#: centre-crop (CLIP-style; cuts heads and feet of 1:2 person crops); pad: fit inside H x W
#: keeping aspect, pad the rest with the mean colour.
RESIZE_MODES = ("squash", "shortest_crop", "pad")
#: where a centre crop starts when the margin is odd: round (torchvision's CenterCrop: open_clip,
#: timm) or floor (transformers' image processors)
CROP_OFFSETS = ("round", "floor")
#: "hybrid": a fusion of stored embeddings or an interpolation of two models' weights (neither
#: trained nor zero-shot as such; its in-domain dataset is its supervised member's)
PARADIGMS = ("supervised", "self-supervised", "language-aligned", "hybrid", "baseline")
POOLINGS = ("cls", "mean", "both")
PRECISIONS = ("fp32", "bf16", "fp16")
DISTANCES = ("euclidean", "cosine")
BAD_IMAGE_POLICIES = ("fail", "skip")

_MISSING = object()


@dataclass(frozen=True)
class Preprocess:
    """How raw uint8 pixels become a model's input: travels with the weights."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    resize_mode: str = "squash"
    #: < 1: resize to size / crop_pct first, then centre-crop to size (timm's crop_pct; the HF
    #: processors' resize-256-crop-224 is 0.875)
    crop_pct: float = 1.0
    crop_offset: str = "round"  # CROP_OFFSETS

    @property
    def pixel_key(self) -> str:
        """Images are decoded and resized once per dataset and this key, whatever the model.

        Mean and std are applied later, inside the model, so they are not part of the key,
        except in pad mode, whose border is filled with the mean colour. crop_pct and
        crop_offset appear only when not the default, so older keys stay valid.
        """
        h, w = self.size
        key = f"{h}x{w}-{self.interpolation}-{self.resize_mode}"
        if self.resize_mode == "pad":
            key += "-" + "".join(f"{round(m * 255):02x}" for m in self.mean)
        if self.crop_pct != 1.0:
            key += f"-pct{self.crop_pct:g}"
        if self.crop_offset != "round":
            key += f"-{self.crop_offset}"
        return key


@dataclass(frozen=True)
class ModelSpec:
    """A model = loader family + architecture + weights + preprocessing, named once."""

    name: str
    loader: str  # a registered loader family, or "module:attr" for one outside the package
    arch: str
    weights: str | None  # library tag, hub id, URL, local path; None = random init
    paradigm: str
    preprocess: Preprocess | None = None  # None: the loader resolves the weights' own
    dim: int | None = None
    pooling: str | None = None  # ViTs without a projection head: cls | mean | both
    precision: str = "fp32"  # autocast dtype on GPU; CPU always runs fp32
    flip: bool = False  # flip test-time augmentation: mean of the image and its mirror
    batch_size: int = 64
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    description: str = ""

    def spec_hash(self) -> str:
        """Hash of everything that changes the embeddings (not the name, batch size or text)."""
        keep = dataclasses.asdict(self)
        for key in ("name", "batch_size", "description"):
            keep.pop(key)
        if keep["preprocess"]:  # fields added later count only when set, so older hashes hold
            for key, default in (("crop_pct", 1.0), ("crop_offset", "round")):
                if keep["preprocess"][key] == default:
                    keep["preprocess"].pop(key)
        return _stable_hash(keep)


@dataclass(frozen=True)
class Protocol:
    """How a dataset is scored."""

    camera_filter: bool = True  # drop same-pid same-camera gallery items per query
    cuhk03_metric: bool = False  # the classic single-shot CUHK03 CMC
    trials: int = 1  # > 1: published splits, reported as mean and spread


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset adapter, its options, where the user's copy lives, and how it is scored."""

    name: str
    adapter: str
    layout_dir: str  # canonical folder name under $RAYBENCH_DATA
    root: str | None = None
    protocol: Protocol = Protocol()
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    stats: Mapping[str, Any] = field(default_factory=dict, hash=False)  # published statistics
    description: str = ""


#: fast-reid's average query expansion defaults (its config: TEST.AQE.QE_K, ALPHA, QE_TIME)
AQE_DEFAULTS = {"aqe_k": 5, "aqe_alpha": 3.0, "aqe_times": 1}
AQE_FIELDS = tuple(AQE_DEFAULTS)


@dataclass(frozen=True)
class EvalSpec:
    """How embeddings are compared: distance, normalisation, CMC length, and the optional
    average query expansion (before the distance) and k-reciprocal re-ranking (after it)."""

    distance: str = "euclidean"
    normalize: bool = True
    max_rank: int = 50
    rerank: bool = False
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    #: average query expansion (raybench.eval.qe): 0 is off; else every feature becomes the
    #: mean of its aqe_k most similar features (itself included) weighted by similarity **
    #: aqe_alpha, aqe_times rounds
    aqe_k: int = 0
    aqe_alpha: float = 3.0
    aqe_times: int = 1

    @property
    def aqe(self) -> bool:
        return self.aqe_k > 0

    def hash_fields(self) -> dict[str, Any]:
        """The fields an eval hash reads. The AQE fields count only when AQE is on, so an eval
        block without it hashes as it did before AQE existed (finished cells stay fresh)."""
        fields = dataclasses.asdict(self)
        if not self.aqe:
            for key in AQE_FIELDS:
                fields.pop(key)
        return fields


@dataclass(frozen=True)
class EvalVariant:
    """A named change of a matrix's eval block (``eval_variants:``): every cell is scored again
    with it from the same stored embeddings, and reported as its own column group."""

    name: str
    eval: EvalSpec


#: The loader name a fusion's cells carry (FusionSpec.as_model): never built, see pipeline/fusion.py.
FUSION = "fusion"


@dataclass(frozen=True)
class FusionSpec:
    """A fused model: per image, the concatenation of sqrt(w_i) * e_i / ||e_i||_2 over its
    members' stored embeddings (models of the same matrix), so that squared euclidean distance
    on fused vectors is the weighted sum of the members' cosine distances (times 2). Nothing is
    embedded again: the reducer fuses committed cells (raybench.pipeline.fusion)."""

    name: str
    of: tuple[str, ...]
    weights: tuple[float, ...]
    description: str = ""

    def as_model(self) -> ModelSpec:
        """The fusion as the ModelSpec its cells carry (paradigm "hybrid", loader "fusion"):
        its spec hash covers the members' names and weights; a cell key adds the members' keys."""
        return ModelSpec(name=self.name, loader=FUSION, arch="+".join(self.of), weights=None, paradigm="hybrid",
                         options={"of": list(self.of), "weights": list(self.weights)},
                         description=self.description or f"fusion of {', '.join(self.of)}")


@dataclass(frozen=True)
class MatrixSpec:
    name: str
    models: tuple[ModelSpec, ...]
    datasets: tuple[DatasetSpec, ...]
    eval: EvalSpec = EvalSpec()
    eval_variants: tuple[EvalVariant, ...] = ()
    on_bad_image: str = "fail"
    source: str = "<inline>"
    description: str = ""
    fusions: tuple[FusionSpec, ...] = ()

    def select(self, models: list[str] | None = None, datasets: list[str] | None = None) -> "MatrixSpec":
        """The sub-matrix with only the named models and datasets (unknown names raise).

        A fusion named in ``models`` brings its members; a fusion not named stays when all its
        members do."""
        fusions = self.fusions
        if models:
            by_name = {f.name: f for f in self.fusions}
            wanted = [m for m in models if m not in by_name]
            for member in (m for name in models if name in by_name for m in by_name[name].of):
                wanted += [] if member in wanted else [member]
            fusions = tuple(f for f in self.fusions if f.name in models or set(f.of) <= set(wanted))
            models = wanted
        return dataclasses.replace(
            self,
            models=_pick(self.models, models, "model in this matrix"),
            datasets=_pick(self.datasets, datasets, "dataset in this matrix"),
            fusions=fusions,
        )


def _pick(specs, names, kind):
    if not names:
        return specs
    by_name = {s.name: s for s in specs}
    for name in names:
        if name not in by_name:
            raise UnknownNameError(kind, name, by_name)
    return tuple(by_name[n] for n in names)


def _stable_hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Reading YAML


def load_yaml(path: str | Path) -> Any:
    import yaml

    path = Path(path)
    try:
        with path.open() as stream:  # a stream, so YAML's error marks name the file
            return yaml.safe_load(stream)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None


class Fields:
    """Takes typed keys out of one YAML mapping; errors say file, key and allowed values."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, Mapping):
            raise SpecError(f"{where}: expected a mapping, got {type(data).__name__}")
        self.data, self.where, self._seen = data, where, set()

    def take(self, key: str, types: type | tuple[type, ...], default: Any = _MISSING, choices=None):
        self._seen.add(key)
        if key not in self.data or self.data[key] is None and default is not _MISSING:
            if default is _MISSING:
                raise SpecError(f"{self.where}: missing key {key!r}{self._typo_of(key)}")
            return default
        value = self.data[key]
        types = types if isinstance(types, tuple) else (types,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise SpecError(f"{self.where}: key {key!r} must be {names}, got {value!r}")
        if choices is not None and value not in choices:
            raise SpecError(
                f"{self.where}: key {key!r} is {value!r}; allowed: {', '.join(map(str, choices))}"
            )
        return value

    def done(self) -> None:
        extra = sorted(set(self.data) - self._seen, key=str)
        if extra:
            close = difflib.get_close_matches(str(extra[0]), sorted(self._seen), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(sorted(self._seen))
            raise SpecError(f"{self.where}: unknown key {extra[0]!r}{hint}; allowed keys: {allowed}")

    def _typo_of(self, key: str) -> str:
        """A hint when the mapping holds a misspelling of a required key (`model:` for `models:`)."""
        others = [k for k in self.data if isinstance(k, str) and k not in self._seen]
        close = difflib.get_close_matches(key, others, n=1)
        return f" (found {close[0]!r}: a misspelling of {key!r}?)" if close else ""


def _triple(value: Any, key: str, where: str) -> tuple[float, float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise SpecError(f"{where}: key {key!r} must be a list of 3 numbers, got {value!r}")
    return tuple(float(v) for v in value)


def parse_preprocess(data: Any, where: str, base: Preprocess | None = None) -> Preprocess:
    """A Preprocess from YAML; with ``base``, only the keys given override it."""
    f = Fields(data, where)
    size = f.take("size", (list, int), default=list(base.size) if base else _MISSING)
    if isinstance(size, int):
        size = [size, size]
    if not (len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise SpecError(f"{where}: key 'size' must be [height, width] in pixels, got {size!r}")
    mean = _triple(f.take("mean", list, default=list(base.mean if base else IMAGENET_MEAN)), "mean", where)
    std = _triple(f.take("std", list, default=list(base.std if base else IMAGENET_STD)), "std", where)
    pre = Preprocess(
        size=(size[0], size[1]),
        mean=mean,
        std=std,
        interpolation=f.take("interpolation", str, base.interpolation if base else "bilinear", INTERPOLATIONS),
        resize_mode=f.take("resize_mode", str, base.resize_mode if base else "squash", RESIZE_MODES),
        crop_pct=f.take("crop_pct", float, base.crop_pct if base else 1.0),
        crop_offset=f.take("crop_offset", str, base.crop_offset if base else "round", CROP_OFFSETS),
    )
    f.done()
    if not 0 < pre.crop_pct <= 1:
        raise SpecError(f"{where}: key 'crop_pct' must be in (0, 1], got {pre.crop_pct!r}")
    if pre.crop_pct != 1 and pre.resize_mode == "pad":
        raise SpecError(f"{where}: key 'crop_pct' needs resize_mode squash or shortest_crop (pad never crops)")
    return pre


def parse_model(data: Any, where: str, base: ModelSpec | None = None) -> ModelSpec:
    """A ModelSpec from a YAML mapping; with ``base`` (a catalog entry) keys override it."""
    if isinstance(data, Mapping) and data.get("loader") == INTERPOLATE:
        raise SpecError(f"{where}: loader {INTERPOLATE!r} is written in a matrix's models, where it expands "
                        "to one model per alpha (raybench.catalog.load_matrix), not as a single model")
    f = Fields(data, where)
    d = dataclasses.asdict(base) if base else {}

    def take(key, types, default=_MISSING, choices=None):
        return f.take(key, types, d.get(key, default), choices)

    name = take("name", str)
    pre_data = f.take("preprocess", dict, default=None)
    base_pre = base.preprocess if base else None
    if pre_data is not None:
        preprocess = parse_preprocess(pre_data, f"{where}: preprocess", base_pre)
    else:
        preprocess = base_pre
    spec = ModelSpec(
        name=name,
        loader=take("loader", str),
        arch=take("arch", str),
        weights=take("weights", (str, type(None)), None),
        paradigm=take("paradigm", str, choices=PARADIGMS),
        preprocess=preprocess,
        dim=take("dim", (int, type(None)), None),
        pooling=take("pooling", (str, type(None)), None, (*POOLINGS, None)),
        precision=take("precision", str, "fp32", PRECISIONS),
        flip=take("flip", bool, False),
        batch_size=take("batch_size", int, 64),
        options=_options(f, d),
        description=take("description", str, ""),
    )
    f.done()
    if spec.batch_size <= 0:
        raise SpecError(f"{where}: key 'batch_size' must be positive, got {spec.batch_size}")
    return spec


def _options(f: Fields, base: Mapping[str, Any]) -> dict:
    """An entry's options; over a base entry's (the catalog entry an inline one names), key by
    key, for models and datasets alike: an inline entry adds or changes options, never drops one."""
    return {**base.get("options", {}), **f.take("options", dict, {})}


def parse_dataset(data: Any, where: str, base: DatasetSpec | None = None) -> DatasetSpec:
    f = Fields(data, where)
    d = dataclasses.asdict(base) if base else {}

    def take(key, types, default=_MISSING, choices=None):
        return f.take(key, types, d.get(key, default), choices)

    proto_base = d.get("protocol", {})
    proto_data = f.take("protocol", dict, default={})
    pf = Fields(proto_data, f"{where}: protocol")
    protocol = Protocol(
        camera_filter=pf.take("camera_filter", bool, proto_base.get("camera_filter", True)),
        cuhk03_metric=pf.take("cuhk03_metric", bool, proto_base.get("cuhk03_metric", False)),
        trials=pf.take("trials", int, proto_base.get("trials", 1)),
    )
    pf.done()
    spec = DatasetSpec(
        name=take("name", str),
        adapter=take("adapter", str),
        layout_dir=take("layout_dir", str, ""),
        root=take("root", (str, type(None)), None),
        protocol=protocol,
        options=_options(f, d),
        stats=dict(take("stats", dict, {})),
        description=take("description", str, ""),
    )
    f.done()
    return spec


def parse_eval(data: Any, where: str, base: EvalSpec | None = None) -> EvalSpec:
    """An EvalSpec from YAML; with ``base`` (a variant's matrix eval block), only the keys
    given override it."""
    base = base or EvalSpec()
    f = Fields(data, where)
    spec = EvalSpec(
        distance=f.take("distance", str, base.distance, DISTANCES),
        normalize=f.take("normalize", bool, base.normalize),
        max_rank=f.take("max_rank", int, base.max_rank),
        rerank=f.take("rerank", bool, base.rerank),
        rerank_k1=f.take("rerank_k1", int, base.rerank_k1),
        rerank_k2=f.take("rerank_k2", int, base.rerank_k2),
        rerank_lambda=f.take("rerank_lambda", float, base.rerank_lambda),
        **_parse_aqe(f.take("aqe", (dict, bool), None), f"{where}: aqe", base),
    )
    f.done()
    if spec.max_rank < 1:
        raise SpecError(f"{where}: key 'max_rank' must be at least 1, got {spec.max_rank}")
    return spec


def parse_fusion(data: Any, where: str, models: tuple[str, ...]) -> FusionSpec:
    """One entry of a matrix's ``fusions:``; ``models``: the matrix's model names."""
    f = Fields(data, where)
    name = f.take("name", str)
    of = f.take("of", list)
    weights = f.take("weights", list, [1.0] * len(of))
    description = f.take("description", str, "")
    f.done()
    if len(of) < 2 or not all(isinstance(m, str) for m in of) or len(set(of)) != len(of):
        raise SpecError(f"{where}: key 'of' must list two or more different model names, got {of!r}")
    for member in of:
        if member not in models:
            raise UnknownNameError(f"model of this matrix ({where}: key 'of')", member, models)
    if len(weights) != len(of) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights):
        raise SpecError(f"{where}: key 'weights' must be {len(of)} positive numbers (one per model of 'of'), "
                        f"got {weights!r}")
    return FusionSpec(name=name, of=tuple(of), weights=tuple(float(w) for w in weights), description=description)


def _parse_aqe(value: Any, where: str, base: EvalSpec) -> dict[str, Any]:
    """``aqe:`` -> the EvalSpec's aqe_* fields. Absent: the base's; false: off; true: fast-reid's
    defaults; a mapping {k, alpha, times}: those keys over the base's AQE (when on) or the
    defaults."""
    if value is None:
        return {key: getattr(base, key) for key in AQE_FIELDS}
    if value is False:
        return {**AQE_DEFAULTS, "aqe_k": 0}
    start = {key: getattr(base, key) for key in AQE_FIELDS} if base.aqe else dict(AQE_DEFAULTS)
    if value is True:
        return start
    f = Fields(value, where)
    out = {"aqe_k": f.take("k", int, start["aqe_k"]), "aqe_alpha": f.take("alpha", float, start["aqe_alpha"]),
           "aqe_times": f.take("times", int, start["aqe_times"])}
    f.done()
    if out["aqe_k"] < 1 or out["aqe_times"] < 1:
        raise SpecError(f"{where}: keys 'k' and 'times' must be at least 1, got {out['aqe_k']} and {out['aqe_times']}")
    if not (math.isfinite(out["aqe_alpha"]) and out["aqe_alpha"] >= 0):
        raise SpecError(f"{where}: key 'alpha' must be a number >= 0, got {out['aqe_alpha']!r}")
    return out


#: A variant's name becomes a column suffix ("mAP (rerank)"): a word, and not the main figures'.
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESERVED_VARIANT_NAMES = ("main",)


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
        twin = "the matrix's eval block" if spec == base else next(
            (f"variant {v.name!r}" for v in variants if v.eval == spec), None)
        if twin:
            raise SpecError(f"{at} {name!r}: scores exactly as {twin}; give the eval keys it changes")
        variants.append(EvalVariant(name, spec))
    return tuple(variants)


def parse_entries(data: Any, where: str, parse, kind: str) -> dict:
    """A catalog file's content (name -> fields) -> name -> spec, with ``parse`` per entry."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a mapping of {kind} name -> fields")
    out = {}
    for name, fields in data.items():
        if not isinstance(fields, Mapping):
            raise SpecError(f"{where}: {kind} {name!r}: expected a mapping of fields")
        out[name] = parse({"name": name, **fields}, f"{where}: {kind} {name!r}")
    return out


# ---------------------------------------------------------------------------------------------
# Trained runs

#: ``trained:<run>`` in a matrix: a finished `raybench train` run (its folder's model.yaml).
TRAINED_PREFIX = "trained:"
#: The loader of such a reference. Parsing never reads the run: it may live only on the
#: cluster's storage. raybench.models.resolve_model swaps in the run's own entry where the
#: model is built (and the driver does so before it plans the cells).
TRAINED = "trained"
#: What an inline ``{name: trained:<run>, ...}`` entry may not set: the run decides them.
TRAINED_FIXED = ("loader", "arch", "weights")
#: A run folder's model: one models.yaml-style entry beside its weights (`raybench train` writes it).
MODEL_FILE = "model.yaml"


def trained_reference(ref: str) -> ModelSpec:
    """``trained:<run>`` -> ModelSpec(loader="trained", arch=<run>), named after the run folder.

    ``<run>`` is a run name or a path to a run folder or its model.yaml; the spec's name is the
    folder's name, so a matrix names the same model on every machine. The paradigm says what
    raybench's recipes train until the run's model.yaml replaces it.
    """
    run = ref.removeprefix(TRAINED_PREFIX)
    folder = Path(run)
    if folder.name == MODEL_FILE:
        folder = folder.parent
    if not folder.name:
        raise SpecError(f"{ref!r}: expected trained:<run name or run folder>")
    return ModelSpec(name=folder.name, loader=TRAINED, arch=run, weights=None, paradigm="supervised")


# ---------------------------------------------------------------------------------------------
# Weight interpolations

#: ``loader: interpolate`` in a matrix: the weights of two models of one architecture mixed as
#: (1 - alpha) * first + alpha * second (WiSE-FT). raybench.catalog expands an entry into one
#: model per alpha; raybench.models.interpolate builds them.
INTERPOLATE = "interpolate"
#: A member's fields that never change its embeddings, left out of the interpolation's spec
#: (and so of its hash), as ModelSpec.spec_hash leaves them out of a model's.
_MEMBER_DROPPED = ("batch_size", "description")


@dataclass(frozen=True)
class Interpolation:
    """A matrix's ``loader: interpolate`` entry, before its two members are looked up."""

    name: str
    members: tuple[Any, Any]  # as the matrix gives them: names (or inline mappings)
    alphas: tuple[float, ...]  # 0: the first member, 1: the second
    paradigm: str = "hybrid"
    batch_size: int | None = None  # None: the first member's
    description: str = ""


def parse_interpolation(data: Any, where: str) -> Interpolation:
    """An Interpolation from YAML: ``models`` lists exactly two models (start, end), ``alpha`` is
    a number or a list of numbers in [0, 1]."""
    f = Fields(data, where)
    f.take("loader", str, choices=(INTERPOLATE,))
    entry = Interpolation(
        name=f.take("name", str),
        members=tuple(f.take("models", list)),
        alphas=_alphas(f.take("alpha", (float, list)), where),
        paradigm=f.take("paradigm", str, "hybrid", PARADIGMS),
        batch_size=f.take("batch_size", (int, type(None)), None),
        description=f.take("description", str, ""),
    )
    f.done()
    if len(entry.members) != 2:
        raise SpecError(f"{where}: key 'models' must list exactly two models (start, end), "
                        f"got {len(entry.members)}")
    if entry.batch_size is not None and entry.batch_size <= 0:
        raise SpecError(f"{where}: key 'batch_size' must be positive, got {entry.batch_size}")
    return entry


def _alphas(value: Any, where: str) -> tuple[float, ...]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SpecError(f"{where}: key 'alpha' is an empty list")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise SpecError(f"{where}: key 'alpha' takes numbers in [0, 1] (0: the first model, "
                            f"1: the second), got {v!r}")
    alphas = tuple(float(v) for v in values)
    if len(set(alphas)) < len(alphas):
        raise SpecError(f"{where}: key 'alpha' lists {alphas} with a value twice")
    return alphas


def alpha_name(name: str, alpha: float) -> str:
    """``<name>@<alpha>``: osnet-wise@0.25, osnet-wise@0, osnet-wise@1."""
    text = repr(float(alpha))
    return f"{name}@{text.removesuffix('.0')}"


def interpolation_spec(entry: Interpolation, alpha: float, members: tuple[ModelSpec, ModelSpec]) -> ModelSpec:
    """The model ``entry`` gives at ``alpha`` (see with_members); its preprocessing is the
    members' (resolved by the loader, which checks that they agree)."""
    first, second = members
    spec = ModelSpec(
        name=alpha_name(entry.name, alpha),
        loader=INTERPOLATE,
        arch=first.arch,
        weights=None,
        paradigm=entry.paradigm,
        batch_size=entry.batch_size or first.batch_size,
        options={"alpha": alpha},
        description=entry.description or f"{first.name} -> {second.name} at alpha {alpha:g}",
    )
    return with_members(spec, members)


def with_members(spec: ModelSpec, members: tuple[ModelSpec, ModelSpec]) -> ModelSpec:
    """An interpolation's spec holding ``members``: their specs in ``options`` (so its hash
    covers both members' weights and an actor builds it without a catalog), and the first
    member's arch, dim, precision and flip, since it runs the first member's forward."""
    first = members[0]
    return dataclasses.replace(spec, arch=first.arch, dim=first.dim, precision=first.precision, flip=first.flip,
                               options={**spec.options, "members": [member_record(m) for m in members]})


def member_record(spec: ModelSpec) -> dict:
    """A member as an interpolation's options hold it: its spec as plain data."""
    record = dataclasses.asdict(spec)
    for key in _MEMBER_DROPPED:
        record.pop(key)
    return record


def interpolation_members(spec: ModelSpec) -> tuple[ModelSpec, ModelSpec]:
    """The two members of an interpolation's spec (the inverse of member_record)."""
    members = spec.options.get("members")
    if not (isinstance(members, (list, tuple)) and len(members) == 2):
        raise SpecError(f"model {spec.name!r}: option 'members' must hold exactly two model specs")
    return tuple(_model_from_record(m, spec.name) for m in members)


def _model_from_record(record: Mapping[str, Any], owner: str) -> ModelSpec:
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    if not isinstance(record, Mapping) or not {"name", "loader", "arch", "paradigm"} <= set(record) \
            or set(record) - fields:
        raise SpecError(f"model {owner!r}: option 'members' holds {record!r}, not a model spec")
    pre = record.get("preprocess")
    if pre is not None:
        pre = Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in pre.items()})
    return ModelSpec(**{**record, "preprocess": pre, "options": dict(record.get("options") or {})})
