"""Tiny stand-ins of every loader family, for tests and CPU benchmarks.

``tiny_spec(spec)`` maps a catalog spec to a small model of the SAME family and code path
(open_clip through a registered open_clip config, timm through the same timm class with
fewer and narrower blocks, transformers through a small config saved like a hub folder,
torchreid's smallest OSNet, CLIP-ReID on a tiny open_clip ViT), with random weights and a
small input, so that CI builds and runs each of them in well under a second. The real sizes
are checked separately, on PyTorch's meta device (no memory, no weights).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Callable

from raybench.specs import ModelSpec, Preprocess

#: open_clip configs registered by ``register_open_clip``: a native ViT (CLIP, CLIP-ReID) and
#: two timm-backed towers like SigLIP2 (MAP pool, no projection; timm's own tiny test ViT) and
#: PE-Core (the Eva class, timm head as projection).
_TEXT = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}
OPEN_CLIP_CONFIGS = {
    "raybench-tiny-ViT": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": _TEXT,
    },
    "raybench-tiny-SigLIP": {
        "embed_dim": 96,
        "custom_text": True,
        "vision_cfg": {"image_size": 160, "timm_model_name": "test_vit3", "timm_model_pretrained": False,
                       "timm_pool": "map", "timm_proj": "none"},
        "text_cfg": _TEXT,
    },
    "raybench-tiny-PE": {
        "embed_dim": 32,
        "custom_text": True,
        "vision_cfg": {"image_size": 384, "timm_model_name": "vit_pe_core_tiny_patch16_384",
                       "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": None},
        "text_cfg": _TEXT,
    },
}
TINY_SIZE = (64, 32)  # a 1:2 person input, a multiple of every patch size used here


def register_open_clip() -> None:
    """Add the tiny configs through open_clip's own config mechanism (idempotent)."""
    import open_clip

    missing = {k: v for k, v in OPEN_CLIP_CONFIGS.items() if open_clip.get_model_config(k) is None}
    if not missing:
        return
    folder = Path(tempfile.mkdtemp(prefix="raybench-open-clip-"))
    for name, cfg in missing.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)


def _tiny(spec: ModelSpec, **changes) -> ModelSpec:
    base = spec.preprocess or Preprocess(size=TINY_SIZE)
    params = dict(weights=None, preprocess=dataclasses.replace(base, size=TINY_SIZE),
                  options={k: v for k, v in spec.options.items() if k not in ("params", "hf_hub")})
    params.update(changes)
    return dataclasses.replace(spec, name=f"{spec.name}-tiny", **params)


def _openclip(spec: ModelSpec) -> ModelSpec:
    register_open_clip()
    import open_clip

    vision = open_clip.get_model_config(spec.arch)["vision_cfg"]
    if "timm_model_name" not in vision:
        return _tiny(spec, arch="raybench-tiny-ViT", dim=32)
    if "pe_core" in vision["timm_model_name"]:
        return _tiny(spec, arch="raybench-tiny-PE", dim=32)
    return _tiny(spec, arch="raybench-tiny-SigLIP", dim=96)


def _timm(spec: ModelSpec) -> ModelSpec:
    width = 96  # DINOv2-g's SwiGLU needs an even hidden size: int(96 * 2.66667) = 256
    dim = width * (2 if spec.pooling == "both" else 1)
    kwargs = {"depth": 2, "embed_dim": width, "num_heads": 2}
    return _tiny(spec, options={"model_kwargs": kwargs}, dim=dim if spec.pooling else None,
                 preprocess=dataclasses.replace(spec.preprocess, size=_patch_multiple(spec.arch)))


def _patch_multiple(arch: str) -> tuple[int, int]:
    return (56, 28) if "patch14" in arch else TINY_SIZE


def _hf(spec: ModelSpec) -> ModelSpec:
    folder = save_tiny_hf("siglip" if "siglip" in spec.arch else "dinov2")
    width = 32 * (2 if spec.pooling == "both" else 1)
    return _tiny(spec, arch=str(folder), weights=str(folder), dim=width,
                 preprocess=dataclasses.replace(spec.preprocess, size=(56, 28) if "dinov2" in spec.arch else TINY_SIZE))


def save_tiny_hf(kind: str, folder: str | Path | None = None) -> Path:
    """A random tiny transformers vision model saved like a hub folder (config + safetensors)."""
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


def _torchreid(spec: ModelSpec) -> ModelSpec:
    return _tiny(spec, arch="osnet_x0_25")


def _clipreid(spec: ModelSpec) -> ModelSpec:
    register_open_clip()
    return _tiny(spec, arch="raybench-tiny-ViT", dim=64 + 32)


def _as_is(spec: ModelSpec) -> ModelSpec:
    return spec


TINY: dict[str, Callable[[ModelSpec], ModelSpec]] = {
    "openclip": _openclip,
    "timm": _timm,
    "hf": _hf,
    "torchreid": _torchreid,
    "clipreid": _clipreid,
    "color": _as_is,
    "dummy": _as_is,
}


def tiny_spec(spec: ModelSpec) -> ModelSpec:
    """A small model of the same family as ``spec``, with random weights (see module doc)."""
    return TINY[spec.loader](spec)
