"""The worked example of docs/extending.md, end to end: a dataset adapter and a model loader
defined outside the package (docs/examples/), named by "module:attr" targets in a matrix file,
parse the adapter's tiny copy, embed it, and score through the real pipeline (run_matrix)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from raybench.catalog import load_matrix
from raybench.datasets import get_adapter, load_manifest, published_stats
from raybench.datasets.check import check_one
from raybench.datasets.manifest import split_stats
from raybench.errors import SpecError
from raybench.models import build_embedder, numpy_only, resolve_preprocess
from raybench.models.images import load_pixels

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
MATRIX = EXAMPLES / "extending.yaml"


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """$RAYBENCH_DATA holding the example adapter's tiny copy (IdFolders/)."""
    monkeypatch.setenv("RAYBENCH_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def test_the_example_adapter_parses_its_tiny_copy_and_declares_its_numbers(data):
    matrix = load_matrix(str(MATRIX))
    [dataset] = matrix.datasets
    adapter = get_adapter(dataset.adapter)
    [write] = adapter.tiny_copies
    tiny = write(data)
    table = load_manifest(dataset)  # found at $RAYBENCH_DATA/IdFolders
    assert {s: tuple(v.values()) for s, v in split_stats(table).items()} == tiny.splits
    rows = {(r["split"], Path(r["path"]).name): (r["pid"], r["camid"]) for r in table.to_pylist()}
    assert all(rows[key] == value for key, value in tiny.rows.items()) and len(rows) == 16
    assert adapter.crop == (64, 32) and published_stats(dataset)["query"] == {"images": 100, "ids": 100, "cameras": 1}
    row = check_one(dataset, data)  # `raybench datasets check` reads the adapter's declaration
    assert row["status"] == "differs"
    assert row["detail"] == ("train images: 4 (published 400); train ids: 4 (published 100); "
                             "train cameras: 1 (published 2) (+4 more)")


def test_the_example_loader_gives_the_mean_colour_of_each_stripe():
    [model] = load_matrix(str(MATRIX)).models
    preprocess = resolve_preprocess(model)
    assert preprocess.size == (128, 64) and numpy_only(model)
    embedder = build_embedder(model, device="cpu")
    pixels = np.zeros((2, 128, 64, 3), np.uint8)
    pixels[0, :32] = (255, 0, 0)  # first image: red head stripe, the rest black
    pixels[1] = (0, 51, 255)  # second: one colour
    expected = np.array([[1, 0, 0] + [0] * 9, [0, 0.2, 1] * 4], np.float32)
    np.testing.assert_allclose(embedder.embed(pixels), expected, atol=1e-7)
    assert embedder.dim == 12 and embedder.num_params == 0
    with pytest.raises(SpecError, match="computes its features without torch"):
        build_embedder(dataclasses.replace(model, flip=True), device="cpu")


def test_the_worked_example_runs_through_the_pipeline(ray_local, data, tmp_path):
    from raybench.pipeline.driver import RunOptions, run_matrix
    from raybench.rundir.store import RunStore, embedding_matrix

    matrix = load_matrix(str(MATRIX))
    get_adapter(matrix.datasets[0].adapter).tiny_copies[0](data)
    summary = run_matrix(matrix, str(tmp_path / "run"), RunOptions(), echo=lambda _: None)
    assert summary.ok, summary.failed
    store = RunStore.open(tmp_path / "run")
    # the embedding actors built the loader from its target and embedded every image as it does here
    stored = store.read_embeddings("idfolders", "stripes")
    [model] = matrix.models
    preprocess = resolve_preprocess(model)
    own = build_embedder(model, device="cpu").embed(
        np.stack([load_pixels(path, preprocess) for path in stored.column("path").to_pylist()]))
    np.testing.assert_array_equal(embedding_matrix(stored), own)
    # each identity is one colour: every query finds its two gallery images first
    result = store.read_result("idfolders", "stripes")
    assert (result.status, result.num_query, result.num_gallery) == ("ok", 4, 8)
    assert result.mAP == 1.0 and result.cmc[0] == 1.0
