"""The training split of a source dataset, as torch DataLoaders fed by PK batches.

Why a torch DataLoader and not Ray Data here: PK batches need random access by identity,
which a streaming dataset does not give; each Ray Train worker reads the images it needs
(the manifest is small) with its own DataLoader processes. Pixels come from the same
``load_pixels`` as evaluation, so train and test see identical decoding and resizing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from raybench.specs import DatasetSpec, Preprocess
from raybench.train.augment import normalize, train_view
from raybench.train.config import AugmentCfg, TrainConfig
from raybench.train.sampler import PKBatchSampler


@dataclass(frozen=True)
class TrainSet:
    """The train split, identities relabelled 0..num_classes-1 in sorted pid order."""

    paths: tuple[str, ...]
    labels: np.ndarray  # int64 [N], 0..num_classes-1
    pids: tuple[int, ...]  # the dataset's pid of each label

    @property
    def num_classes(self) -> int:
        return len(self.pids)

    def __len__(self) -> int:
        return len(self.paths)


def load_train_set(spec: DatasetSpec) -> TrainSet:
    """The train rows of ``spec``'s manifest (sorted by pid, then path: the same on every worker)."""
    import pyarrow.compute as pc

    from raybench.datasets import load_manifest
    from raybench.errors import DatasetError

    table = load_manifest(spec)
    table = table.filter(pc.equal(table.column("split"), "train"))
    if table.num_rows == 0:
        raise DatasetError(f"{spec.name}: no train images; a training run needs a dataset with a train split")
    rows = sorted(zip(table.column("pid").to_pylist(), table.column("path").to_pylist()))
    pids = sorted({pid for pid, _ in rows})
    label_of = {pid: i for i, pid in enumerate(pids)}
    return TrainSet(
        paths=tuple(path for _, path in rows),
        labels=np.asarray([label_of[pid] for pid, _ in rows], dtype=np.int64),
        pids=tuple(pids),
    )


def check_pk(cfg: TrainConfig, data: TrainSet) -> None:
    """Recipe.check of the PK recipes: every worker gets at least one full P x K batch."""
    from raybench.errors import SpecError

    try:
        len(PKBatchSampler(data.labels, cfg.sampler.ids_per_batch, cfg.sampler.images_per_id,
                           world=cfg.workers, seed=cfg.seed, max_steps=cfg.steps_per_epoch))
    except ValueError as exc:
        raise SpecError(f"{cfg.source}: {cfg.dataset.name} train ({len(data)} images, {data.num_classes} ids) "
                        f"with sampler {cfg.sampler.ids_per_batch} x {cfg.sampler.images_per_id} and "
                        f"{cfg.workers} worker(s): {exc}") from None


class ImageSet(torch.utils.data.Dataset):
    """Items are ``(index, seed)`` pairs (see sampler.py); yields (image [3, H, W], label)."""

    def __init__(self, data: TrainSet, preprocess: Preprocess, augment: AugmentCfg | None):
        self.data, self.preprocess, self.augment = data, preprocess, augment

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, int]):
        from raybench.models.images import load_pixels

        index, seed = item
        pixels = load_pixels(self.data.paths[index], self.preprocess)
        if self.augment is None:
            image = normalize(pixels, self.preprocess)
        else:
            image = train_view(pixels, self.preprocess, self.augment, seed)
        return torch.from_numpy(image), int(self.data.labels[index])


def pk_loader(data: TrainSet, cfg: TrainConfig, rank: int, world: int) -> torch.utils.data.DataLoader:
    """Augmented PK batches for this rank; call ``loader.batch_sampler.set_epoch(e)`` per epoch."""
    sampler = PKBatchSampler(data.labels, cfg.sampler.ids_per_batch, cfg.sampler.images_per_id,
                             rank=rank, world=world, seed=cfg.seed, max_steps=cfg.steps_per_epoch)
    return _loader(ImageSet(data, cfg.model.preprocess, cfg.augment), sampler, cfg.data_workers)


class PKImages:
    """The batches of a task that trains on images (OSNet, CLIP-ReID stage 2): this rank's
    augmented PK batches, moved to its device. Tasks subclass it and add ``loss``."""

    def __init__(self, data: TrainSet, cfg: TrainConfig, device, rank: int, world: int):
        self.device = device
        self.loader = pk_loader(data, cfg, rank, world)

    def steps(self, epoch: int) -> int:
        self.loader.batch_sampler.set_epoch(epoch)
        return len(self.loader.batch_sampler)

    def batches(self, epoch: int):
        self.loader.batch_sampler.set_epoch(epoch)
        for images, labels in self.loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def start_epoch(self, model, epoch: int) -> None:
        pass


def shard_loader(data: TrainSet, preprocess: Preprocess, rank: int, world: int, batch_size: int,
                 data_workers: int) -> torch.utils.data.DataLoader:
    """This rank's share (every world-th image) in order, not augmented: for feature banks."""
    indices = list(range(rank, len(data), world))
    batches = [[(i, 0) for i in indices[a:a + batch_size]] for a in range(0, len(indices), batch_size)]
    return _loader(ImageSet(data, preprocess, None), batches, data_workers)


def _loader(dataset, batch_sampler, data_workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=data_workers,
        pin_memory=torch.cuda.is_available(), persistent_workers=data_workers > 0,
    )
