"""open_clip models (CLIP, SigLIP2, PE-Core, ...): the image tower's projected embedding.

arch is an open_clip model name (``ViT-B-16``), weights an open_clip pretrained tag
(``openai``), a URL or a local checkpoint. The feature is ``encode_image(x)`` without
normalisation, i.e. ``model.visual(x)``; only the image tower is counted. The text tower is
kept too (option ``text: false`` drops it): captions are tokenized by open_clip's own
tokenizer for the architecture (``open_clip.get_tokenizer(arch)``, the model's context length)
and embedded with ``model.encode_text`` without normalisation, as images are; scoring
L2-normalises both sides, as open_clip's retrieval evaluation does.

raybench adds three small open_clip architectures of its own (``TINY_CONFIGS``: random-weight
stand-ins for tests, CPU benchmarks and the CLIP-ReID smoke recipes). They are registered
through open_clip's own config mechanism by ``model_config`` the first time one is named, so
any process (a Ray actor, a fresh `raybench run` of a model trained on one) builds them.

Two things open_clip leaves to its caller, done here:
- QuickGELU: ``create_model("ViT-B-16", pretrained="openai")`` builds plain GELU and only warns,
  although OpenAI's weights were trained with QuickGELU. The tag's own ``quick_gelu`` is applied
  (override with option ``quick_gelu``).
- Input size: a native open_clip ViT is built at the preprocess size and open_clip resamples
  its position embedding when it loads the weights; timm-backed towers (SigLIP2, PE-Core)
  ignore open_clip's image size, so their trunk is resized with timm's ``set_input_size``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import tempfile
from dataclasses import replace
from pathlib import Path

from raybench.errors import SpecError
from raybench.models.base import Loader, TorchEmbedder, default_device, set_timm_input_size, tiny_variant
from raybench.models.weights import (
    classify, file_source, hub_access, hub_cache_dir, hub_source, local_file, unsafe_checkpoint,
)
from raybench.specs import ModelSpec, Preprocess

_RESIZE_MODES = {"shortest": "shortest_crop", "squash": "squash", "longest": "pad"}
_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

#: A native ViT (CLIP, CLIP-ReID) and two timm-backed towers like SigLIP2 (MAP pool, no
#: projection; timm's own tiny test ViT) and PE-Core (the Eva class, timm head as projection).
#: Their text towers take CLIP's BPE vocabulary (the tokenizer ships with open_clip, so tiny
#: models embed captions offline; see ``_tokenizer``).
_TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY_CONFIGS = {
    "raybench-tiny-ViT": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": _TINY_TEXT,
    },
    "raybench-tiny-SigLIP": {
        "embed_dim": 96,
        "custom_text": True,
        "vision_cfg": {"image_size": 160, "timm_model_name": "test_vit3", "timm_model_pretrained": False,
                       "timm_pool": "map", "timm_proj": "none"},
        "text_cfg": _TINY_TEXT,
    },
    "raybench-tiny-PE": {
        "embed_dim": 32,
        "custom_text": True,
        "vision_cfg": {"image_size": 384, "timm_model_name": "vit_pe_core_tiny_patch16_384",
                       "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": None},
        "text_cfg": _TINY_TEXT,
    },
}


def register_tiny_configs() -> None:
    """Add TINY_CONFIGS to open_clip's model configs, once per process. open_clip reads
    architectures from JSON files into its registry; the folder they are written to is not
    needed afterwards (a rescan skips a path that is gone and keeps what it read)."""
    import open_clip

    missing = {k: v for k, v in TINY_CONFIGS.items() if open_clip.get_model_config(k) is None}
    if not missing:
        return
    with tempfile.TemporaryDirectory(prefix="raybench-open-clip-") as folder:
        for name, cfg in missing.items():
            (Path(folder) / f"{name}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(folder)


def model_config(arch: str) -> dict | None:
    """open_clip's config of ``arch`` (None: open_clip has no such model); raybench's tiny
    architectures are registered on first use, so every builder goes through here."""
    import open_clip

    if arch in TINY_CONFIGS:
        register_tiny_configs()
    return open_clip.get_model_config(arch)


def _tag(spec: ModelSpec) -> str | None:
    return spec.weights if spec.weights and classify(spec.weights) == "name" else None


def _model_config(arch: str) -> dict:
    cfg = model_config(arch)
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


@contextlib.contextmanager
def _random_weights_expected():
    """open_clip warns on the root logger that a model has random weights; here they were asked
    for (``weights: null``, --random-weights, rehearse), so that line is not shown."""
    def keep(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


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
        with _random_weights_expected():
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
    if not has_text(spec):
        return TorchEmbedder(spec, preprocess, visual, device)
    tokenizers = []  # made on the first captions: building the image side never needs it

    def encode(captions: list[str]):
        if not tokenizers:
            tokenizers.append(_tokenizer(spec))
        return model.encode_text(tokenizers[0](captions).to(device))

    return TorchEmbedder(spec, preprocess, visual, device, text=encode, text_modules=model)


def has_text(spec: ModelSpec) -> bool:
    """A text tower in the architecture's config, unless option ``text`` is false."""
    return bool(spec.options.get("text", True)) and "text_cfg" in _model_config(spec.arch)


def _tokenizer(spec: ModelSpec):
    """open_clip's tokenizer of the architecture at its context length. raybench's tiny
    architectures use CLIP's BPE tokenizer (shipped with open_clip): open_clip would give the
    tiny SigLIP, by its name, the Gemma tokenizer, a download. A real SigLIP2's or PE-Core's
    tokenizer comes from the hub (cached under $RAYBENCH_WEIGHTS like the weights)."""
    import open_clip

    if spec.arch in TINY_CONFIGS:
        return open_clip.SimpleTokenizer(context_length=TINY_CONFIGS[spec.arch]["text_cfg"]["context_length"])
    return open_clip.get_tokenizer(spec.arch, cache_dir=hub_cache_dir())


def tiny(spec: ModelSpec) -> ModelSpec:
    """The tiny architecture of the same kind: a native ViT, or a timm tower like PE-Core's or
    SigLIP2's; with the activation of the spec's tag (QuickGELU for OpenAI's weights), which
    its random weights would otherwise lose."""
    vision = _model_config(spec.arch)["vision_cfg"]
    if "timm_model_name" not in vision:
        small = tiny_variant(spec, arch="raybench-tiny-ViT", dim=32)
    elif "pe_core" in vision["timm_model_name"]:
        small = tiny_variant(spec, arch="raybench-tiny-PE", dim=32)
    else:
        small = tiny_variant(spec, arch="raybench-tiny-SigLIP", dim=96)
    if "quick_gelu" in spec.options or not _tag_config(spec).get("quick_gelu"):
        return small
    return replace(small, options={**small.options, "quick_gelu": True})


LOADER = Loader(
    build=build,
    default_preprocess=default_preprocess,
    source=source,
    resolve_source=resolve_source,
    options=("quick_gelu", "text"),
    tiny=tiny,
    text=has_text,
    library="open_clip",
    versioned=("open_clip_torch",),
)
