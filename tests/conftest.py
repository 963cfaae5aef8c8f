"""Shared test fixtures: paths to the real fixtures, a session-wide local Ray, random person crops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures"
MARKET_MINI = FIXTURES / "market1501-mini"
OSNET_DIR = FIXTURES / "osnet"

needs_fixtures = pytest.mark.skipif(
    not MARKET_MINI.is_dir(), reason=f"real fixtures not found at {FIXTURES} (../shared is absent)"
)

#: (width, height) of person crops as datasets hold them: portrait, odd sizes, a landscape one
#: and one smaller than every model input
CROP_SIZES = [(64, 128), (50, 131), (97, 61), (20, 30)]


def write_crops(folder: Path, sizes=CROP_SIZES, seed: int = 0) -> list[Path]:
    """Random RGB JPEGs (quality 90) of ``sizes``, named like Market-1501 crops (id i, camera 1):
    the inputs on which raybench's pixels and embeddings are compared with each library's own."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        paths.append(folder / f"{i:04d}_c1s1_000001_00.jpg")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1], quality=90)
    return paths


@pytest.fixture(scope="session")
def crops(tmp_path_factory) -> list[Path]:
    """write_crops at CROP_SIZES, once per session (read-only: tests must not change them)."""
    return write_crops(tmp_path_factory.mktemp("crops"))


def pytest_configure(config):
    """Caches go to one temp dir per test session, never the user's ~/.cache; set before any
    Ray worker starts so that workers see the same environment."""
    import tempfile

    os.environ["RAYBENCH_CACHE"] = tempfile.mkdtemp(prefix="raybench-test-cache-")
    for name in ("RAYBENCH_DATA", "RAYBENCH_WEIGHTS", "RAY_ADDRESS"):
        os.environ.pop(name, None)


def _local_ray():
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (address='local': never joins another cluster).

    A module with a Ray of its own (test_pipeline_nodes.py: a cluster of several nodes) shuts
    this one down and leaves Ray shut down; the next test that asks for ray_local starts it
    again (``_ray_local_up``)."""
    yield _local_ray()
    import ray

    ray.shutdown()


@pytest.fixture(autouse=True)
def _ray_local_up(request):
    if "ray_local" in request.fixturenames:
        _local_ray()


#: The real small run that the report tests read (``real_run``): three models x two datasets.
REAL_RUN_MODELS = {"osnet-tiny-alpha": "supervised", "clip-fake": "language-aligned", "color-hist": "baseline",
                   "osnet-color": "hybrid"}  # the last: a fusion of the first and color-hist
REAL_RUN_DATASETS = ("alpha", "beta")
#: The cell that fails in it: clip-fake cannot embed beta's all-black gallery image.
REAL_RUN_FAILED = ("clip-fake", "beta")


@pytest.fixture(scope="session")
def real_run(ray_local, tmp_path_factory) -> Path:
    """A run directory made by the real pipeline (run_matrix), kept for the session: two tiny
    Market-style datasets, a supervised dummy model trained on alpha, a language-aligned dummy
    model that fails on beta, the catalog's colour-histogram baseline, and a fusion of the first
    and the last (a hybrid, in domain on alpha) (``real_run_matrix``)."""
    from pipeline_helpers import make_market
    from PIL import Image

    from raybench.pipeline.driver import RunOptions, run_matrix

    root = tmp_path_factory.mktemp("real-run")
    make_market(root / "alpha", seed=1)
    beta = make_market(root / "beta", seed=2)
    black = sorted((beta / "bounding_box_test").glob("*.jpg"))[-1]
    Image.new("RGB", (32, 64)).save(black)
    summary = run_matrix(real_run_matrix(root), str(root / "run"), RunOptions(), echo=lambda _: None)
    assert [(r["model"], r["dataset"]) for r in summary.failed] == [REAL_RUN_FAILED], summary.rows
    return root / "run"


def real_run_matrix(root: Path):
    """The matrix of ``real_run``, its datasets in ``root`` (the run directory's parent): a test
    that runs it again on a copy of the run finds every finished cell's embeddings current."""
    import dataclasses

    from pipeline_helpers import dummy_model, market_dataset, matrix

    from raybench.catalog import load_model_catalog
    from raybench.specs import FusionSpec

    models = [
        dataclasses.replace(dummy_model("osnet-tiny-alpha", trained_on="alpha"), paradigm="supervised"),
        dataclasses.replace(dummy_model("clip-fake", fail_on_black=True), paradigm="language-aligned"),
        load_model_catalog()["color-hist"],
    ]
    fusion = FusionSpec("osnet-color", ("osnet-tiny-alpha", "color-hist"), (1.0, 1.0))
    return matrix(models, [market_dataset(name, root / name) for name in REAL_RUN_DATASETS], name="real",
                  fusions=(fusion,))


#: The CLIP-ReID smoke recipes in training order: stage 1, then both stage-2 arms.
CLIPREID_SMOKE = ("clipreid_smoke_stage1", "clipreid_smoke_stage2_textfrozen", "clipreid_smoke_stage2_texttrained")


@pytest.fixture(scope="session")
def clipreid_runs(ray_local, tmp_path_factory):
    """CLIPREID_SMOKE trained on Ray Train (2 CPU workers) into a private run root, once per
    session: config name -> (TrainConfig, TrainResult). The runs' folder is
    ``result.out.parent`` (what $RAYBENCH_TRAINED must name for ``trained:<run>``)."""
    from raybench.train.config import load_train_config
    from raybench.train.run import train

    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYBENCH_TRAINED", str(root))  # clipreid.stage1 names the stage-1 run in this root
        out = {}
        for config in CLIPREID_SMOKE:
            cfg = load_train_config(config)
            out[config] = (cfg, train(cfg, workers=2))
        yield out
