"""The Embedder protocol and what every loader family shares.

An Embedder is built once per actor and turns a batch of uint8 pixels, already resized by
``raybench.models.images`` per its ``preprocess``, into float32 features. The steps that
every torch family shares live here, once: uint8 -> float in [0, 1] -> (x - mean) / std on the
device (the only place where pixels are normalised), autocast on GPU, flip test-time
augmentation, token pooling for ViTs without a projection head, and the parameter count of
the image tower.

torch is imported inside functions only: the CLI lists models through this package without
loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

import numpy as np

from raybench.errors import SpecError
from raybench.specs import ModelSpec, Preprocess

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Option keys every family accepts: informative metadata, never passed to a library.
#: ``params``: the image tower's parameter count (shown by `raybench list models`, checked by
#: the tests); ``hf_hub``: the Hugging Face repo the library caches the weights in (lets the
#: listing say "cached" without importing torch); ``trained_on``: the dataset a supervised model
#: was trained on (the report's in-domain marks; `raybench train` writes it into model.yaml).
COMMON_OPTIONS = ("params", "hf_hub", "trained_on")


@dataclass(frozen=True)
class Source:
    """Where one model's weights live (``Loader.source``; raybench.models.weights fetches and
    caches them)."""

    kind: str  # "hub" | "url" | "local"
    location: str  # repo id, URL or path
    files: tuple[str, ...] = ()  # hub: candidate weight files, the first one present is used
    required: tuple[str, ...] = ()  # hub: files needed besides the weights (config.json)
    target: str | None = None  # url: where the downloaded file is kept

    def __str__(self) -> str:
        return {"hub": "Hugging Face repo ", "url": "", "local": "local path "}[self.kind] + self.location


@runtime_checkable
class Embedder(Protocol):
    """A model ready to embed: built once, then ``embed`` per batch."""

    spec: ModelSpec
    preprocess: Preprocess
    dim: int
    paradigm: str
    num_params: int  # the image tower only (never a text tower or a training classifier)
    device: str

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] (H x W = preprocess.size) -> float32 [N, dim]."""
        ...


def embeds_text(embedder: Any) -> bool:
    """Whether an Embedder has a text side: ``has_text`` true and ``embed_text(captions:
    list[str]) -> float32 [N, dim]`` into the same space as ``embed`` (the family's own
    tokenizer and context length; raw features, L2-normalised at scoring as for images)."""
    return bool(getattr(embedder, "has_text", False)) and callable(getattr(embedder, "embed_text", None))


def own_weights(module: Any) -> tuple[Any, dict]:
    """``module`` and its parameters and buffers by name, the tensors it holds (not copies):
    the default ``Loader.tower_weights``."""
    return module, module.state_dict(keep_vars=True)


