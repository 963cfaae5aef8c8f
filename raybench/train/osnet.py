"""The OSNet recipe: torchreid's OSNet with label-smoothed cross-entropy + batch-hard triplet
on PK batches (the "softmax + triplet" setting of torchreid and of Zhou et al.'s OSNet).

The exported weights are a plain torchreid state_dict (``model.pth``, the model zoo's format),
loaded by the ``torchreid`` loader as a local-path model; its feature is OSNet's 512-d
embedding (the ``fc`` output), the same tensor the triplet loss trains here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import torch

from raybench.train.config import ModelCfg, TrainConfig
from raybench.train.data import PKImages, TrainSet, check_pk
from raybench.train.losses import accuracy, batch_hard_triplet, label_smooth_ce
from raybench.train.recipe import Recipe

WEIGHTS_FILE = "model.pth"


def build_osnet(model: ModelCfg, num_classes: int) -> torch.nn.Module:
    """torchreid's architecture with a ``num_classes`` classifier; init per ``model.init``."""
    import warnings

    with warnings.catch_warnings():  # its evaluation's Cython notice is irrelevant to training
        warnings.filterwarnings("ignore", message="Cython evaluation")
        import torchreid

    from raybench.errors import SpecError, WeightsUnavailableError

    imagenet = model.init == "imagenet"
    try:
        net = torchreid.models.build_model(model.arch, num_classes=num_classes, loss="triplet",
                                           pretrained=imagenet)
    except KeyError:
        raise SpecError(f"unknown torchreid architecture {model.arch!r}; see torchreid.models.show_avai_models()") from None
    except Exception as exc:  # torchreid's gdown download of ImageNet weights, offline
        if imagenet:
            raise WeightsUnavailableError(
                f"{model.arch}: torchreid could not fetch its ImageNet weights ({exc}); put them in "
                f"torch's cache (~/.cache/torch/checkpoints) or set model.init to a local file or null") from None
        raise
    if model.init not in (None, "imagenet"):
        _load_init(net, Path(model.init).expanduser())
    return net


def _load_init(net: torch.nn.Module, path: Path) -> None:
    """A torchreid-format state_dict; the classifier is dropped when its classes differ."""
    from raybench.errors import WeightsUnavailableError

    if not path.is_file():
        raise WeightsUnavailableError(f"model.init {str(path)!r}: no such file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    own = net.state_dict()
    keep = {k.removeprefix("module."): v for k, v in state.items()}
    keep = {k: v for k, v in keep.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(keep, strict=False)


def prepare(cfg: TrainConfig) -> TrainConfig:
    """The init weights, checked on the driver: a local file made absolute (workers may run
    elsewhere) and present; torchreid's ImageNet weights fetched into torch's cache here once
    (the shipped recipes start from them), so that offline every worker does not fail in turn."""
    from raybench.errors import WeightsUnavailableError

    if cfg.model.init == "imagenet":
        build_osnet(cfg.model, num_classes=1)
    if cfg.model.init in (None, "imagenet"):
        return cfg
    path = Path(cfg.model.init).expanduser().resolve()
    if not path.is_file():
        raise WeightsUnavailableError(f"{cfg.source}: model.init {cfg.model.init!r}: no such file")
    return cfg.replace(model=dataclasses.replace(cfg.model, init=str(path)))


class OSNetTask(PKImages):
    head_prefixes = ("classifier",)

    def __init__(self, cfg: TrainConfig, data: TrainSet, device, rank: int, world: int):
        super().__init__(data, cfg, device, rank, world)
        self.cfg = cfg
        self.module = build_osnet(cfg.model, data.num_classes).to(device)

    def loss(self, model, batch):
        images, labels = batch
        logits, features = model(images)
        w = self.cfg.loss
        id_loss = label_smooth_ce(logits, labels, w.label_smooth)
        triplet = batch_hard_triplet(features, labels, w.triplet_margin, w.triplet_normalize)
        loss = w.id_weight * id_loss + w.triplet_weight * triplet
        return loss, {"id_loss": id_loss, "triplet_loss": triplet, "acc": accuracy(logits, labels)}, len(labels)


def export(cfg: TrainConfig, state: Mapping[str, Any], info: Mapping[str, Any], out: Path) -> dict:
    torch.save(dict(state), out / WEIGHTS_FILE)
    return {
        "loader": "torchreid",
        "arch": cfg.model.arch,
        "weights": WEIGHTS_FILE,
        "paradigm": "supervised",
        "dim": int(state["classifier.weight"].shape[1]),  # the classifier reads the feature
    }


RECIPE = Recipe(make_task=OSNetTask, export=export, prepare=prepare, check=check_pk,
                description="torchreid OSNet, label-smoothed CE + batch-hard triplet on PK batches")
