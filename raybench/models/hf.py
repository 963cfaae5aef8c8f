"""transformers vision towers (DINOv2, SigLIP, CLIP, ... from the Hugging Face hub).

arch names where the config comes from and weights where the weights come from: a hub id
(``facebook/dinov2-base``) or a local folder saved with ``save_pretrained``; usually the same.
Only the vision tower is built: CLIP checkpoints load into ``CLIPVisionModelWithProjection``
and SigLIP into ``SiglipVisionModel`` (option ``model_class`` names another transformers
class), so the parameter count is the image tower's.

Text (option ``text: true``, CLIP and SigLIP checkpoints): the checkpoint's text tower
(``CLIPTextModelWithProjection``'s ``text_embeds``, ``SiglipTextModel``'s ``pooler_output``:
what ``CLIPModel``/``SiglipModel.get_text_features`` give) on captions tokenized by the repo's
own tokenizer, padded as the family was trained (``_TEXT``: CLIP to the longest caption,
SigLIP to ``max_length``), truncated at the tokenizer's context length. The option is stated,
not guessed from the config, so planning a run reads no file.

Features: with ``pooling`` unset, the model's own embedding (``image_embeds`` when it has a
projection, else ``pooler_output``: DINOv2's normalised CLS token, SigLIP's attention pool);
with ``pooling``, raybench pools ``last_hidden_state`` (prefix tokens = tokens - patches).

Preprocessing is stated in configs/models.yaml; without it, the repo's
``preprocessor_config.json`` is read (from the cache, else downloaded with the same bounded
network rule as weights; `raybench models fetch` caches it with the weights). The HF processors' geometry maps exactly onto raybench's
(``default_preprocess``): ``size {height, width}`` is squash; ``size {shortest_edge: S}`` plus
a square ``crop_size`` C is shortest_crop at C with crop_pct C / S (DINOv2: 256 then 224,
crop_pct 0.875) and crop_offset floor (their centre crop floors an odd margin). raybench's
pixels equal the processors' PIL backend; the torchvision backend (transformers 5's default)
resizes tensors with its own antialiasing, a few grey levels apart.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from raybench.errors import SpecError
from raybench.models.base import TINY_SIZE, Loader, Source, TorchEmbedder, default_device, pool_tokens, tiny_variant
from raybench.models.weights import classify, hub_access, hub_cache_dir, hub_source
from raybench.specs import ModelSpec, Preprocess

#: checkpoints of a vision-language model load into their vision tower only
_VISION_CLASSES = {"clip": "CLIPVisionModelWithProjection", "siglip": "SiglipVisionModel"}
#: model_type -> (text tower class, its feature, the padding the family was trained with)
_TEXT = {"clip": ("CLIPTextModelWithProjection", "text_embeds", "longest"),
         "siglip": ("SiglipTextModel", "pooler_output", "max_length")}
_HF_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_PROCESSOR = "preprocessor_config.json"


def _source_of(location: str | None, processor: bool = False):
    """``processor``: the spec states no preprocess, so the repo's processor config is needed
    too (cached with the weights by `raybench models fetch`)."""
    if not location:
        return None
    if classify(location) == "path":
        return Source("local", str(Path(location).expanduser()))
    required = ("config.json", _PROCESSOR) if processor else ("config.json",)
    return hub_source(location, _HF_FILES, required=required)


def source(spec: ModelSpec):
    return _source_of(spec.weights, processor=spec.preprocess is None)


def default_preprocess(spec: ModelSpec) -> Preprocess:
    location = spec.weights or spec.arch
    cfg = _preprocessor_config(location)
    if cfg is None and classify(location) != "path":
        cfg = _download_processor_config(spec, location)
    if cfg is None:
        raise SpecError(f"model {spec.name!r}: state 'preprocess' in its spec ({location} has no {_PROCESSOR})")
    return preprocess_from_processor(cfg, f"model {spec.name!r}")


def _download_processor_config(spec: ModelSpec, repo: str) -> dict | None:
    """The hub repo's processor config, fetched under the weights' network rule (a probe
    bounded in seconds, else the error naming the model, source and fetch command); None when
    the repo has none."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError

    with hub_access(spec, _source_of(repo, processor=True)):
        try:
            path = hf_hub_download(repo, _PROCESSOR, cache_dir=hub_cache_dir())
        except EntryNotFoundError as exc:
            if isinstance(exc, FileNotFoundError):  # not cached (offline), not "absent from the repo"
                raise
            return None
    return json.loads(Path(path).read_text())