@dataclass(frozen=True)
class Loader:
    """What a loader family registers in ``raybench.models.LOADERS``.

    build(spec, preprocess, device, pretrained) -> Embedder (device None: CUDA when present,
    else CPU): ``pretrained=False`` builds the same
    architecture (same activations, sizes and heads) with random weights, without any download.
    default_preprocess(spec) -> Preprocess: the weights' own preprocessing, no weights loaded.
    source(spec) -> Source | None: where the weights live, without importing torch (None: no
    weights, or unknown without the library). resolve_source: the same, allowed to ask the
    library (used by `raybench models fetch`, which must fetch what the library will load, not
    a guess); defaults to ``source``.
    tiny(spec) -> ModelSpec: a small model of the same family and code path with random
    weights and a small input (tests, CPU benchmarks; see ``tiny_variant``); a weight-free
    family is its own. Whatever a tiny spec names (e.g. an open_clip config) its family's
    ``build`` finds by itself, in any process.
    text(spec) -> bool: whether the model built from ``spec`` has a text tower (decided from
    the spec and the library's config, without building it): its cells on caption datasets
    embed the captions too (Embedder.embed_text). hub_preprocess: ``default_preprocess`` reads
    the weights' hub config (so --random-weights needs the spec's stated preprocessing).
    members(spec) -> (ModelSpec, ...): the models a composite spec is made of (an
    interpolation's two), each checked as a model of its own (``check_model``, the
    --random-weights rule of ``resolve_preprocess``).
    tower_weights(embedder) -> (module, {name: tensor}): the image tower as its library builds it
    and the tensors of its feature under the library's names, live (writing into them changes
    the model): what an interpolation mixes and where it writes (default: the tower and its
    state dict). Two families on one library architecture give the same names and module.
    resolve(spec) -> ModelSpec: the spec to build, for a family whose specs refer to others (an
    interpolation resolves its members' ``trained:<run>`` references); default: itself.

    What the rest of raybench needs to know of a family is declared here too, never listed
    elsewhere: ``numpy_only`` (the family never imports torch: its embedding actors skip
    torch's import and seeding, and it refuses ``flip``, which the torch families apply in
    TorchEmbedder.features); ``library``, the Python module the family builds with, imported
    only inside ``build`` (tests check that listing and planning never import it); and
    ``versioned``, the distributions whose versions run.json records for it (raybench's own
    dependencies, torch among them, are recorded for every run).
    """

    build: Callable[..., Embedder]
    default_preprocess: Callable[[ModelSpec], Preprocess]
    source: Callable[[ModelSpec], "Source | None"] = lambda spec: None
    resolve_source: Callable[[ModelSpec], "Source | None"] | None = None
    options: tuple[str, ...] = ()
    pooling: bool = False  # whether the family pools ViT tokens per the spec's ``pooling``
    tiny: Callable[[ModelSpec], ModelSpec] = lambda spec: spec
    text: Callable[[ModelSpec], bool] = lambda spec: False
    hub_preprocess: bool = False  # default_preprocess reads a hub config of the weights (network)
    members: Callable[[ModelSpec], tuple[ModelSpec, ...]] = lambda spec: ()
    tower_weights: Callable[[Embedder], tuple[Any, dict]] = lambda embedder: own_weights(embedder.tower)
    resolve: Callable[[ModelSpec], ModelSpec] = lambda spec: spec
    numpy_only: bool = False
    library: str | None = None  # e.g. "open_clip" (an import name)
    versioned: tuple[str, ...] = ()  # e.g. ("open_clip_torch",) (distribution names)

    def find_source(self, spec: ModelSpec) -> "Source | None":
        """The library's own answer where the family has one (``source`` may be a guess made
        without it, e.g. timm's ``timm/<arch>.<tag>`` repo for a tag timm keeps at a URL)."""
        return (self.resolve_source or self.source)(spec)

    def check_options(self, spec: ModelSpec) -> None:
        """Unknown options and a ``pooling`` the family would ignore are spec errors."""
        if spec.pooling and not self.pooling:
            raise SpecError(
                f"model {spec.name!r}: loader {spec.loader!r} gives the model's own feature (a projected "
                "embedding or a pooled CNN feature) and takes no 'pooling'; remove it (token pooling is for "
                "timm and hf ViTs without a projection head)"
            )
        if spec.flip and self.numpy_only:
            raise SpecError(
                f"model {spec.name!r}: loader {spec.loader!r} computes its features without torch and does "
                "not apply flip test-time augmentation; remove 'flip' (it is for the torch families)"
            )
        allowed = (*COMMON_OPTIONS, *self.options)
        unknown = sorted(set(spec.options) - set(allowed))
        if unknown:
            raise SpecError(
                f"model {spec.name!r}: unknown option {unknown[0]!r} for loader {spec.loader!r}; "
                f"allowed: {', '.join(allowed)}"
            )


#: The input of every tiny variant unless its family needs another: a 1:2 person crop, a
#: multiple of every patch size the tiny configs use.
TINY_SIZE = (64, 32)


def tiny_variant(spec: ModelSpec, size: tuple[int, int] = TINY_SIZE, **changes) -> ModelSpec:
    """``spec`` renamed ``<name>-tiny``, without weights, its preprocessing at ``size``, and
    without the options that describe the real weights (``params``, ``hf_hub``); ``changes``
    (a small ``arch``, its ``dim``, ...) come from the family's ``Loader.tiny``."""
    base = spec.preprocess or Preprocess(size=size)
    params = dict(weights=None, preprocess=replace(base, size=size),
                  options={k: v for k, v in spec.options.items() if k not in ("params", "hf_hub")})
    params.update(changes)
    return replace(spec, name=f"{spec.name}-tiny", **params)


def small_person_preprocess(spec: ModelSpec) -> Preprocess:
    """128 x 64 squash: the classic hand-crafted ReID input (weight-free models)."""
    return Preprocess(size=(128, 64), interpolation="bilinear", resize_mode="squash")


class NumpyEmbedder:
    """Base of the weight-free embedders: numpy only, on the CPU, no parameters."""

    num_params = 0
    device = "cpu"
    has_text = False

    def __init__(self, spec: ModelSpec, preprocess: Preprocess):
        self.spec, self.preprocess, self.paradigm = spec, preprocess, spec.paradigm


def check_pixels(pixels: np.ndarray, preprocess: Preprocess) -> None:
    """Embedders take exactly what ``images.load_pixels`` makes, and nothing else.

    Refusing float input is what keeps normalisation single: a normalised tensor cannot be
    passed back in to be normalised (or re-quantised) a second time.
    """
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        kind = pixels.dtype if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise TypeError(f"embed() takes uint8 pixels from raybench.models.images, got {kind}")
    height, width = preprocess.size
    if pixels.ndim != 4 or pixels.shape[1:] != (height, width, 3):
        raise ValueError(
            f"embed() takes pixels of shape [N, {height}, {width}, 3] (preprocess.size), got {list(pixels.shape)}"
        )


