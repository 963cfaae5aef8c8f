"""Identity-balanced PK batches, split across DDP workers.

Batch-hard triplet loss needs, in every batch, K images of each of P identities (positives
and negatives to mine). The epoch plan is torchreid's ``RandomIdentitySampler``: every
identity's images are shuffled and cut into groups of K (an identity with fewer than K images
is sampled with replacement up to K; a last incomplete group is dropped), then batches are
drawn by repeatedly picking P distinct identities that still have groups left and taking one
group of each, until fewer than P identities remain.

Distribution: every worker computes the same plan from (seed, epoch) and takes every
``world``-th batch starting at its rank, truncated so all workers run the same number of
steps (``ray.train.report`` is a barrier; a worker with an extra step would hang the others).
Each worker's batch is a full P x K batch, so triplets are mined within a worker, as in
torchreid's and fast-reid's DDP training; the global batch is ``world`` x P x K.

Each item is ``(index, seed)``: the per-image augmentation seed travels with the index, so the
augmented pixels depend on (seed, epoch, position), not on DataLoader worker processes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np


def pk_plan(labels: Sequence[int], p: int, k: int, seed: int, epoch: int) -> list[np.ndarray]:
    """All PK batches of one epoch: a list of index arrays of length p * k (same on every rank)."""
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    by_id: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_id[int(label)].append(index)
    if len(by_id) < p:
        raise ValueError(f"a PK batch needs {p} identities but the training set has {len(by_id)}")
    groups: dict[int, list[np.ndarray]] = {}
    for label in sorted(by_id):
        idxs = np.asarray(by_id[label])
        if len(idxs) < k:
            idxs = rng.choice(idxs, size=k, replace=True)
        idxs = rng.permutation(idxs)
        groups[label] = [idxs[i:i + k] for i in range(0, len(idxs) - k + 1, k)]
    batches = []
    available = [label for label in sorted(groups) if groups[label]]
    while len(available) >= p:
        chosen = rng.choice(len(available), size=p, replace=False)
        picked = [available[i] for i in chosen]
        batches.append(np.concatenate([groups[label].pop() for label in picked]))
        available = [label for label in available if groups[label]]
    return batches


class PKBatchSampler:
    """A torch ``batch_sampler``: this rank's PK batches of the current epoch.

    Call ``set_epoch`` before iterating. ``max_steps`` caps the batches per epoch (smoke runs).
    """

    def __init__(self, labels: Sequence[int], p: int, k: int, *, rank: int = 0, world: int = 1,
                 seed: int = 0, max_steps: int | None = None):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.labels = np.asarray(labels)
        self.p, self.k, self.rank, self.world = p, k, rank, world
        self.seed, self.max_steps, self.epoch = seed, max_steps, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _mine(self) -> list[np.ndarray]:
        plan = pk_plan(self.labels, self.p, self.k, self.seed, self.epoch)
        steps = len(plan) // self.world
        if self.max_steps is not None:
            steps = min(steps, self.max_steps)
        if steps == 0:
            raise ValueError(
                f"an epoch has {len(plan)} PK batches, fewer than the {self.world} workers: "
                f"lower sampler.ids_per_batch or use fewer workers")
        return plan[self.rank: steps * self.world: self.world]

    def __len__(self) -> int:
        return len(self._mine())

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step, batch in enumerate(self._mine()):
            base = (self.seed * 1_000_003 + self.epoch) * 1_000_003 + step * self.world + self.rank
            yield [(int(i), (base * 131 + j) % (2**31)) for j, i in enumerate(batch)]
