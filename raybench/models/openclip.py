"""open_clip models (CLIP, SigLIP2, PE-Core, ...): the image tower's projected embedding.

arch is an open_clip model name (``ViT-B-16``), weights an open_clip pretrained tag
(``openai``), a URL or a local checkpoint. The feature is ``encode_image(x)`` without
normalisation, i.e. ``model.visual(x)``; only the image tower is kept and counted.

Two things open_clip leaves to its caller, done here:
- QuickGELU: ``create_model("ViT-B-16", pretrained="openai")`` builds plain GELU and only warns,
  although OpenAI's weights were trained with QuickGELU. The tag's own ``quick_gelu`` is applied
  (override with option ``quick_gelu``).
- Input size: a native open_clip ViT is built at the preprocess size and open_clip resamples
  its position embedding when it loads the weights; timm-backed towers (SigLIP2, PE-Core)
  ignore open_clip's image size, so their trunk is resized with timm's ``set_input_size``.
"""

from __future__ import annotations

import pickle
from dataclasses import replace

from raybench.errors import SpecError
from raybench.models.base import Loader, TorchEmbedder, default_device, set_timm_input_size
from raybench.models.weights import (
    classify, file_source, hub_access, hub_cache_dir, hub_source, local_file, unsafe_checkpoint,
)
from raybench.specs import ModelSpec, Preprocess

_RESIZE_MODES = {"shortest": "shortest_crop", "squash": "squash", "longest": "pad"}
_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _tag(spec: ModelSpec) -> str | None:
    return spec.weights if spec.weights and classify(spec.weights) == "name" else None


def _model_config(arch: str) -> dict:
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise SpecError(f"unknown open_clip model {arch!r}; see open_clip.list_models()")
    return cfg


def _tag_config(spec: ModelSpec) -> dict:
    import open_clip

    tag = _tag(spec)
    if tag is None:
        return {}
    cfg = open_clip.get_pretrained_cfg(spec.arch, tag)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(spec.arch)) or "none"
        raise SpecError(f"model {spec.name!r}: open_clip has no tag {tag!r} for {spec.arch!r} (known: {known})")
    return cfg


def default_preprocess(spec: ModelSpec) -> Preprocess:
    """open_clip's own: the tower's image size and the tag's mean/std/interpolation/resize mode."""
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    cfg = merge_preprocess_dict(asdict(PreprocessCfg()), _tag_config(spec))
    size = _model_config(spec.arch)["vision_cfg"]["image_size"]
    height, width = (size, size) if isinstance(size, int) else size
    return Preprocess(
        size=(height, width),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg["interpolation"],
        resize_mode=_RESIZE_MODES[cfg["resize_mode"]],
    )


def source(spec: ModelSpec):
    """Without torch: a URL or path, or the hub repo named by option ``hf_hub``."""
    if _tag(spec) is None:
        return file_source(spec, "openclip")
    hub = spec.options.get("hf_hub")
    return _hub(hub) if hub else None


def resolve_source(spec: ModelSpec):
    if _tag(spec) is None:
        return file_source(spec, "openclip")
    hub = _tag_config(spec).get("hf_hub")
    return _hub(hub) if hub else None


def _hub(hf_hub: str):
    """open_clip's naming: 'org/repo/' means its default file (safetensors first), and
    'org/repo/file.bin' that file (its .safetensors twin first)."""
    src = hub_source(hf_hub, _HF_FILES)
    if src.files != _HF_FILES:
        name = src.files[0]
        twin = (name[:-4] + ".safetensors",) if name.endswith((".bin", ".pth")) else ()
        src = replace(src, files=(*twin, name))
    return src


def build(spec: ModelSpec, preprocess: Preprocess, device: str | None, pretrained: bool = True):
    import open_clip

    vision_cfg = _model_config(spec.arch)["vision_cfg"]
    timm_tower = "timm_model_name" in vision_cfg
    device = device or default_device()
    kwargs = dict(
        device=device,  # open_clip moves the model itself (a no-op on a meta device)
        force_quick_gelu=bool(spec.options.get("quick_gelu", _tag_config(spec).get("quick_gelu", False))),
        force_image_size=None if timm_tower else preprocess.size,
        pretrained_text=False,
        cache_dir=hub_cache_dir(),
    )
    if not (pretrained and spec.weights):
        model = open_clip.create_model(spec.arch, pretrained=None, **kwargs)
    elif _tag(spec):
        with hub_access(spec, resolve_source(spec)):
            model = open_clip.create_model(spec.arch, pretrained=spec.weights, **kwargs)
    else:
        path = local_file(spec, file_source(spec, "openclip"))
        try:  # open_clip reads it with torch.load(weights_only=True)
            model = open_clip.create_model(spec.arch, pretrained=str(path), **kwargs)
        except (pickle.UnpicklingError, EOFError) as exc:
            raise unsafe_checkpoint(path, exc) from None
    visual = model.visual
    if timm_tower:
        set_timm_input_size(visual.trunk, preprocess.size)
    return TorchEmbedder(spec, preprocess, visual, device)


LOADER = Loader(
    build=build,
    default_preprocess=default_preprocess,
    source=source,
    resolve_source=resolve_source,
    options=("quick_gelu",),
)
