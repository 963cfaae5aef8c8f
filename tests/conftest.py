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


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (address='local': never joins another cluster)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
