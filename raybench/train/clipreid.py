"""The CLIP-ReID recipe in its two stages (Li et al., AAAI 2023; Syliz517/CLIP-ReID,
processor/processor_clipreid_stage{1,2}.py), on Ray Train.

Stage 1 (``clipreid-stage1``): both encoders frozen. Every train image's projected feature is
computed once, without augmentation (each worker embeds its share, then all-gather); then per
identity prompt tokens learn with the supervised contrastive loss image->text plus text->image
(temperature 1), on random batches of those features.

Stage 2 (``clipreid-stage2``): starts from stage 1's output; the image encoder fine-tunes on
augmented PK batches with ID loss (label-smoothed CE on both BN-neck classifiers) + batch-hard
triplet (on x11, feat and proj) + image-to-text label-smoothed CE against the identities' text
features. The ablation switch ``clipreid.train_text_encoder``: false (the paper: text features
computed once, text tower frozen) or true (the text tower fine-tunes too, through the batch's
identities; the bank of all identities is refreshed each epoch).

Exports: stage 1 writes ``clipreid.pth`` (image encoder as initialised, text encoder, learnt
prompts; stage 2's starting point, no model.yaml: its image tower is the untouched CLIP);
stage 2 writes ``clipreid.pth`` in the official checkpoint format + model.yaml for the
``clipreid`` loader.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from raybench.errors import SpecError
from raybench.train.clipmodel import ClipReID, PromptModel, build_clip, fetch_init, vit_features
from raybench.train.config import TrainConfig
from raybench.train.data import PKImages, TrainSet, check_pk, shard_loader
from raybench.train.losses import accuracy, batch_hard_triplet, label_smooth_ce, supcon
from raybench.train.recipe import Recipe

WEIGHTS_FILE = "clipreid.pth"


def image_fingerprint(visual: torch.nn.Module) -> str:
    """A hash of the image tower's weights: stage 1's export rebuilds the (frozen) tower and
    checks it is the one the workers used."""
    digest = hashlib.sha256()
    for name, tensor in sorted(visual.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Stage 1


class Stage1Task:
    head_prefixes = ()

    def __init__(self, cfg: TrainConfig, data: TrainSet, device, rank: int, world: int):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        clip = build_clip(cfg.model)
        self.info = {"image_fingerprint": image_fingerprint(clip.visual)}
        self.features, self.labels = _feature_bank(clip.visual.to(device), data, cfg, device, rank, world)
        self.module = PromptModel(clip, data.num_classes, cfg.clipreid.prompt).to(device)
        del clip

    def _plan(self, epoch: int) -> list[torch.Tensor]:
        order = torch.from_numpy(np.random.default_rng([self.cfg.seed, epoch, 1]).permutation(len(self.labels)))
        batches = list(order.split(self.cfg.clipreid.feature_batch_size))
        steps = _stage1_steps(self.cfg, len(batches), self.world)
        return batches[self.rank: steps * self.world: self.world]

    def steps(self, epoch: int) -> int:
        return len(self._plan(epoch))

    def batches(self, epoch: int):
        for idx in self._plan(epoch):
            idx = idx.to(self.device)
            yield self.features[idx], self.labels[idx]

    def start_epoch(self, model, epoch: int) -> None:
        pass

    def loss(self, model, batch):
        images, labels = batch
        texts = model(labels)
        i2t = supcon(images, texts, labels, labels)
        t2i = supcon(texts, images, labels, labels)
        with torch.no_grad():
            acc = (labels[(images @ texts.t()).argmax(dim=1)] == labels).float().mean()
        return i2t + t2i, {"i2t_loss": i2t.detach(), "t2i_loss": t2i.detach(), "acc": acc}, len(labels)


def _stage1_steps(cfg: TrainConfig, batches: int, world: int) -> int:
    """Feature batches per worker and epoch (equal on every worker); none is an error."""
    steps = batches // world
    if cfg.steps_per_epoch:
        steps = min(steps, cfg.steps_per_epoch)
    if steps == 0:
        raise SpecError(f"{cfg.source}: {cfg.dataset.name} train makes {batches} feature batch(es) of "
                        f"{cfg.clipreid.feature_batch_size}, fewer than the {world} worker(s): lower "
                        f"clipreid.feature_batch_size or use fewer workers")
    return steps


def check_stage1(cfg: TrainConfig, data: TrainSet) -> None:
    """Recipe.check of stage 1: every worker gets at least one feature batch."""
    _stage1_steps(cfg, -(-len(data) // cfg.clipreid.feature_batch_size), cfg.workers)


@torch.no_grad()
def _feature_bank(visual, data: TrainSet, cfg: TrainConfig, device, rank: int, world: int):
    """Projected CLS features of every train image (frozen tower, eval transform), on every rank."""
    visual.eval()
    loader = shard_loader(data, cfg.model.preprocess, rank, world, cfg.clipreid.feature_batch_size, cfg.data_workers)
    feats = [vit_features(visual, images.to(device))[2].float().cpu() for images, _ in loader]
    mine = (np.arange(rank, len(data), world), torch.cat(feats).numpy())
    parts = [mine]
    if world > 1:
        parts = [None] * world
        torch.distributed.all_gather_object(parts, mine)
    bank = np.zeros((len(data), mine[1].shape[1]), np.float32)
    for idx, values in parts:
        bank[idx] = values
    return torch.from_numpy(bank).to(device), torch.from_numpy(data.labels).to(device)


def export_stage1(cfg: TrainConfig, state: Mapping[str, Any], info: Mapping[str, Any], out: Path) -> None:
    torch.manual_seed(cfg.seed)  # the workers built the tower right after the same seeding
    visual = build_clip(cfg.model).visual
    if info.get("image_fingerprint") not in (None, image_fingerprint(visual)):
        raise SpecError(f"{cfg.name}: the image tower rebuilt for export differs from the one the "
                        f"workers used (random init with another torch build?); set model.init")
    full = {f"image_encoder.{k}": v for k, v in visual.state_dict().items()}
    full.update(state)
    torch.save(full, out / WEIGHTS_FILE)
    return None


# ---------------------------------------------------------------------------------------------
# Stage 2


class Stage2Task(PKImages):
    head_prefixes = ("classifier", "classifier_proj")

    def __init__(self, cfg: TrainConfig, data: TrainSet, device, rank: int, world: int):
        super().__init__(data, cfg, device, rank, world)
        self.cfg = cfg
        clip = build_clip(cfg.model, load_init=False)
        self.module = ClipReID(clip, data.num_classes, cfg.clipreid.prompt, cfg.clipreid.train_text_encoder)
        load_stage1(self.module, cfg)
        self.module.to(device)
        self._bank_ready = False

    def start_epoch(self, model, epoch: int) -> None:
        if self.cfg.clipreid.train_text_encoder or not self._bank_ready:
            self.module.refresh_text_bank()
            self._bank_ready = True

    def loss(self, model, batch):
        images, labels = batch
        logits, feats, i2t = model(images, labels)
        w = self.cfg.loss
        id_loss = sum(label_smooth_ce(x, labels, w.label_smooth) for x in logits)
        triplet = sum(batch_hard_triplet(f, labels, w.triplet_margin, w.triplet_normalize) for f in feats)
        i2t_loss = label_smooth_ce(i2t, labels, w.label_smooth)
        loss = w.id_weight * id_loss + w.triplet_weight * triplet + w.i2t_weight * i2t_loss
        parts = {"id_loss": id_loss.detach(), "triplet_loss": triplet.detach(), "i2t_loss": i2t_loss.detach(),
                 "acc": accuracy(i2t, labels)}
        return loss, parts, len(labels)


def prepare_stage2(cfg: TrainConfig) -> TrainConfig:
    """clipreid.stage1 (a run name or folder) -> the absolute path of its clipreid.pth."""
    from raybench.models.trained import run_dir

    path = Path(cfg.clipreid.stage1)
    path = (path if path.name == WEIGHTS_FILE else run_dir(cfg.clipreid.stage1) / WEIGHTS_FILE).resolve()
    if not path.is_file():
        raise SpecError(f"{cfg.name}: stage-1 output {path} not found; run the stage-1 recipe first "
                        f"(clipreid.stage1 names its run or --out folder)")
    return cfg.replace(clipreid=dataclasses.replace(cfg.clipreid, stage1=str(path)))


def load_stage1(module: ClipReID, cfg: TrainConfig) -> None:
    """Stage 1's clipreid.pth (see prepare_stage2) into the stage-2 module; only the new heads
    may be missing."""
    path = Path(cfg.clipreid.stage1)
    state = torch.load(path, map_location="cpu", weights_only=True)
    classes = state.get("prompt_learner.cls_ctx")
    if classes is None or classes.shape[0] != module.prompt_learner.cls_ctx.shape[0]:
        raise SpecError(f"{path}: stage 1 learnt prompts for {None if classes is None else classes.shape[0]} "
                        f"identities but {cfg.dataset.name} train has {module.prompt_learner.cls_ctx.shape[0]}")
    missing, unexpected = module.load_state_dict(state, strict=False)
    heads = ("classifier", "bottleneck")
    bad = [k for k in missing if not k.startswith(heads)] + list(unexpected)
    if bad:
        raise SpecError(f"{path}: does not fit {cfg.model.arch} (first mismatched key: {bad[0]})")


def export_stage2(cfg: TrainConfig, state: Mapping[str, Any], info: Mapping[str, Any], out: Path) -> dict:
    torch.save(dict(state), out / WEIGHTS_FILE)
    width, proj_dim = state["image_encoder.proj"].shape
    return {"loader": "clipreid", "arch": cfg.model.arch, "weights": WEIGHTS_FILE,
            "paradigm": "supervised", "dim": int(width + proj_dim)}


def prepare_stage1(cfg: TrainConfig) -> TrainConfig:
    return cfg.replace(model=fetch_init(cfg.model))


STAGE1 = Recipe(make_task=Stage1Task, export=export_stage1, prepare=prepare_stage1, check=check_stage1,
                description="CLIP-ReID stage 1: per-identity prompt tokens, both encoders frozen")
STAGE2 = Recipe(make_task=Stage2Task, export=export_stage2, prepare=prepare_stage2, check=check_pk,
                description="CLIP-ReID stage 2: image encoder fine-tuned with ID + triplet + image-to-text CE")
