"""Small Market-style datasets and dummy-model matrices for the pipeline tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from raybench.datasets import Adapter
from raybench.rundir.records import CellResult
from raybench.specs import EvalSpec, MatrixSpec, parse_dataset, parse_model

#: Every key of a cell's result JSON: the fields of its dataclass, the one declaration.
RESULT_FIELDS = {f.name for f in dataclasses.fields(CellResult)}


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


def model_forward(model, paths) -> np.ndarray:
    """The model's own embeddings of ``paths``, outside Ray: each image decoded as the pipeline
    decodes it (load_pixels with the model's preprocessing), the model built as an actor builds
    it, one forward pass over all of them."""
    from raybench.models import build_embedder, resolve_preprocess
    from raybench.models.images import load_pixels

    preprocess = resolve_preprocess(model)
    embedder = build_embedder(model, device="cpu", preprocess=preprocess)
    return embedder.embed(np.stack([load_pixels(path, preprocess) for path in paths]))


def market_dataset(name: str, root: Path) -> object:
    return parse_dataset({"name": name, "adapter": "market1501", "root": str(root)}, f"test dataset {name}")


def matrix(models, datasets, name: str = "test", **kwargs) -> MatrixSpec:
    return MatrixSpec(name, tuple(models), tuple(datasets), EvalSpec(max_rank=10), **kwargs)


# -- datasets the catalog's adapters cannot make: test adapters, named "pipeline_helpers:..." --

#: A gallery image that the "broken" adapter's manifest lists but that does not exist.
MISSING = "0001_c6s1_999999_00.jpg"


def _market(root):
    from raybench.datasets.market1501 import ADAPTER

    return ADAPTER.parse(root)


def _with_missing_image(root):
    """The Market rows, and one more gallery row naming a file that does not exist."""
    import pyarrow as pa

    from raybench.datasets.manifest import make_manifest

    row = {"path": str(Path(root) / "bounding_box_test" / MISSING), "pid": 1, "camid": 5, "split": "gallery"}
    return pa.concat_tables([_market(root), make_manifest([row])])


def _two_trials(root):
    """The Market query and gallery rows twice, as trials 0 and 1."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _market(root)
    table = table.filter(pc.is_in(table.column("split"), pa.array(["query", "gallery"])))
    return pa.concat_tables([table.append_column(pa.field("trial", pa.int16(), nullable=False),
                                                 pa.array([t] * table.num_rows, pa.int16())) for t in (0, 1)])


BROKEN_ADAPTER = Adapter(parse=_with_missing_image, layout="a Market-1501 folder")
TRIALS_ADAPTER = Adapter(parse=_two_trials, layout="a Market-1501 folder")


def custom_dataset(name: str, root: Path, adapter: str, **protocol) -> object:
    """A dataset read by one of this module's adapters ("BROKEN_ADAPTER", "TRIALS_ADAPTER")."""
    return parse_dataset({"name": name, "adapter": f"pipeline_helpers:{adapter}", "root": str(root),
                          **({"protocol": protocol} if protocol else {})}, f"test dataset {name}")
