"""The ReID losses: label-smoothed cross-entropy, batch-hard triplet, and CLIP-ReID's
supervised image-text contrastive loss. Pure functions of tensors (shapes in docstrings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_smooth_ce(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Cross-entropy against (1 - eps) * one_hot + eps / C (Szegedy et al. 2016), as torchreid's
    ``CrossEntropyLoss(label_smooth=True)``. logits [N, C] float, targets [N] int64 -> scalar."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    smooth = torch.full_like(log_probs, epsilon / logits.shape[1])
    smooth.scatter_(1, targets.unsqueeze(1), 1.0 - epsilon + epsilon / logits.shape[1])
    return -(smooth * log_probs).sum(dim=1).mean()


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """[N, D] -> [N, N] Euclidean distances (not squared), clamped away from 0 for the sqrt."""
    sq = x.pow(2).sum(dim=1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * x @ x.t()
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet(features: torch.Tensor, targets: torch.Tensor, margin: float = 0.3,
                       normalize: bool = False) -> torch.Tensor:
    """Hermans et al. 2017: for each anchor the farthest positive and the closest negative,
    ``relu(d_ap - d_an + margin)`` averaged (torchreid's TripletLoss); ``normalize``: on
    L2-normalised features. features [N, D], targets [N] -> scalar. Every anchor needs a
    positive and a negative in the batch (PK)."""
    features = F.normalize(features.float(), dim=1) if normalize else features.float()
    dist = pairwise_euclidean(features)
    same = targets.unsqueeze(0) == targets.unsqueeze(1)
    hardest_pos = dist.masked_fill(~same, float("-inf")).max(dim=1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(dim=1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def supcon(anchors: torch.Tensor, contrast: torch.Tensor, anchor_labels: torch.Tensor,
           contrast_labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """CLIP-ReID's SupConLoss: for each anchor, the mean log-softmax (over all contrast items)
    of the items with its label. anchors [N, D], contrast [M, D], labels [N] and [M] -> scalar.
    Stage 1 sums it both ways: image->text and text->image."""
    logits = anchors.float() @ contrast.float().t() / temperature
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    mask = (anchor_labels.unsqueeze(1) == contrast_labels.unsqueeze(0)).float()
    return -((mask * log_prob).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == targets).float().mean()
