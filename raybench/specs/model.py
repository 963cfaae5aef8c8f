"""A model spec: loader family + architecture + weights + preprocessing, named once in
configs/models.yaml (or inline in a matrix)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from raybench.errors import SpecError
from raybench.specs.schema import key, merge_over_base, positive, read

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

#: ``loader: interpolate`` in a matrix: the weights of two models mixed (raybench.derived.interpolation).
#: Named here because a single model entry may not use it: a matrix expands it to one model per alpha.
INTERPOLATE = "interpolate"


def _size(value: Any, slot) -> tuple[int, int]:
    """``size: 224`` is (224, 224); else [height, width]."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        slot.fail(f"must be [height, width] in pixels, got {value!r}")
    return (value[0], value[1])


def _crop_fraction(value: float) -> str | None:
    return None if 0 < value <= 1 else f"must be in (0, 1], got {value!r}"


@dataclass(frozen=True)
class Preprocess:
    """How raw uint8 pixels become a model's input: travels with the weights."""

    size: tuple[int, int] = key(parse=_size)  # (height, width)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = key("bilinear", choices=INTERPOLATIONS)
    resize_mode: str = key("squash", choices=RESIZE_MODES)
    #: < 1: resize to size / crop_pct first, then centre-crop to size (timm's crop_pct; the HF
    #: processors' resize-256-crop-224 is 0.875)
    crop_pct: float = key(1.0, check=_crop_fraction)
    crop_offset: str = key("round", choices=CROP_OFFSETS)

    def _check(self, fail) -> None:
        if self.crop_pct != 1 and self.resize_mode == "pad":
            fail("crop_pct", "needs resize_mode squash or shortest_crop (pad never crops)")

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
    weights: str | None = key(absent=None)  # library tag, hub id, URL, local path; None = random init
    paradigm: str = key(choices=PARADIGMS)
    preprocess: Preprocess | None = None  # None: the loader resolves the weights' own
    dim: int | None = None
    pooling: str | None = key(None, choices=POOLINGS)  # ViTs without a projection head: cls | mean | both
    precision: str = key("fp32", choices=PRECISIONS)  # autocast dtype on GPU; CPU always runs fp32
    flip: bool = False  # flip test-time augmentation: mean of the image and its mirror
    batch_size: int = key(64, check=positive)
    options: Mapping[str, Any] = key(default_factory=dict, hash=False, parse=merge_over_base)
    description: str = ""

    def spec_hash(self) -> str:
        """Hash of everything that changes the embeddings (not the name, batch size or text)."""
        keep = dataclasses.asdict(self)
        for name in ("name", "batch_size", "description"):
            keep.pop(name)
        if keep["preprocess"]:  # fields added later count only when set, so older hashes hold
            for name, default in (("crop_pct", 1.0), ("crop_offset", "round")):
                if keep["preprocess"][name] == default:
                    keep["preprocess"].pop(name)
        return _stable_hash(keep)


def _stable_hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_preprocess(data: Any, where: str, base: Preprocess | None = None) -> Preprocess:
    """A Preprocess from YAML; with ``base``, only the keys given override it."""
    return read(Preprocess, data, where, base=base)


def parse_model(data: Any, where: str, base: ModelSpec | None = None) -> ModelSpec:
    """A ModelSpec from a YAML mapping; with ``base`` (a catalog entry) keys override it, and
    its ``options`` merge under the entry's key by key."""
    if isinstance(data, Mapping) and data.get("loader") == INTERPOLATE:
        raise SpecError(f"{where}: loader {INTERPOLATE!r} is written in a matrix's models, where it expands "
                        "to one model per alpha (raybench.catalog.load_matrix), not as a single model")
    return read(ModelSpec, data, where, base=base)
