"""Optimizer and learning-rate schedule from the config.

The rate is a pure function of the fractional epoch (``lr_factor``), set on every iteration:
nothing to checkpoint but the epoch, and a resumed run continues on exactly the same curve.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Iterable

import torch

from raybench.train.config import OptimCfg, ScheduleCfg


def lr_factor(cfg: ScheduleCfg, epochs: int, t: float) -> float:
    """Multiplier of the base rate at fractional epoch ``t`` (0 <= t < epochs)."""
    warm = cfg.warmup_epochs
    if t < warm:
        return cfg.warmup_factor + (1.0 - cfg.warmup_factor) * t / warm
    if cfg.decay == "cosine":
        progress = min(1.0, (t - warm) / max(epochs - warm, 1e-8))
        return cfg.min_factor + (1.0 - cfg.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.decay == "step":
        return cfg.gamma ** bisect_right(cfg.milestones, int(t))
    return 1.0


def build_optimizer(named: Iterable[tuple[str, torch.nn.Parameter]], cfg: OptimCfg,
                    head_prefixes: tuple[str, ...] = ()) -> torch.optim.Optimizer:
    """One parameter group per trainable tensor (as torchreid and CLIP-ReID do), so that biases
    and new head layers can get their own rate; each group remembers its ``base_lr``."""
    groups = []
    for name, param in named:
        if not param.requires_grad:
            continue
        lr = cfg.lr
        if name.endswith("bias"):
            lr *= cfg.bias_lr_factor
        if head_prefixes and name.startswith(head_prefixes):
            lr *= cfg.head_lr_factor
        groups.append({"params": [param], "lr": lr, "base_lr": lr, "weight_decay": cfg.weight_decay})
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.Adam(groups, lr=cfg.lr, amsgrad=cfg.name == "amsgrad")


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Apply ``factor`` to every group's base rate; returns the first group's rate (for logs)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]
