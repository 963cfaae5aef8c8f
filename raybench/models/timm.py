"""timm models (DINOv2, PE-Spatial, any timm backbone): the backbone's features.

arch is a timm architecture (``vit_base_patch14_dinov2``) and weights its pretrained tag
(``lvd142m``), as timm splits ``arch.tag``; or a URL or local checkpoint. The classifier is
removed (``num_classes=0``; option ``model_kwargs`` passes other ``create_model`` arguments,
e.g. ``{num_classes: 1024}`` keeps PE-Core's projection head).

Features: with ``pooling`` unset, timm's own pooled pre-logits (``model(x)``). With ``pooling``
(ViTs without a projection head), the tokens of ``forward_features`` (after the final norm) are
pooled by raybench: ``cls``, ``mean`` of the patch tokens, or ``both`` concatenated.
A preprocess size other than the pretrained one resizes the position embedding (and rope) with
timm's ``set_input_size`` after the weights are loaded, so 1:2 person inputs need no crop.
"""

from __future__ import annotations

from raybench.errors import SpecError
from raybench.models.base import (TINY_SIZE, Loader, Source, TorchEmbedder, pool_tokens, set_timm_input_size,
                                  tiny_variant)
from raybench.models.weights import classify, file_source, hub_access, hub_cache_dir, hub_source, local_file
from raybench.specs import ModelSpec, Preprocess

_HF_FILES = ("model.safetensors", "pytorch_model.bin")
#: timm crop modes -> raybench resize modes
_RESIZE_MODES = {"center": "shortest_crop", "squash": "squash", "border": "pad"}


def _tag(spec: ModelSpec) -> str | None:
    return spec.weights if spec.weights and classify(spec.weights) == "name" else None


def _timm_name(spec: ModelSpec) -> str:
    tag = _tag(spec)
    return f"{spec.arch}.{tag}" if tag else spec.arch


def _pretrained_cfg(spec: ModelSpec):
    from timm.models import get_pretrained_cfg, is_model

    if not is_model(spec.arch):
        raise SpecError(f"model {spec.name!r}: unknown timm architecture {spec.arch!r}; see timm.list_models()")
    cfg = get_pretrained_cfg(_timm_name(spec))
    if cfg is None:
        raise SpecError(f"model {spec.name!r}: timm has no pretrained tag {_timm_name(spec)!r}; "
                        "see timm.list_models(pretrained=True)")
    return cfg


def default_preprocess(spec: ModelSpec) -> Preprocess:
    """timm's pretrained config: input size, mean/std, interpolation, crop mode and crop_pct
    (timm's eval transform resizes to floor(size / crop_pct) before its centre crop, and so
    does raybench's pixel stage)."""
    cfg = _pretrained_cfg(spec)
    _, height, width = cfg.input_size
    resize_mode = _RESIZE_MODES.get(cfg.crop_mode or "center", "shortest_crop")
    return Preprocess(
        size=(height, width),
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        interpolation=cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic", "nearest") else "bicubic",
        resize_mode=resize_mode,
        crop_pct=1.0 if resize_mode == "pad" else float(cfg.crop_pct or 0.875),  # timm's DEFAULT_CROP_PCT
    )


def source(spec: ModelSpec):
    """Without torch: timm keeps hub weights at ``timm/<arch>.<tag>`` (option ``hf_hub`` overrides)."""
    if _tag(spec) is None:
        return file_source(spec, "timm")
    return hub_source(spec.options.get("hf_hub") or f"timm/{_timm_name(spec)}", _HF_FILES)


def resolve_source(spec: ModelSpec):
    """timm's own answer: its hub repo, or for the few tags timm keeps at a plain URL (I-JEPA,
    legacy SE-ResNets, GC ViT) that URL and the file timm's download caches it as."""
    if _tag(spec) is None:
        return file_source(spec, "timm")
    cfg = _pretrained_cfg(spec)
    if cfg.hf_hub_id:
        return hub_source(cfg.hf_hub_id, _HF_FILES)
    return _url_source(cfg.url) if isinstance(cfg.url, str) and cfg.url else None


def _url_source(url: str) -> Source:
    """timm downloads a URL tag into the cache_dir it is given (raybench's hub cache when
    RAYBENCH_WEIGHTS is set), else torch.hub's checkpoints folder, named by the URL's basename."""
    import os
    from urllib.parse import urlparse

    import torch

    folder = hub_cache_dir() or os.path.join(torch.hub.get_dir(), "checkpoints")
    return Source("url", url, target=os.path.join(folder, os.path.basename(urlparse(url).path)))


def build(spec: ModelSpec, preprocess: Preprocess, device: str | None, pretrained: bool = True):
    import timm

    kwargs = {"num_classes": 0, **spec.options.get("model_kwargs", {})}
    if not (pretrained and spec.weights):
        model = timm.create_model(_timm_name(spec), pretrained=False, **kwargs)
    elif _tag(spec):
        with hub_access(spec, resolve_source(spec)):
            model = timm.create_model(_timm_name(spec), pretrained=True, cache_dir=hub_cache_dir(), **kwargs)
    else:
        path = local_file(spec, file_source(spec, "timm"))
        model = timm.create_model(spec.arch, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    set_timm_input_size(model, preprocess.size)
    forward = _pooled(model, spec.pooling) if spec.pooling else None
    return TorchEmbedder(spec, preprocess, model, device, forward=forward)


def _pooled(model, pooling: str):
    prefix = getattr(model, "num_prefix_tokens", None)
    if prefix is None or not hasattr(model, "forward_features"):
        raise SpecError(f"pooling {pooling!r} needs a ViT with tokens; this timm model has none (unset pooling)")
    return lambda x: pool_tokens(model.forward_features(x), pooling, prefix)


def tiny(spec: ModelSpec) -> ModelSpec:
    """The same timm class with two narrow blocks (``model_kwargs``), at an input that is a
    multiple of its patch."""
    width = 96  # DINOv2-g's SwiGLU needs an even hidden size: int(96 * 2.66667) = 256
    dim = width * (2 if spec.pooling == "both" else 1)
    kwargs = {"depth": 2, "embed_dim": width, "num_heads": 2}
    size = (56, 28) if "patch14" in spec.arch else TINY_SIZE
    return tiny_variant(spec, size, options={"model_kwargs": kwargs}, dim=dim if spec.pooling else None)


LOADER = Loader(
    build=build,
    default_preprocess=default_preprocess,
    source=source,
    resolve_source=resolve_source,
    options=("model_kwargs",),
    pooling=True,
    tiny=tiny,
    library="timm",
    versioned=("timm",),
)
