"""transformers vision towers (DINOv2, SigLIP, CLIP, ... from the Hugging Face hub).

arch names where the config comes from and weights where the weights come from: a hub id
(``facebook/dinov2-base``) or a local folder saved with ``save_pretrained``; usually the same.
Only the vision tower is built: CLIP checkpoints load into ``CLIPVisionModelWithProjection``
and SigLIP into ``SiglipVisionModel`` (option ``model_class`` names another transformers
class), so the parameter count is the image tower's.

Features: with ``pooling`` unset, the model's own embedding (``image_embeds`` when it has a
projection, else ``pooler_output``: DINOv2's normalised CLS token, SigLIP's attention pool);
with ``pooling``, raybench pools ``last_hidden_state`` (prefix tokens = tokens - patches).

Preprocessing is stated in configs/models.yaml; without it, the cached
``preprocessor_config.json`` is read (HF processors resize to ``size`` then crop
``crop_size``; raybench's ``shortest_crop`` resizes straight to the crop size).
"""

from __future__ import annotations

import json
from pathlib import Path

from raybench.errors import SpecError
from raybench.models.base import Loader, TorchEmbedder, pool_tokens
from raybench.models.weights import classify, hub_access, hub_cache_dir, hub_source
from raybench.specs import ModelSpec, Preprocess

#: checkpoints of a vision-language model load into their vision tower only
_VISION_CLASSES = {"clip": "CLIPVisionModelWithProjection", "siglip": "SiglipVisionModel"}
_HF_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _source_of(location: str | None):
    if not location:
        return None
    if classify(location) == "path":
        from raybench.models.weights import Source

        return Source("local", str(Path(location).expanduser()))
    return hub_source(location, _HF_FILES, required=("config.json",))


def source(spec: ModelSpec):
    return _source_of(spec.weights)


def default_preprocess(spec: ModelSpec) -> Preprocess:
    cfg = _preprocessor_config(spec.weights or spec.arch)
    if cfg is None:
        raise SpecError(f"model {spec.name!r}: state 'preprocess' in its spec (no cached preprocessor_config.json "
                        f"for {spec.weights or spec.arch})")
    size = cfg.get("crop_size") if cfg.get("do_center_crop") else cfg.get("size")
    if isinstance(size, dict):
        size = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
    elif isinstance(size, int):
        size = (size, size)
    return Preprocess(
        size=tuple(size),
        mean=tuple(cfg.get("image_mean", (0.5, 0.5, 0.5))),
        std=tuple(cfg.get("image_std", (0.5, 0.5, 0.5))),
        interpolation=_RESAMPLE.get(cfg.get("resample"), "bicubic"),
        resize_mode="shortest_crop" if cfg.get("do_center_crop") else "squash",
    )


def _preprocessor_config(location: str) -> dict | None:
    if classify(location) == "path":
        path = Path(location).expanduser() / "preprocessor_config.json"
        path = str(path) if path.is_file() else None
    else:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(location, "preprocessor_config.json", cache_dir=hub_cache_dir())
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
    return TorchEmbedder(spec, preprocess, model, device, forward=_forward(model, spec, preprocess))


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


LOADER = Loader(build=build, default_preprocess=default_preprocess, source=source, options=("model_class",))
