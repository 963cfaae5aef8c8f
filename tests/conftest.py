"""Shared test fixtures: paths to the real fixtures, a session-wide local Ray."""

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
