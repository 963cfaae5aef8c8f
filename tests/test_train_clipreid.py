"""CLIP-ReID's two stages with a tiny open_clip CLIP from random weights, on synthetic domain A
(the clipreid_smoke_* recipes). Stage 1 (prompts learnt, both encoders frozen) and stage 2 with
the text encoder frozen run on Ray Train with 2 CPU workers; afterwards the text tower's weights
are bit-identical to stage 1's. The ablation's other side, text encoder trained, runs the same
worker loop in-process for one epoch (a third Ray run would only repeat the start-up) and must
change them. The exported stage-2 checkpoint is in the official format: raybench's clipreid
loader reproduces the trained module's features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raybench.train.config import load_train_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(ray_local, tmp_path_factory):
    """Stage 1, then stage 2 with the text encoder frozen, in a private run root."""
    from raybench.train.run import train

    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYBENCH_TRAINED", str(root))  # clipreid.stage1 names the stage-1 run in this root
        out = {}
        for config in ("clipreid_smoke_stage1", "clipreid_smoke_stage2_textfrozen"):
            cfg = load_train_config(config)
            out[config] = (cfg, train(cfg, workers=2))
        yield out


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


def test_stage2_freezes_the_text_encoder_only_when_asked(runs, tmp_path, monkeypatch):
    from raybench.train.clipreid import Stage2Task, prepare_stage2
    from raybench.train.data import load_train_set
    from raybench.train.loop import RunLog, run_epoch
    from raybench.train.schedule import build_optimizer

    stage1 = _weights(runs["clipreid_smoke_stage1"][1])
    frozen = _weights(runs["clipreid_smoke_stage2_textfrozen"][1])
    losses = _losses(runs["clipreid_smoke_stage2_textfrozen"][1])
    assert min(losses[-2:]) < losses[0], losses
    text = [k for k in stage1 if k.startswith("text_encoder.")]
    assert text and all(torch.equal(frozen[k], stage1[k]) for k in text)  # frozen means frozen
    assert torch.equal(frozen["prompt_learner.cls_ctx"], stage1["prompt_learner.cls_ctx"])
    assert not torch.equal(frozen["image_encoder.proj"], stage1["image_encoder.proj"])  # it fine-tunes

    monkeypatch.setenv("RAYBENCH_TRAINED", str(runs["clipreid_smoke_stage1"][1].out.parent))
    cfg = prepare_stage2(load_train_config("clipreid_smoke_stage2_texttrained"))
    task = Stage2Task(cfg, load_train_set(cfg.dataset), "cpu", rank=0, world=1)
    optimizer = build_optimizer(task.module.named_parameters(), cfg.optimizer, task.head_prefixes)
    metrics = run_epoch(cfg, task, task.module, optimizer, 0, 1, "cpu", RunLog(tmp_path, 0))
    assert metrics["images"] == task.steps(0) * 32
    trained = task.module.state_dict()
    assert any(not torch.equal(trained[k], stage1[k]) for k in text)  # the switch does train it
    assert torch.equal(trained["prompt_learner.cls_ctx"], stage1["prompt_learner.cls_ctx"])


def test_stage2_export_loads_through_the_clipreid_loader(runs):
    from raybench.models import build_embedder
    from raybench.train.clipmodel import ClipReID, build_clip, vit_features
    from raybench.train.export import trained_model_spec

    cfg, result = runs["clipreid_smoke_stage2_textfrozen"]
    spec = trained_model_spec(str(result.out))
    assert (spec.loader, spec.arch, spec.dim) == ("clipreid", "raybench-tiny-ViT", 64 + 32)
    embedder = build_embedder(spec, device="cpu")
    pixels = np.random.default_rng(0).integers(0, 256, (3, 64, 32, 3), dtype=np.uint8)
    module = ClipReID(build_clip(cfg.model, load_init=False), 24, cfg.clipreid.prompt)
    module.load_state_dict(_weights(result))
    x = torch.from_numpy(((pixels / 255.0 - 0.5) / 0.5).astype(np.float32)).permute(0, 3, 1, 2)
    with torch.no_grad():
        _, feat, proj = vit_features(module.image_encoder, x)
    assert np.abs(embedder.embed(pixels) - torch.cat([feat, proj], 1).numpy()).max() < 1e-4
