"""The same recipe and seed give the same model on the same machine, bit for bit, whatever the
environment says about threads: a tiny OSNet recipe (2 CPU workers, 2 epochs of 2 steps)
trained twice on Ray Train, the second time with OMP_NUM_THREADS=2 in the workers' environment
(a shell, a notebook or a cluster image may set it, and Ray passes it on to the workers; torch's
CPU kernels split their sums by thread, so the last bits of the gradients, and after a few
dozen steps points of mAP, used to follow the setting)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from raybench.train.config import load_train_config

pytestmark = pytest.mark.slow


def _train(recipe: Path, out: Path, env: dict | None = None) -> dict:
    """`raybench train` of ``recipe`` into ``out`` on a local Ray of its own, whose workers get
    ``env``; the exported weights."""
    import ray

    from raybench.train.config import load_train_config
    from raybench.train.run import train

    ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env} if env else None)
    try:
        train(load_train_config(recipe), out=out)
    finally:
        ray.shutdown()
    return torch.load(out / "model.pth", weights_only=True)


def test_the_same_recipe_trains_the_same_weights_whatever_the_thread_setting(tmp_path):
    from raybench.train.osnet import build_osnet

    cfg = load_train_config("osnet_smoke")
    recipe = yaml.safe_load(Path(cfg.source).read_text())
    recipe.update(epochs=2, steps_per_epoch=2, workers=2)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    first = _train(path, tmp_path / "a")
    second = _train(path, tmp_path / "b", {"OMP_NUM_THREADS": "2"})
    assert first.keys() == second.keys()
    assert [key for key in first if not torch.equal(first[key], second[key])] == []
    torch.manual_seed(cfg.seed)  # what the workers start from: training changed it
    start = build_osnet(cfg.model, num_classes=24).state_dict()
    assert not torch.equal(start["conv1.conv.weight"], first["conv1.conv.weight"])
