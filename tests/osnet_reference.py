"""torchreid's own evaluation path on the real fixtures, for the tests that compare raybench with
it: OSNet x0.25 built by torchreid with a checkpoint's every key, its transform (Resize(256, 128)
+ ToTensor + ImageNet normalize), compute_distance_matrix and evaluate_rank. Nothing is pasted."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from conftest import MARKET_MINI, OSNET_DIR


def reference_model(checkpoint: str, classes: int):
    """torchreid's own OSNet x0.25 with a checkpoint's every key (strict), in eval mode."""
    import torch
    import torchreid

    model = torchreid.models.build_model("osnet_x0_25", num_classes=classes, pretrained=False)
    model.load_state_dict(torch.load(OSNET_DIR / checkpoint, map_location="cpu"))
    return model.eval()


def folder_features(model, folder: Path):
    """torchreid's features of a folder's Market-named images with ``model``, with their pids and
    0-based cameras, in file-name order."""
    import torch
    from PIL import Image
    from torchvision import transforms as T

    transform = T.Compose([T.Resize((256, 128)), T.ToTensor(),
                           T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    paths = sorted(Path(folder).glob("*.jpg"))
    ids = [re.match(r"([-\d]+)_c(\d)", p.name).groups() for p in paths]
    with torch.no_grad():
        feats = model(torch.stack([transform(Image.open(p).convert("RGB")) for p in paths]))
    return feats, np.array([int(i) for i, _ in ids]), np.array([int(c) - 1 for _, c in ids])


def features(model):
    """(query, gallery) features of market1501-mini, each (features, pids, cameras)."""
    return folder_features(model, MARKET_MINI / "query"), folder_features(model, MARKET_MINI / "bounding_box_test")


def reference(query, gallery, max_rank: int) -> tuple[float, np.ndarray]:
    """mAP and CMC as torchreid computes them from features' output."""
    from torchreid.reid.metrics import compute_distance_matrix, evaluate_rank

    (qf, q_pids, q_cams), (gf, g_pids, g_cams) = query, gallery
    distmat = compute_distance_matrix(qf, gf, metric="euclidean").numpy()
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    return float(mAP), np.asarray(cmc)