def preprocess_from_processor(cfg: dict, where: str) -> Preprocess:
    """The Preprocess that reproduces a transformers image processor's config exactly."""
    resample = cfg.get("resample", 3)
    if resample not in _RESAMPLE:
        raise SpecError(f"{where}: processor resample {resample!r} (PIL code) has no raybench interpolation; "
                        f"state 'preprocess' in its spec")
    crop = _hw(cfg.get("crop_size")) if cfg.get("do_center_crop") else None
    # a bare int is a shortest edge for processors that crop (transformers' default_to_square=False)
    size = (None, cfg["size"]) if crop and isinstance(cfg.get("size"), int) else _hw(cfg.get("size"))
    geometry = {"resize_mode": "squash"}
    if size[0] is None:  # shortest_edge: aspect kept, then a centre crop
        edge = size[1]
        if crop is None or crop[0] != crop[1]:
            raise SpecError(f"{where}: processor resizes the shortest edge to {edge} and then "
                            f"{'crops ' + str(crop) if crop else 'keeps any aspect'}, which no fixed input "
                            "size reproduces; state 'preprocess'")
        geometry = {"resize_mode": "shortest_crop", "crop_pct": _crop_pct(crop[0], edge), "crop_offset": "floor"}
        size = crop
    elif crop and crop != size:
        raise SpecError(f"{where}: processor squashes to {size} then crops {crop}; state 'preprocess'")
    normalise = cfg.get("do_normalize", True)
    return Preprocess(
        size=size,
        mean=tuple(cfg.get("image_mean", (0.5, 0.5, 0.5))) if normalise else (0.0, 0.0, 0.0),
        std=tuple(cfg.get("image_std", (0.5, 0.5, 0.5))) if normalise else (1.0, 1.0, 1.0),
        interpolation=_RESAMPLE[resample],
        **geometry,
    )


def _hw(size) -> tuple:
    """(height, width), or (None, edge) for {shortest_edge: edge}."""
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict) and "height" in size:
        return size["height"], size["width"]
    if isinstance(size, dict) and "shortest_edge" in size:
        return None, size["shortest_edge"]
    raise SpecError(f"processor size {size!r} is not height/width or shortest_edge; state 'preprocess'")


def _crop_pct(crop: int, edge: int) -> float:
    """crop / edge, nudged down by an ulp where floor(crop / pct) would miss edge."""
    pct = crop / edge
    while math.floor(crop / pct) < edge:
        pct = math.nextafter(pct, 0.0)
    return pct


def _preprocessor_config(location: str) -> dict | None:
    if classify(location) == "path":
        path = Path(location).expanduser() / _PROCESSOR
        path = str(path) if path.is_file() else None
    else:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(location, _PROCESSOR, cache_dir=hub_cache_dir())
    return json.loads(Path(path).read_text()) if isinstance(path, str) else None


def build(spec: ModelSpec, preprocess: Preprocess, device: str | None, pretrained: bool = True):
    import transformers

    with hub_access(spec, _source_of(spec.arch)):
        config = transformers.AutoConfig.from_pretrained(spec.arch, cache_dir=hub_cache_dir())
    name = spec.options.get("model_class") or _VISION_CLASSES.get(config.model_type, "AutoModel")
    cls = getattr(transformers, name, None)
    if cls is None:
        raise SpecError(f"model {spec.name!r}: transformers has no class {name!r}")
    if pretrained and spec.weights:
        with hub_access(spec, source(spec)):
            model = cls.from_pretrained(spec.weights, cache_dir=hub_cache_dir())
    else:
        vision = config.vision_config if name != "AutoModel" and hasattr(config, "vision_config") else config
        model = cls.from_config(vision) if name == "AutoModel" else cls(vision)
    if not has_text(spec):
        return TorchEmbedder(spec, preprocess, model, device, forward=_forward(model, spec, preprocess))
    encode, tower = _text_side(spec, config, pretrained, device or default_device())
    return TorchEmbedder(spec, preprocess, model, device, forward=_forward(model, spec, preprocess),
                         text=encode, text_modules=tower)


