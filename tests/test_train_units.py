"""Training building blocks without Ray: config validation, PK sampling across workers,
losses against brute force, augmentation, the LR schedule, CLIP-ReID's modules on a tiny
open_clip CLIP, and the ablation matrix's `trained:<run>` names (their resolution: test_catalog.py)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter

import numpy as np
import pytest
import torch

from raybench import ray_runtime
from raybench.errors import RaybenchError, SpecError
from raybench.paths import configs_dir
from raybench.specs import Preprocess
from raybench.train.config import AugmentCfg, ModelCfg, ScheduleCfg, load_train_config, parse_train_config
from raybench.train.sampler import PKBatchSampler, pk_plan

TRAIN_CONFIGS = sorted((configs_dir() / "train").glob("*.yaml"))


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_every_recipe_config_validates(path):
    cfg = load_train_config(path)
    assert cfg.name and cfg.epochs >= 1
    assert isinstance(cfg.model.preprocess, Preprocess)
    if cfg.recipe == "clipreid-stage2":
        assert cfg.clipreid.stage1


def test_smoke_recipes_exist_and_run_on_synthetic_data():
    smoke = [load_train_config(p) for p in TRAIN_CONFIGS if "smoke" in p.stem]
    assert {c.recipe for c in smoke} == {"osnet", "clipreid-stage1", "clipreid-stage2"}
    assert all(c.dataset.adapter == "synthetic" for c in smoke)
    switch = {c.clipreid.train_text_encoder for c in smoke if c.recipe == "clipreid-stage2"}
    assert switch == {False, True}


def test_ablation_recipes_cover_the_study():
    cfgs = {p.stem: load_train_config(p) for p in TRAIN_CONFIGS if "smoke" not in p.stem}
    by = {(c.recipe, c.dataset.name, c.clipreid.train_text_encoder) for c in cfgs.values()}
    assert ("osnet", "msmt17", False) in by and ("osnet", "market1501", False) in by
    assert ("clipreid-stage1", "msmt17", False) in by
    assert ("clipreid-stage2", "msmt17", False) in by and ("clipreid-stage2", "msmt17", True) in by
    stage1 = {c.name for c in cfgs.values() if c.recipe == "clipreid-stage1"}
    assert all(c.clipreid.stage1 in stage1 for c in cfgs.values() if c.recipe == "clipreid-stage2")


def _minimal(**over):
    data = {"name": "x", "recipe": "osnet", "dataset": "synth-a", "epochs": 1,
            "model": {"arch": "osnet_x0_25", "preprocess": {"size": [64, 32]}}}
    data.update(over)
    return data


@pytest.mark.parametrize("over, message", [
    ({"recipe": "osnett"}, "allowed: clipreid-stage1, clipreid-stage2, osnet"),
    ({"optimizer": {"lr": "fast"}}, "'lr' must be float"),
    ({"sampler": {"images_per_id": 1}}, "images_per_id must be at least 2"),
    ({"schedule": {"decay": "linear"}}, "allowed: cosine, step, constant"),
    ({"epoch": 3}, "unknown key 'epoch'"),
    ({"recipe": "clipreid-stage2"}, "needs clipreid.stage1"),
    ({"dataset": "synth-c"}, "unknown dataset 'synth-c'"),
])
def test_config_errors_name_the_key(over, message):
    from raybench.catalog import load_dataset_catalog

    with pytest.raises(RaybenchError, match=message):
        parse_train_config(_minimal(**over), "t.yaml", load_dataset_catalog())


def test_config_is_frozen_and_typed():
    from raybench.catalog import load_dataset_catalog

    cfg = parse_train_config(_minimal(schedule={"milestones": [2, 4], "warmup_epochs": 1}), "t.yaml",
                             load_dataset_catalog())
    assert cfg.schedule.milestones == (2, 4) and cfg.schedule.warmup_epochs == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3


# --- PK sampling -------------------------------------------------------------------------------


def _labels(rng, ids=13):
    return np.concatenate([[i] * n for i, n in enumerate(rng.integers(1, 11, size=ids))])


def test_every_pk_batch_holds_p_ids_times_k_images():
    rng = np.random.default_rng(0)
    labels = _labels(rng)
    for epoch in range(3):
        plan = pk_plan(labels, p=4, k=3, seed=1, epoch=epoch)
        assert plan
        for batch in plan:
            assert len(batch) == 12
            counts = Counter(labels[batch].tolist())
            assert len(counts) == 4 and set(counts.values()) == {3}
        used = np.concatenate(plan)
        # an identity with fewer than K images is sampled with replacement; none is repeated otherwise
        for label in set(labels[used].tolist()):
            own = used[labels[used] == label]
            if (labels == label).sum() >= 3:
                assert len(own) == len(set(own.tolist()))


def test_pk_batches_split_evenly_and_disjointly_across_workers():
    labels = _labels(np.random.default_rng(1), ids=30)
    world = 3
    samplers = [PKBatchSampler(labels, 4, 2, rank=r, world=world, seed=5) for r in range(world)]
    for s in samplers:
        s.set_epoch(2)
    per_rank = [list(s) for s in samplers]
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) > 0  # equal steps: report is a barrier
    plan = pk_plan(labels, 4, 2, seed=5, epoch=2)
    got = [tuple(i for i, _ in batch) for rank in per_rank for batch in rank]
    assert len(set(got)) == len(got)  # no batch twice
    assert {tuple(b.tolist()) for b in plan[:len(got)]} == set(got)
    seeds = [seed for rank in per_rank for batch in rank for _, seed in batch]
    assert len(set(seeds)) == len(seeds)  # every image gets its own augmentation seed
    capped = PKBatchSampler(labels, 4, 2, rank=0, world=world, seed=5, max_steps=1)
    assert len(list(capped)) == 1


def test_pk_plan_depends_on_seed_and_epoch_only():
    labels = _labels(np.random.default_rng(2))
    a = pk_plan(labels, 3, 2, seed=0, epoch=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, pk_plan(labels, 3, 2, seed=0, epoch=1)))
    assert not all(np.array_equal(x, y) for x, y in zip(a, pk_plan(labels, 3, 2, seed=0, epoch=2)))


def test_too_few_identities_is_an_error():
    with pytest.raises(ValueError, match="needs 4 identities"):
        pk_plan([0, 0, 1, 1], 4, 2, 0, 0)


# --- losses ------------------------------------------------------------------------------------


def test_label_smoothed_ce_matches_torch():
    from raybench.train.losses import label_smooth_ce

    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(6, 5, generator=g), torch.tensor([0, 1, 4, 4, 2, 3])
    for eps in (0.0, 0.1):
        want = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=eps)
        assert torch.allclose(label_smooth_ce(logits, targets, eps), want, atol=1e-6)


def test_batch_hard_triplet_matches_brute_force():
    from raybench.train.losses import batch_hard_triplet

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 4, generator=g), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    want = []
    for i in range(8):
        d = [float((x[i] - x[j]).norm()) for j in range(8)]
        pos = max(d[j] for j in range(8) if y[j] == y[i])
        neg = min(d[j] for j in range(8) if y[j] != y[i])
        want.append(max(0.0, pos - neg + 0.3))
    assert abs(float(batch_hard_triplet(x, y, 0.3)) - np.mean(want)) < 1e-5


def test_supcon_is_clip_reids():
    from raybench.train.losses import supcon

    g = torch.Generator().manual_seed(2)
    a, b, y = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), torch.tensor([0, 1, 1, 2])
    logits = a @ b.t()
    log_prob = logits - logits.logsumexp(1, keepdim=True)
    mask = (y[:, None] == y[None]).float()
    want = -((mask * log_prob).sum(1) / mask.sum(1)).mean()
    assert torch.allclose(supcon(a, b, y, y), want, atol=1e-6)


# --- augmentation and schedule -------------------------------------------------------------------


def test_augmentation_is_seeded_and_keeps_the_shape():
    from raybench.train.augment import normalize, train_view

    pre = Preprocess(size=(32, 16))
    pixels = np.random.default_rng(0).integers(0, 256, (32, 16, 3), dtype=np.uint8)
    cfg = AugmentCfg(flip=0.5, pad=4, erase=1.0)
    a, b = train_view(pixels, pre, cfg, 7), train_view(pixels, pre, cfg, 7)
    assert a.shape == (3, 32, 16) and a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, train_view(pixels, pre, cfg, 8))
    assert (a == 0).all(axis=0).sum() >= 0.02 * 32 * 16 * 0.5  # an erased (mean-coloured) block
    plain = train_view(pixels, pre, AugmentCfg(flip=0.0, pad=0, erase=0.0), 7)
    assert np.array_equal(plain, normalize(pixels, pre))
    flipped = train_view(pixels, pre, AugmentCfg(flip=1.0, pad=0, erase=0.0), 7)
    assert np.array_equal(flipped, normalize(pixels[:, ::-1], pre))


def test_lr_schedule_warms_up_then_decays():
    from raybench.train.schedule import lr_factor

    cos = ScheduleCfg(warmup_epochs=2, warmup_factor=0.1, decay="cosine", min_factor=0.0)
    assert lr_factor(cos, 10, 0) == pytest.approx(0.1)
    assert lr_factor(cos, 10, 1) == pytest.approx(0.55)
    assert lr_factor(cos, 10, 2) == pytest.approx(1.0)
    assert lr_factor(cos, 10, 6) == pytest.approx(0.5)
    step = ScheduleCfg(warmup_epochs=0, decay="step", milestones=(3, 5), gamma=0.1)
    assert [lr_factor(step, 8, t) for t in (0, 2.9, 3, 5.5)] == pytest.approx([1, 1, 0.1, 0.01])


def test_optimizer_groups_and_rates():
    from raybench.train.config import OptimCfg
    from raybench.train.schedule import build_optimizer, set_lr

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    net[0].weight.requires_grad_(False)
    opt = build_optimizer(net.named_parameters(), OptimCfg(name="sgd", lr=0.1, bias_lr_factor=2.0,
                                                           head_lr_factor=10.0), head_prefixes=("1.",))
    rates = sorted(g["base_lr"] for g in opt.param_groups)
    assert rates == pytest.approx([0.2, 1.0, 2.0])  # 0.bias, 1.weight, 1.bias (frozen 0.weight left out)
    set_lr(opt, 0.5)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.1, 0.5, 1.0])


# --- CLIP-ReID modules -------------------------------------------------------------------------

TINY_CLIP = ModelCfg(
    arch="raybench-tiny-ViT", quick_gelu=True,
    preprocess=Preprocess(size=(64, 32), mean=(0.5,) * 3, std=(0.5,) * 3),
    open_clip_cfg={"text_cfg": {"vocab_size": 49408, "context_length": 16, "width": 32, "heads": 2, "layers": 1}},
)


def test_clipreid_modules_follow_the_official_layout():
    from raybench.train.clipmodel import ClipReID, build_clip, vit_features

    torch.manual_seed(0)
    clip = build_clip(TINY_CLIP)
    x = torch.randn(4, 3, 64, 32)
    x11, feat, proj = vit_features(clip.visual, x)
    assert torch.allclose(proj, clip.visual(x), atol=1e-5)  # the same tower as open_clip's forward
    model = ClipReID(clip, num_classes=5, prompt="A photo of a X X X X person.")
    assert model.prompt_learner.cls_ctx.shape == (5, 4, 32)
    # prefix "<sot> a photo of a" and suffix "person . <eot> <pad>...": 5 + 4 + 7 = 16 tokens
    assert model.prompt_learner.token_prefix.shape[1] + 4 + model.prompt_learner.token_suffix.shape[1] == 16
    top = {k.split(".")[0] for k in model.state_dict()}
    assert top == {"image_encoder", "text_encoder", "prompt_learner", "bottleneck", "bottleneck_proj",
                   "classifier", "classifier_proj"}
    trainable = {k.split(".")[0] for k, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"image_encoder", "bottleneck", "bottleneck_proj", "classifier", "classifier_proj"}
    model.refresh_text_bank()
    logits, feats, i2t = model(x, torch.tensor([0, 0, 3, 3]))
    assert [t.shape for t in logits] == [(4, 5), (4, 5)] and i2t.shape == (4, 5)
    assert [f.shape[1] for f in feats] == [64, 64, 32]


def test_prompt_needs_x_tokens():
    from raybench.train.clipmodel import PromptModel, build_clip

    with pytest.raises(SpecError, match="consecutive 'X'"):
        PromptModel(build_clip(TINY_CLIP), 3, "A photo of a person.")


# --- trained:<run> -------------------------------------------------------------------------------


def test_ablation_matrix_names_the_recipes_outputs():
    from raybench.specs import load_yaml
    from raybench.train.config import load_train_config

    data = load_yaml(configs_dir() / "matrices" / "ablation.yaml")
    trained = {m.removeprefix("trained:") for m in data["models"] if isinstance(m, str) and m.startswith("trained:")}
    recipes = {load_train_config(p).name for p in TRAIN_CONFIGS if "smoke" not in p.stem}
    stage1 = {load_train_config(p).name for p in TRAIN_CONFIGS if "stage1" in p.stem}
    assert trained == recipes - stage1
    assert len(data["datasets"]) >= 9


def test_a_run_folder_of_another_recipe_is_not_resumed(tmp_path):
    from raybench.train.run import _check_resumable, train

    cfg = load_train_config("osnet_smoke")
    ckpt = tmp_path / "ray" / cfg.name / "checkpoint_2026-01-01_00-00-00.000000"
    ckpt.mkdir(parents=True)
    (ckpt / "train.json").write_text('{"recipe": "osnet", "dataset": "synth-a", "arch": "osnet_x0_25"}')
    _check_resumable(cfg, tmp_path)  # the same run: resumable
    other = cfg.replace(model=dataclasses.replace(cfg.model, arch="osnet_x1_0"))
    with pytest.raises(SpecError, match="arch 'osnet_x0_25', not 'osnet_x1_0'"):
        _check_resumable(other, tmp_path)
    # with the folder's config.json: longer training and other resources resume, other settings do not
    from raybench.train.run import _as_json

    (tmp_path / "config.json").write_text(json.dumps(_as_json(cfg)))
    _check_resumable(cfg.replace(epochs=cfg.epochs + 10, workers=1, log_every=1), tmp_path)
    moved = cfg.replace(dataset=dataclasses.replace(cfg.dataset, root="/elsewhere"))
    _check_resumable(moved, tmp_path)  # the same dataset, its folder moved
    lr = cfg.optimizer.lr
    changed = cfg.replace(optimizer=dataclasses.replace(cfg.optimizer, lr=lr * 2), seed=cfg.seed + 1)
    with pytest.raises(SpecError, match=re.escape(f"other settings (optimizer.lr {lr!r}, not {lr * 2!r}; "
                                                  f"seed {cfg.seed!r}, not {cfg.seed + 1!r})")):
        _check_resumable(changed, tmp_path)
    with pytest.raises(SpecError, match="not a URI"):
        train(cfg, out="s3://bucket/run")


@pytest.mark.parametrize("change, error", [
    ({"dataset": "missing"}, "none does not exist"),
    ({"sampler": {"ids_per_batch": 32, "images_per_id": 4}}, "needs 32 identities but the training set has 24"),
    ({"workers": 7}, "fewer than the 7 workers"),  # 5 PK batches of 8 x 4 per epoch
    ({"recipe": "clipreid-stage1", "workers": 4}, "3 feature batch.*fewer than the 4 worker"),
])
def test_data_errors_fail_on_the_driver_before_ray_starts(change, error, tmp_path, monkeypatch):
    """A worker would hit them only after Ray started, and FailureConfig would restart it
    max_failures times before the run ended in a traceback."""
    from raybench.train import run as train_run

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for a run that cannot train")

    monkeypatch.setattr(ray_runtime, "connect", no_ray)
    cfg = load_train_config("osnet_smoke")
    if change.get("dataset") == "missing":
        from raybench.specs import parse_dataset

        cfg = cfg.replace(dataset=parse_dataset({"name": "mkt", "adapter": "market1501", "root": str(tmp_path / "none")},
                                                "test dataset"))
    if "sampler" in change:
        cfg = cfg.replace(sampler=dataclasses.replace(cfg.sampler, **change["sampler"]))
    if change.get("recipe"):
        cfg = cfg.replace(recipe=change["recipe"], clipreid=dataclasses.replace(cfg.clipreid, feature_batch_size=64))
    with pytest.raises(RaybenchError, match=error):
        train_run.train(cfg, out=tmp_path / "out", workers=change.get("workers"))


def test_imagenet_init_that_cannot_be_fetched_fails_on_the_driver(tmp_path, monkeypatch):
    import torchreid

    from raybench.errors import WeightsUnavailableError
    from raybench.train import run as train_run

    def offline(name, num_classes, loss, pretrained):
        if pretrained:
            raise ConnectionError("drive.google.com: name resolution failed")
        raise AssertionError("only the ImageNet fetch is expected here")

    monkeypatch.setattr(ray_runtime, "connect", lambda *a, **k: pytest.fail("Ray was started"))
    monkeypatch.setattr(torchreid.models, "build_model", offline)
    cfg = load_train_config("osnet_smoke")
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, init="imagenet"))
    with pytest.raises(WeightsUnavailableError, match="could not fetch its ImageNet weights"):
        train_run.train(cfg, out=tmp_path / "out")


def test_clip_init_that_cannot_be_fetched_fails_on_the_driver(tmp_path, monkeypatch):
    import open_clip

    from raybench.errors import WeightsUnavailableError
    from raybench.train import run as train_run

    def offline(cfg, **kwargs):
        raise OSError("huggingface.co: name resolution failed")

    monkeypatch.setattr(ray_runtime, "connect", lambda *a, **k: pytest.fail("Ray was started"))
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", offline)
    cfg = load_train_config("clipreid_vit_b16_msmt17_stage1")
    cfg = cfg.replace(dataset=load_train_config("clipreid_smoke_stage1").dataset)  # synthetic: always there
    with pytest.raises(WeightsUnavailableError, match="ViT-B-16 weights 'openai' could not be fetched"):
        train_run.train(cfg, out=tmp_path / "out")
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, init="opneai"))
    with pytest.raises(WeightsUnavailableError, match="neither an open_clip tag of ViT-B-16 .*openai"):
        train_run.train(cfg, out=tmp_path / "out")


def test_the_pk_loader_yields_full_augmented_batches_from_worker_processes():
    from raybench.train.data import load_train_set, pk_loader

    cfg = load_train_config("osnet_smoke").replace(data_workers=2)
    data = load_train_set(cfg.dataset)
    assert data.num_classes == 24 and len(data) == 192
    loader = pk_loader(data, cfg, rank=1, world=2)
    for epoch in (0, 1):
        loader.batch_sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader.batch_sampler) > 0
        for images, labels in batches:
            assert images.shape == (32, 3, 64, 32) and images.dtype == torch.float32
            assert sorted(Counter(labels.tolist()).values()) == [4] * 8


def test_a_resumed_run_drops_the_metrics_of_epochs_its_checkpoint_lacks(tmp_path):
    """A run killed between an epoch's report and Ray Train recording its checkpoint has logged
    that epoch; the rerun trains it again and must not log it twice."""
    import json

    from raybench.train.loop import RunLog

    log = RunLog(tmp_path, rank=0)
    for epoch in range(4):
        log.epoch({"epoch": epoch, "loss": 1.0, "images_per_s": 1.0})
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"time": 1.0, "pid": 7, "epo')  # cut short by the kill

    def epochs():
        lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["epoch"] for line in lines if line.endswith("}")]

    RunLog(tmp_path, rank=1).rewind(2)  # only rank 0 writes the file
    assert epochs() == [0, 1, 2, 3]
    log.rewind(2)
    assert epochs() == [0, 1] and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert "dropped 3 line(s) of epochs from 2 on" in (tmp_path / "train.log").read_text()
    log.rewind(2)
    assert (tmp_path / "train.log").read_text().count("dropped") == 1


def test_a_worker_group_larger_than_the_local_ray_is_refused(tmp_path, monkeypatch, capsys):
    """Ray Train would wait 60 s per attempt for workers that can never be placed, then end in a
    traceback; on a local Ray it is a one-line error before the trainer starts, on a joined
    (maybe autoscaling) cluster a notice."""
    import ray

    from raybench.train import run as train_run

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray_runtime, "connect", lambda *a, **k: True)  # "a local Ray started here"
    with pytest.raises(RaybenchError, match=r"3 worker\(s\) need 3 CPU\(s\); the Ray cluster has 2 .*--workers 2"):
        train_run.train(load_train_config("osnet_smoke"), out=tmp_path / "out", workers=3)
    with pytest.raises(RaybenchError, match=r"need 1 GPU.*has 0 .*use --gpus-per-worker 0"):
        train_run._check_fits(1, 1.0, local=True)
    train_run._check_fits(2, 0.0, local=True)
    train_run._check_fits(4, 0.0, local=False)
    assert "once the cluster scales up" in capsys.readouterr().err


def test_a_torn_checkpoint_record_is_set_aside_and_the_latest_folder_resumed(tmp_path):
    """Ray Train rewrites checkpoint_manager_snapshot.json in place: a run killed mid-write
    leaves it empty, and Ray would refuse to start. raybench sets it aside and names the latest
    checkpoint folder (with its info file) to resume; a readable record is left alone."""
    from raybench.train.loop import INFO_FILE
    from raybench.train.run import _set_aside_torn_snapshot

    for name in ("checkpoint_2026-12-03_08-00-00.000001", "checkpoint_2026-12-03_08-00-01.000002"):
        (tmp_path / name).mkdir()
        (tmp_path / name / INFO_FILE).write_text("{}")
    (tmp_path / "checkpoint_2026-12-03_08-00-02.000003").mkdir()  # cut before its info file
    snapshot = tmp_path / "checkpoint_manager_snapshot.json"
    snapshot.write_text('{"ray_version": "x"}')
    assert _set_aside_torn_snapshot(tmp_path) is None and snapshot.is_file()
    snapshot.write_text("")
    assert _set_aside_torn_snapshot(tmp_path) == str(tmp_path / "checkpoint_2026-12-03_08-00-01.000002")
    assert not snapshot.exists() and (tmp_path / "checkpoint_manager_snapshot.json.torn").is_file()


def test_an_exported_model_yaml_pasted_into_a_matrix_elsewhere_finds_its_weights(tmp_path, monkeypatch):
    """README: a finished run's model.yaml "can be pasted into configs/models.yaml" (or a
    matrix). Its weights must be found from wherever the catalog or matrix is read: an
    absolute path, not ``model.pth`` relative to a folder the paste no longer sits in; and
    ``trained:<run>`` of a run folder moved whole still finds the weights beside model.yaml."""
    import shutil

    import yaml

    from raybench.catalog import load_matrix
    from raybench.models import check_model, get_loader, resolve_model
    from raybench.train.export import write_model_entry
    from raybench.train.osnet import build_osnet, export

    cfg = load_train_config("osnet_smoke")
    out = tmp_path / "runs" / "train" / cfg.name
    out.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    state = build_osnet(cfg.model, num_classes=24).state_dict()
    info = {"num_classes": 24, "epoch": 0}
    path = write_model_entry(cfg, export(cfg, state, info, out), out.relative_to(tmp_path), info)
    [(name, fields)] = yaml.safe_load(path.read_text()).items()

    elsewhere = tmp_path / "project" / "configs"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    (elsewhere / "mine.yaml").write_text(yaml.safe_dump(
        {"name": "mine", "models": [{"name": name, **fields}], "datasets": ["synth-a"]}))
    [model] = load_matrix(str(elsewhere / "mine.yaml")).models
    check_model(model, local_files=True)  # the weights file is found from here
    assert fields["weights"] == str(out / "model.pth")
    assert get_loader(model.loader).source(model).location == str(out / "model.pth")

    moved = tmp_path / "shared" / cfg.name  # the run folder copied whole to shared storage
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    [ref] = load_matrix(str(_matrix_file(elsewhere, f"trained:{moved}"))).models
    assert resolve_model(ref).weights == str(moved / "model.pth")


def _matrix_file(folder, model: str):
    import yaml

    path = folder / "ref.yaml"
    path.write_text(yaml.safe_dump({"name": "ref", "models": [model], "datasets": ["synth-a"]}))
    return path
