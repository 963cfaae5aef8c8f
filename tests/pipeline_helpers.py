"""Small Market-style datasets and dummy-model matrices for the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raybench.specs import EvalSpec, MatrixSpec, parse_dataset, parse_model

#: Every key of the per-cell result JSON (team contract).
RESULT_KEYS = {
    "model", "dataset", "status", "error", "mAP", "mINP", "cmc", "num_query", "num_valid_query",
    "num_gallery", "trials", "spread", "protocol", "per_query", "seconds", "embed_seconds",
    "eval_seconds", "paradigm", "spec_hash", "num_params", "skipped_images",
}


def make_market(root: Path, ids: int = 6, gallery_per_id: int = 3, seed: int = 0) -> Path:
    """A tiny Market-1501 copy: 1 query and ``gallery_per_id`` gallery crops per id, each id a
    colour (so a pixel projection ranks the right id first), cameras varied."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("query", 1), ("bounding_box_test", gallery_per_id), ("bounding_box_train", 1)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for pid in range(1, ids + 1):
            base = rng.integers(0, 200, 3)
            for k in range(count):
                cam = (k + (split == "query")) % 6 + 1
                noise = rng.integers(0, 40, (64, 32, 3))
                Image.fromarray((base + noise).astype(np.uint8)).save(folder / f"{pid:04d}_c{cam}s1_{k:06d}_00.jpg")
    return root


def dummy_model(name: str, dim: int = 8, **options) -> object:
    return parse_model({"name": name, "loader": "dummy", "arch": "random-projection", "paradigm": "baseline",
                        "batch_size": 8, "preprocess": {"size": [32, 16]}, "options": {"dim": dim, **options}},
                       f"test model {name}")


def market_dataset(name: str, root: Path) -> object:
    return parse_dataset({"name": name, "adapter": "market1501", "root": str(root)}, f"test dataset {name}")


def matrix(models, datasets, name: str = "test", **kwargs) -> MatrixSpec:
    return MatrixSpec(name, tuple(models), tuple(datasets), EvalSpec(max_rank=10), **kwargs)
