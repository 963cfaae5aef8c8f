"""`--random-weights`: each loader family at a real architecture with seeded random weights,
offline, with the catalog's preprocessing; the pipeline's actors build it that way."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from raybench.catalog import load_model_catalog
from raybench.errors import SpecError
from raybench.models import build_embedder, resolve_preprocess
from raybench.pipeline.embed import Pool, worker_class
from raybench.specs import ModelSpec, Preprocess

CATALOG = load_model_catalog()


def _build(spec: ModelSpec, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return build_embedder(spec, device="cpu", pretrained=False, preprocess=resolve_preprocess(spec, random_weights=True))


def _pixels(preprocess: Preprocess, n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *preprocess.size, 3), dtype=np.uint8)


# One catalog model per family, the smallest real architecture each has (ViT-B/16 for CLIP-ReID).
@pytest.mark.parametrize("name", ["osnet-x0_25-market", "dinov2-s14", "clip-vit-b32", "clipreid-vit-b16-msmt17",
                                  "color-hist"])
def test_each_family_builds_its_real_architecture_offline(name):
    spec = CATALOG[name]
    embedder = _build(spec)
    out = embedder.embed(_pixels(embedder.preprocess))
    assert out.shape == (2, spec.dim) and np.isfinite(out).all()
    assert embedder.preprocess == spec.preprocess  # the catalog's stated preprocessing
    if "params" in spec.options:  # the full architecture: the catalog's parameter count
        assert embedder.num_params == spec.options["params"]


def test_hf_builds_a_real_architecture_from_its_config_and_needs_a_stated_preprocess(tmp_path):
    from transformers import Dinov2Config

    Dinov2Config(image_size=518).save_pretrained(tmp_path)  # facebook/dinov2-base: transformers defaults at 518 px
    spec = dataclasses.replace(CATALOG["dinov2-b14-hf"], arch=str(tmp_path))
    embedder = _build(dataclasses.replace(spec, preprocess=dataclasses.replace(spec.preprocess, size=(56, 28))))
    assert embedder.num_params == 86_580_480 and embedder.embed(_pixels(embedder.preprocess)).shape == (2, 768)
    with pytest.raises(SpecError, match="dinov2-b14-hf.*random-weights.*preprocess"):
        resolve_preprocess(dataclasses.replace(spec, preprocess=None), random_weights=True)


def test_random_weights_are_seeded():
    spec = CATALOG["osnet-x0_25-market"]
    pixels = _pixels(spec.preprocess)
    same = _build(spec, 0).embed(pixels), _build(spec, 0).embed(pixels)
    assert np.array_equal(*same)
    assert not np.allclose(same[0], _build(spec, 1).embed(pixels))


def test_the_actor_builds_random_weights_without_touching_the_weights_file():
    spec = dataclasses.replace(CATALOG["osnet-x0_25-market"], weights="/nonexistent/osnet.pth")
    pre = resolve_preprocess(spec, random_weights=True)
    random = worker_class("r", spec, pre, Pool(), pretrained=False)()
    assert random.failure is None and random.embedder.num_params == spec.options["params"]
    real = worker_class("r", spec, pre, Pool())()
    assert real.failure is not None and "/nonexistent/osnet.pth" in real.failure.message
