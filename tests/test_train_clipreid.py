"""CLIP-ReID's two stages with a tiny open_clip CLIP from random weights, on synthetic domain A
(the clipreid_smoke_* recipes, trained once per session by conftest's clipreid_runs). Stage 1
(prompts learnt, both encoders frozen) and both stage-2 arms run on Ray Train with 2 CPU
workers; afterwards the text tower's weights of the text-frozen arm are bit-identical to stage
1's, and the text-trained arm's have changed. The exported stage-2 checkpoint is in the official format: raybench's clipreid
loader reproduces the trained module's features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(clipreid_runs):
    """conftest's clipreid_runs: stage 1, then both stage-2 arms, trained once per session."""
    return clipreid_runs


def _weights(result):
    return torch.load(result.out / "clipreid.pth", map_location="cpu", weights_only=True)


def _losses(result):
    return [json.loads(line)["loss"] for line in (result.out / "metrics.jsonl").read_text().splitlines()]


def test_stage1_learns_prompts_with_both_encoders_frozen(runs):
    cfg, result = runs["clipreid_smoke_stage1"]
    losses = _losses(result)
    assert len(losses) == cfg.epochs and min(losses[-2:]) < losses[0], losses
    assert result.model_yaml is None  # prompts, not an image model
    state = _weights(result)
    assert state["prompt_learner.cls_ctx"].shape == (24, 4, 32)
    assert {k.split(".")[0] for k in state} == {"image_encoder", "text_encoder", "prompt_learner"}


def test_stage2_freezes_the_text_encoder_only_when_asked(runs):
    stage1 = _weights(runs["clipreid_smoke_stage1"][1])
    frozen = _weights(runs["clipreid_smoke_stage2_textfrozen"][1])
    losses = _losses(runs["clipreid_smoke_stage2_textfrozen"][1])
    assert min(losses[-2:]) < losses[0], losses
    text = [k for k in stage1 if k.startswith("text_encoder.")]
    assert text and all(torch.equal(frozen[k], stage1[k]) for k in text)  # frozen means frozen
    assert torch.equal(frozen["prompt_learner.cls_ctx"], stage1["prompt_learner.cls_ctx"])
    assert not torch.equal(frozen["image_encoder.proj"], stage1["image_encoder.proj"])  # it fine-tunes

    trained = _weights(runs["clipreid_smoke_stage2_texttrained"][1])
    assert any(not torch.equal(trained[k], stage1[k]) for k in text)  # the switch does train it
    assert torch.equal(trained["prompt_learner.cls_ctx"], stage1["prompt_learner.cls_ctx"])
    assert not torch.equal(trained["image_encoder.proj"], frozen["image_encoder.proj"])  # two arms, two models


def _trained_features(cfg, result, pixels: np.ndarray) -> np.ndarray:
    """CLIP-ReID's own eval feature (CLS after ln_post, and projected, concatenated) of the
    trained stage-2 module, for uint8 pixels [N, H, W, 3] at the training input size."""
    from raybench.train.clipmodel import ClipReID, build_clip, vit_features

    state = _weights(result)
    module = ClipReID(build_clip(cfg.model, load_init=False), state["prompt_learner.cls_ctx"].shape[0],
                      cfg.clipreid.prompt)
    module.load_state_dict(state)
    pre = cfg.model.preprocess
    x = ((pixels / 255.0 - np.array(pre.mean)) / np.array(pre.std)).astype(np.float32)
    with torch.no_grad():
        _, feat, proj = vit_features(module.eval().image_encoder, torch.from_numpy(x).permute(0, 3, 1, 2))
    return torch.cat([feat, proj], 1).numpy()


def test_stage2_export_loads_through_the_clipreid_loader(runs):
    from raybench.models import build_embedder
    from raybench.models.trained import run_spec

    cfg, result = runs["clipreid_smoke_stage2_textfrozen"]
    spec = run_spec(str(result.out))
    assert (spec.loader, spec.arch, spec.dim) == ("clipreid", "raybench-tiny-ViT", 64 + 32)
    embedder = build_embedder(spec, device="cpu")
    pixels = np.random.default_rng(0).integers(0, 256, (3, 64, 32, 3), dtype=np.uint8)
    assert np.abs(embedder.embed(pixels) - _trained_features(cfg, result, pixels)).max() < 1e-4


# Both stage-2 arms scoring as ``trained:<run>`` in a fresh process, their stored embeddings equal
# to _trained_features: test_train_osnet.py's ablation_smoke run (it needs the OSNet run too).
