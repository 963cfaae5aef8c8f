"""Train-time augmentation, as torchreid / TransReID / CLIP-ReID apply it to 1:2 person crops:
random horizontal flip, zero padding then a random crop back to the input size, and random
erasing (Zhong et al. 2020) after normalisation.

Input: the uint8 [H, W, 3] pixels that ``raybench.models.images.load_pixels`` produced with the
model's own Preprocess (the same decode and resize as at evaluation); output: a normalised
float32 [3, H, W] tensor. Every random draw comes from the image's own seed (see sampler.py),
so a run is reproducible whatever the number of DataLoader processes. Erased pixels are set to
0 after normalisation, i.e. to the mean colour (torchreid fills with a fixed mean, CLIP-ReID
with noise: both only need "not the person").
"""

from __future__ import annotations

import math

import numpy as np

from raybench.specs import Preprocess
from raybench.train.config import AugmentCfg

# Zhong et al.'s defaults, kept by every ReID codebase
ERASE_AREA = (0.02, 0.4)
ERASE_ASPECT = 0.3
ERASE_TRIES = 100


def augment(pixels: np.ndarray, cfg: AugmentCfg, rng: np.random.Generator) -> np.ndarray:
    """Flip, pad + random crop: uint8 [H, W, 3] -> uint8 [H, W, 3] (a new array)."""
    out = pixels[:, ::-1] if rng.random() < cfg.flip else pixels
    if cfg.pad > 0:
        h, w = pixels.shape[:2]
        padded = np.pad(out, ((cfg.pad, cfg.pad), (cfg.pad, cfg.pad), (0, 0)))
        top, left = rng.integers(0, 2 * cfg.pad + 1, size=2)
        out = padded[top:top + h, left:left + w]
    return np.ascontiguousarray(out)


def normalize(pixels: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [3, H, W] with the model's mean/std."""
    x = pixels.astype(np.float32) / 255.0
    x = (x - np.asarray(preprocess.mean, np.float32)) / np.asarray(preprocess.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def random_erase(x: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Zero a random rectangle (2-40% of the area, aspect 0.3-3.3) of a [3, H, W] array in place."""
    if rng.random() >= probability:
        return x
    _, h, w = x.shape
    for _ in range(ERASE_TRIES):
        area = rng.uniform(*ERASE_AREA) * h * w
        aspect = math.exp(rng.uniform(math.log(ERASE_ASPECT), -math.log(ERASE_ASPECT)))
        eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < eh < h and 0 < ew < w:
            top, left = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
            x[:, top:top + eh, left:left + ew] = 0.0
            return x
    return x


def train_view(pixels: np.ndarray, preprocess: Preprocess, cfg: AugmentCfg, seed: int) -> np.ndarray:
    """The whole train transform of one image: float32 [3, H, W]."""
    rng = np.random.default_rng(seed)
    return random_erase(normalize(augment(pixels, cfg, rng), preprocess), cfg.erase, rng)