def pool_tokens(tokens: "torch.Tensor", pooling: str, num_prefix_tokens: int) -> "torch.Tensor":
    """ViT tokens [N, T, C] -> [N, C] (cls, mean) or [N, 2C] (both: cls then mean).

    ``mean`` averages the patch tokens only (after the prefix: class and register tokens), as
    timm's ``avg`` pool and DINOv2's linear evaluation do.
    """
    import torch

    if pooling == "cls":
        if num_prefix_tokens < 1:
            raise SpecError("pooling 'cls' needs a class token, and this model has none; use 'mean'")
        return tokens[:, 0]
    mean = tokens[:, num_prefix_tokens:].mean(dim=1)
    if pooling == "mean":
        return mean
    return torch.cat([pool_tokens(tokens, "cls", num_prefix_tokens), mean], dim=1)


def set_timm_input_size(model: Any, size: tuple[int, int]) -> None:
    """Resize a timm ViT's input (position embedding, rope) with timm's own ``set_input_size``;
    models without a fixed input size are left alone."""
    current = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if current is not None and tuple(current) != tuple(size):
        model.set_input_size(img_size=tuple(size))


def count_params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}


class TorchEmbedder:
    """The shared Embedder for every torch family.

    ``tower`` is the image tower (an nn.Module: it is moved to the device, put in eval mode and
    counted); ``forward`` maps normalised float input [N, 3, H, W] to features [N, D] (often the
    tower itself, or the tower plus a pooling step). ``text``, for a model with a text tower:
    captions -> features [N, D] in the image space, on the device (the family tokenizes); its
    modules are moved and frozen with ``text_modules`` and not counted in ``num_params``.
    """

    def __init__(self, spec: ModelSpec, preprocess: Preprocess, tower: Any, device: str | None,
                 forward: Callable[["torch.Tensor"], "torch.Tensor"] | None = None,
                 text: Callable[[list[str]], "torch.Tensor"] | None = None, text_modules: Any = None):
        import torch

        self.spec, self.preprocess, self.paradigm = spec, preprocess, spec.paradigm
        self.device = str(device or default_device())
        self.tower = tower.to(self.device).eval().requires_grad_(False)
        self._forward = forward or self.tower
        self.num_params = count_params(self.tower)
        if text_modules is not None:
            text_modules.to(self.device).eval().requires_grad_(False)
        self.text_modules = text_modules
        self._text, self.has_text = text, text is not None
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=self.device).view(shape)
        self._std = torch.tensor(preprocess.std, dtype=torch.float32, device=self.device).view(shape)
        self._autocast = _AUTOCAST.get(spec.precision) if self.device.startswith("cuda") else None
        self.dim = spec.dim if spec.dim is not None else self._probe_dim()

    def to_input(self, pixels: np.ndarray) -> "torch.Tensor":
        """uint8 [N, H, W, 3] -> normalised float32 [N, 3, H, W] on the device (as ToTensor +
        Normalize would make it, but after the uint8 transfer, which is 4x smaller)."""
        import torch

        check_pixels(pixels, self.preprocess)
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).to(torch.float32).div(255)
        return x.sub(self._mean).div(self._std)

    def features(self, x: "torch.Tensor") -> "torch.Tensor":
        """Normalised input -> float32 features [N, dim]; flip TTA averages with the mirror."""
        import torch

        enabled = self._autocast is not None
        dtype = getattr(torch, self._autocast) if enabled else None
        with torch.autocast(device_type="cuda", dtype=dtype, enabled=enabled):
            out = self._forward(x).float()
            if self.spec.flip:
                out = (out + self._forward(x.flip(3)).float()) / 2
        return out

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.features(self.to_input(pixels))
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise SpecError(
                f"model {self.spec.name!r} declares dim {self.dim} but gives features of shape "
                f"{list(out.shape)}; fix 'dim' in its spec"
            )
        return out.cpu().numpy()

    def embed_text(self, captions: list[str]) -> np.ndarray:
        """Captions -> float32 [N, dim], with the image side's autocast."""
        import torch

        if self._text is None:
            raise SpecError(f"model {self.spec.name!r} has no text tower")
        enabled = self._autocast is not None
        dtype = getattr(torch, self._autocast) if enabled else None
        with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=dtype, enabled=enabled):
            out = self._text(list(captions)).float()
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise SpecError(f"model {self.spec.name!r}: text features of shape {list(out.shape)}, "
                            f"the image features have dim {self.dim}")
        return out.cpu().numpy()

    def _probe_dim(self) -> int:
        import torch

        height, width = self.preprocess.size
        with torch.inference_mode():
            return int(self.features(torch.zeros(1, 3, height, width, device=self.device)).shape[1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, dim={self.dim}, device={self.device!r})"