def has_text(spec: ModelSpec) -> bool:
    return bool(spec.options.get("text", False))


def _text_side(spec: ModelSpec, config, pretrained: bool, device: str):
    """(captions -> features, the text tower) of a CLIP or SigLIP checkpoint."""
    import transformers

    if config.model_type not in _TEXT:
        raise SpecError(f"model {spec.name!r}: option text is for CLIP and SigLIP checkpoints, "
                        f"{spec.arch} is a {config.model_type!r} model")
    name, output, padding = _TEXT[config.model_type]
    cls = getattr(transformers, name)
    location = spec.weights if pretrained and spec.weights else spec.arch
    with hub_access(spec, _source_of(location)):
        tower = cls.from_pretrained(location, cache_dir=hub_cache_dir()) if pretrained and spec.weights \
            else cls(config.text_config)
        tokenizer = transformers.AutoTokenizer.from_pretrained(location, cache_dir=hub_cache_dir())

    def encode(captions: list[str]):
        tokens = tokenizer(captions, padding=padding, truncation=True, return_tensors="pt").to(device)
        return getattr(tower(**tokens), output)

    return encode, tower


def _forward(model, spec: ModelSpec, preprocess: Preprocess):
    import inspect

    kwargs = {}
    if "interpolate_pos_encoding" in inspect.signature(model.forward).parameters:
        kwargs["interpolate_pos_encoding"] = True  # a no-op at the native size
    patch = getattr(model.config, "patch_size", None)
    height, width = preprocess.size

    def pooled(x):
        out = model(pixel_values=x, **kwargs)
        tokens = out.last_hidden_state
        return pool_tokens(tokens, spec.pooling, tokens.shape[1] - (height // patch) * (width // patch))

    def own(x):
        out = model(pixel_values=x, **kwargs)
        feature = getattr(out, "image_embeds", None)
        if feature is None:
            feature = getattr(out, "pooler_output", None)
        if feature is None:
            raise SpecError(f"model {spec.name!r}: {type(model).__name__} has no pooled output; set 'pooling'")
        return feature

    if spec.pooling and not patch:
        raise SpecError(f"model {spec.name!r}: pooling needs a ViT config with patch_size")
    return pooled if spec.pooling else own


def tiny(spec: ModelSpec) -> ModelSpec:
    """A random tiny DINOv2 or SigLIP vision model saved like a hub folder (see save_tiny)."""
    folder = save_tiny("siglip" if "siglip" in spec.arch else "dinov2")
    width = 32 * (2 if spec.pooling == "both" else 1)
    size = (56, 28) if "dinov2" in spec.arch else TINY_SIZE  # multiples of the patch: 14, 16
    return tiny_variant(spec, size, arch=str(folder), weights=str(folder), dim=width)


def save_tiny(kind: str, folder: str | Path | None = None) -> Path:
    """A random tiny ``dinov2`` or ``siglip`` vision model, saved with ``save_pretrained``
    (config + safetensors) into ``folder`` (default: a new temporary folder)."""
    import tempfile

    import torch
    import transformers

    configs = {
        "dinov2": lambda: transformers.Dinov2Model(transformers.Dinov2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            image_size=56, patch_size=14)),
        "siglip": lambda: transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            image_size=32, patch_size=16)),
    }
    folder = Path(folder or tempfile.mkdtemp(prefix=f"raybench-tiny-{kind}-"))
    torch.manual_seed(0)
    configs[kind]().save_pretrained(folder)
    return folder


LOADER = Loader(build=build, default_preprocess=default_preprocess, source=source, options=("model_class", "text"),
                pooling=True, tiny=tiny, text=has_text, hub_preprocess=True, library="transformers",
                versioned=("transformers",))
