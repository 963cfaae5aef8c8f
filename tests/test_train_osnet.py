"""OSNet x0.25 on Ray Train, 2 CPU workers, synthetic domain A: the osnet_smoke recipe.

Two runs of the same recipe serve every test here. The first (to epoch FIRST) loses its
workers after epoch 1 (fault injection): Ray Train's FailureConfig restarts the group, which
resumes from the epoch-1 checkpoint. Then `raybench train` is run again with the recipe's own
epochs and the same --out: it resumes after epoch FIRST - 1 and finishes. The exported model,
loaded by the torchreid loader exactly as a matrix loads it, must rank held-out domain-A
identities clearly better than the same network before training (its own initial weights:
random OSNet features are a strong baseline on synthetic persons, mAP ~0.4), and domain B
worse than A.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from raybench.specs import load_dataset_catalog
from raybench.train.config import load_train_config
from raybench.train.sampler import pk_plan

pytestmark = pytest.mark.slow

FIRST = 20


@pytest.fixture(scope="module")
def run(ray_local, tmp_path_factory):
    from raybench.commands.train import train as train_command
    from raybench.train.run import train

    cfg = load_train_config("osnet_smoke")
    out = tmp_path_factory.mktemp("osnet") / cfg.name
    first = train(cfg.replace(epochs=FIRST, fail_once_after_epoch=1), out=out, workers=2)
    cli = CliRunner().invoke(train_command, ["osnet_smoke", "--out", str(out), "--workers", "2"])
    assert cli.exit_code == 0, cli.output
    return cfg, first, out, cli.output


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_and_every_epoch_is_logged(run):
    cfg, _, out, _ = run
    rows = _metrics(out)
    assert [r["epoch"] for r in rows] == list(range(cfg.epochs))  # each epoch once, across restarts
    first, last = np.mean([r["loss"] for r in rows[:2]]), np.mean([r["loss"] for r in rows[-2:]])
    assert last < 0.85 * first, [round(r["loss"], 3) for r in rows]
    assert all(r["images_per_s"] > 0 and 0 <= r["acc"] <= 1 for r in rows)
    log = (out / "train.log").read_text()
    assert "images/s" in log and f"epoch {cfg.epochs - 1} done" in log


def test_each_worker_batch_is_p_times_k(run):
    cfg, _, out, _ = run
    p, k = cfg.sampler.ids_per_batch, cfg.sampler.images_per_id
    from raybench.train.data import load_train_set

    labels = load_train_set(cfg.dataset).labels
    for row in _metrics(out):
        steps = len(pk_plan(labels, p, k, cfg.seed, row["epoch"])) // 2
        assert row["images"] == 2 * steps * p * k  # 2 workers, every step a full P x K batch


def test_a_lost_worker_group_resumes_from_the_last_checkpoint(run):
    cfg, first, out, _ = run
    log = (out / "train.log").read_text()
    assert "injecting a worker failure" in log
    assert "resumed from the checkpoint of epoch 1; continuing at epoch 2" in log
    assert first.metrics["epoch"] == FIRST - 1 and first.model_yaml.is_file()
    checkpoints = sorted(p for p in (out / "ray" / cfg.name).glob("checkpoint_*") if p.is_dir())
    assert len(checkpoints) == cfg.keep_checkpoints
    info = json.loads((checkpoints[-1] / "train.json").read_text())
    assert info["epoch"] == cfg.epochs - 1 and info["world"] == 2 and info["num_classes"] == 24


def test_rerun_of_the_same_command_resumes(run):
    """The CLI rerun with the same --out continued where the first run stopped."""
    cfg, _, out, output = run
    assert f"resumed from the checkpoint of epoch {FIRST - 1}; continuing at epoch {FIRST}" in (
        out / "train.log").read_text()
    assert f"trained:{out}" in output and "images_per_s" in output


def _map(embedder, dataset):
    import pyarrow.compute as pc

    from raybench.datasets import load_manifest
    from raybench.eval.rank import evaluate_features
    from raybench.models.images import load_pixels

    table = load_manifest(load_dataset_catalog()[dataset])
    parts = {}
    for split in ("query", "gallery"):
        rows = table.filter(pc.equal(table.column("split"), split))
        pixels = np.stack([load_pixels(p, embedder.preprocess) for p in rows.column("path").to_pylist()])
        parts[split] = (embedder.embed(pixels), rows.column("pid").to_numpy(), rows.column("camid").to_numpy())
    (qf, qp, qc), (gf, gp, gc) = parts["query"], parts["gallery"]
    return float(evaluate_features(qf, gf, qp, gp, qc, gc).mAP)


def test_training_really_learns_and_shows_the_domain_gap(run, tmp_path):
    """Held-out identities of domain A: the synthetic split keeps test ids out of train."""
    import torch

    from raybench.models import build_embedder
    from raybench.train.export import trained_model_spec
    from raybench.train.osnet import build_osnet

    cfg, _, out, _ = run
    spec = trained_model_spec(str(out))
    assert spec.loader == "torchreid" and spec.options["trained_on"] == "synth-a"
    torch.manual_seed(cfg.seed)  # what every worker did right before building the network
    torch.save(build_osnet(cfg.model, 24).state_dict(), tmp_path / "init.pth")
    before = dataclasses.replace(spec, name="before-training", weights=str(tmp_path / "init.pth"))
    scores = {(name, ds): _map(build_embedder(s, device="cpu"), ds)
              for name, s in (("trained", spec), ("untrained", before)) for ds in ("synth-a", "synth-b")}
    print("mAP", {f"{k[0]}/{k[1]}": round(v, 4) for k, v in scores.items()})
    a, a0, b = scores["trained", "synth-a"], scores["untrained", "synth-a"], scores["trained", "synth-b"]
    assert a > a0 + 0.15, scores  # real learning, not noise
    assert b < a, scores  # the cross-domain gap in miniature


def test_the_run_joins_the_ablation_smoke_matrix(run, monkeypatch):
    from raybench.specs import load_matrix
    from raybench.train.export import trained_model_spec

    cfg, _, out, _ = run
    monkeypatch.setenv("RAYBENCH_TRAINED", str(out.parent))
    matrix = load_matrix("ablation_smoke")
    assert matrix.models[0] == trained_model_spec(cfg.name)
    assert [d.name for d in matrix.datasets] == ["synth-a", "synth-b"]
