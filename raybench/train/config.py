"""A training run as one frozen dataclass, read from flat YAML (configs/train/*.yaml).

The training loop takes a ``TrainConfig``, never a dict of strings: every key is validated
here (file, key, allowed values in the message), so a typo fails before Ray starts. Sections
mirror the parts of a ReID recipe: the data (dataset + PK sampler + augmentation), the model,
the losses, the optimizer and its schedule, and how the run is distributed and checkpointed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from raybench.catalog import resolve_entry
from raybench.specs import PRECISIONS, DatasetSpec, Preprocess
from raybench.specs.schema import Slot, key, read
from raybench.train import RECIPES

OPTIMIZERS = ("sgd", "adam", "adamw", "amsgrad")
DECAYS = ("cosine", "step", "constant")


@dataclass(frozen=True)
class ModelCfg:
    """The network to train.

    arch: a torchreid name (``osnet_x1_0``) or an open_clip name (``ViT-B-16``).
    init: where the weights start. OSNet: ``imagenet`` (torchreid's ImageNet weights),
    a local state_dict path, or None (random). CLIP-ReID stage 1: an open_clip tag
    (``openai``), a local checkpoint, or None (random). Stage 2 starts from stage 1's output.
    open_clip_cfg: an inline open_clip architecture ({embed_dim, vision_cfg, text_cfg}) that
    replaces ``arch``'s own; tests use it for a tiny CLIP.
    """

    arch: str
    preprocess: Preprocess
    init: str | None = None
    open_clip_cfg: Mapping[str, Any] | None = field(default=None, hash=False)
    quick_gelu: bool = False


@dataclass(frozen=True)
class SamplerCfg:
    """PK batches: ``ids_per_batch`` identities x ``images_per_id`` images, per worker."""

    ids_per_batch: int = 16
    images_per_id: int = 4

    @property
    def batch_size(self) -> int:
        return self.ids_per_batch * self.images_per_id


@dataclass(frozen=True)
class AugmentCfg:
    """torchreid's train transforms: flip, pad then random crop back, random erasing."""

    flip: float = 0.5  # probability of a horizontal flip
    pad: int = 10  # pixels of zero padding before the random crop; 0 disables
    erase: float = 0.5  # probability of random erasing


@dataclass(frozen=True)
class LossCfg:
    label_smooth: float = 0.1  # epsilon of the label-smoothed cross-entropy
    triplet_margin: float = 0.3
    #: mine triplets on L2-normalised features (fast-reid's NORM_FEAT). torchreid and CLIP-ReID
    #: use raw features; from random weights, batch-hard on raw ReLU features can shrink them all
    #: instead of separating identities (measured on the smoke recipe), which this prevents.
    triplet_normalize: bool = False
    id_weight: float = 1.0
    triplet_weight: float = 1.0
    i2t_weight: float = 1.0  # CLIP-ReID stage 2: image-to-text cross-entropy


@dataclass(frozen=True)
class OptimCfg:
    name: str = key("adam", choices=OPTIMIZERS)
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9  # sgd only
    bias_lr_factor: float = 1.0  # CLIP-ReID trains biases at 2x the base rate
    head_lr_factor: float = 1.0  # torchreid's "staged lr": new layers (classifier) faster


@dataclass(frozen=True)
class ScheduleCfg:
    """Linear warm-up from ``warmup_factor`` x lr over ``warmup_epochs`` (fractional epochs
    allowed; the rate is set every iteration), then cosine to ``min_factor`` x lr, step decay
    by ``gamma`` at each epoch in ``milestones``, or constant."""

    warmup_epochs: float = 0.0
    warmup_factor: float = 0.01
    decay: str = key("cosine", choices=DECAYS)
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_factor: float = 0.0


@dataclass(frozen=True)
class ClipReIDCfg:
    prompt: str = "A photo of a X X X X person."  # each X becomes a learnt per-identity token
    stage1: str | None = None  # stage 2: the stage-1 run (run name or its --out folder)
    train_text_encoder: bool = False  # stage 2 ablation: fine-tune the text tower too
    feature_batch_size: int = 64  # stage 1: batch of precomputed image features


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``name`` is the Ray Train run name: rerunning a config with the
    same name and --out resumes from its latest checkpoint."""

    name: str
    recipe: str = key(choices=RECIPES.names)
    dataset: DatasetSpec
    model: ModelCfg
    epochs: int
    sampler: SamplerCfg = SamplerCfg()
    augment: AugmentCfg = AugmentCfg()
    loss: LossCfg = LossCfg()
    optimizer: OptimCfg = OptimCfg()
    schedule: ScheduleCfg = ScheduleCfg()
    clipreid: ClipReIDCfg = ClipReIDCfg()
    steps_per_epoch: int | None = None  # cap the PK batches of an epoch (smoke recipes)
    workers: int = 1
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else 0 (CPU)
    data_workers: int = 2  # DataLoader processes per training worker
    precision: str = key("fp32", choices=PRECISIONS)  # autocast dtype on GPU; CPU trains in fp32
    seed: int = 0
    log_every: int = 20  # iterations between log lines
    keep_checkpoints: int = 2
    max_failures: int = 3
    #: fault injection for tests and drills: raise once after this epoch's checkpoint, so
    #: FailureConfig restarts the workers (only in a worker group that started without a
    #: checkpoint: the restarted group, or a rerun of the command, resumes and trains on).
    fail_once_after_epoch: int | None = None
    description: str = ""
    source: str = key("<inline>", read=False)

    def _check(self, fail) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.workers >= 1, "workers must be at least 1"),
            (self.sampler.ids_per_batch >= 2, "sampler.ids_per_batch must be at least 2 (triplets need negatives)"),
            (self.sampler.images_per_id >= 2, "sampler.images_per_id must be at least 2 (triplets need positives)"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch must be at least 1"),
            (0 <= self.loss.label_smooth < 1, "loss.label_smooth must be in [0, 1)"),
            (self.optimizer.lr > 0, "optimizer.lr must be positive"),
            (list(self.schedule.milestones) == sorted(self.schedule.milestones), "schedule.milestones must increase"),
            (self.recipe != "clipreid-stage2" or self.clipreid.stage1,
             "clipreid-stage2 needs clipreid.stage1 (the stage-1 run)"),
            (self.log_every >= 1 and self.keep_checkpoints >= 1, "log_every and keep_checkpoints must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                fail("", message)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# YAML


def load_train_config(path: str | Path, datasets: Mapping[str, DatasetSpec] | None = None) -> TrainConfig:
    """configs/train/NAME.yaml (or any path) -> TrainConfig; a bare name looks in configs/train."""
    from raybench.catalog import find_config, load_dataset_catalog, train_configs_dir
    from raybench.specs import load_yaml

    path = find_config(path, train_configs_dir(), "training config")
    return parse_train_config(load_yaml(path), str(path), load_dataset_catalog() if datasets is None else datasets)


def parse_train_config(data: Any, where: str, datasets: Mapping[str, DatasetSpec]) -> TrainConfig:
    """A TrainConfig from YAML; ``dataset`` is a name in ``datasets`` or an inline entry."""

    def dataset(value: Any, slot: Slot) -> DatasetSpec:
        return resolve_entry(slot.expect(value, str, dict), datasets, slot.where, "dataset")

    return read(TrainConfig, data, where, given={"source": where}, parsers={"dataset": dataset})
