"""What a training recipe provides to the shared Ray Train loop (loop.py).

A recipe is two functions: ``make_task`` builds, inside each Ray Train worker, the trainable
module and this worker's batches; ``export`` turns the final checkpoint into a model (weights
plus a models.yaml-style entry) on the driver. Recipes are registered by name, lazily, in
raybench.train.RECIPES, so the CLI and config validation import neither torch nor a model
library (nor this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from raybench.train.config import TrainConfig
    from raybench.train.data import TrainSet


class Task(Protocol):
    """One worker's side of a recipe."""

    module: "torch.nn.Module"  # the trainable module, on the worker's device, before DDP
    head_prefixes: tuple[str, ...]  # parameter names that get optimizer.head_lr_factor
    # optional: ``info`` (dict), recorded in every checkpoint's train.json for ``export``

    def steps(self, epoch: int) -> int:
        """Batches this worker runs in ``epoch`` (equal on every worker)."""

    def batches(self, epoch: int) -> Iterator[Any]:
        """This worker's batches of ``epoch``, already on its device."""

    def start_epoch(self, model: "torch.nn.Module", epoch: int) -> None:
        """Per-epoch preparation (e.g. CLIP-ReID's text-feature bank); ``model`` may be DDP."""

    def loss(self, model: "torch.nn.Module", batch: Any) -> tuple["torch.Tensor", dict[str, "torch.Tensor"], int]:
        """(loss to minimise, scalar metrics such as ``acc``, images in the batch)."""


@dataclass(frozen=True)
class Recipe:
    #: (cfg, train set, device, rank, world) -> Task
    make_task: Callable[["TrainConfig", "TrainSet", Any, int, int], Task]
    #: (cfg, module state_dict, train info, out dir) -> models.yaml entry (without the name) or
    #: None when the recipe's output is not an image model (CLIP-ReID stage 1: prompts)
    export: Callable[["TrainConfig", Mapping[str, Any], Mapping[str, Any], Path], dict | None]
    #: on the driver, before Ray starts: check and resolve what the workers will read (paths
    #: become absolute), so that a user error fails at once instead of being retried by
    #: FailureConfig on every worker
    prepare: Callable[["TrainConfig"], "TrainConfig"] = lambda cfg: cfg
    #: on the driver, with the train split loaded: raise a SpecError when it cannot fill an
    #: epoch of this recipe's batches for every worker (each worker would fail, be restarted
    #: by FailureConfig max_failures times and end in a traceback)
    check: Callable[["TrainConfig", "TrainSet"], None] = lambda cfg, data: None
    description: str = ""
