"""`raybench train CONFIG [--out DIR] [--workers N] [--gpus-per-worker G]`."""

from __future__ import annotations

import click


@click.command("train")
@click.argument("config")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: $RAYBENCH_TRAINED/<name>, else runs/train/<name>). "
                   "Rerunning with the same folder resumes from its latest checkpoint.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray Train workers (DDP processes); default: the config's `workers`.")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
              help="GPUs per worker; default: 1 when the cluster has GPUs, else 0 (CPU workers).")
def train(config: str, out: str | None, workers: int | None, gpus_per_worker: float | None):
    """Train a ReID model on a dataset's train split with Ray Train, then export it as a model.

    CONFIG is a file or a name in configs/train/ (e.g. osnet_smoke). The finished run's
    model is `trained:<name>` in a matrix (or the entry in OUT/model.yaml). Progress: OUT/train.log,
    OUT/metrics.jsonl and the Ray dashboard's Train view.

    \b
      raybench train osnet_smoke                  # CPU, synthetic data, about a minute
      raybench train osnet_x1_0_msmt17 --workers 4
    """
    from raybench.console import notice, print_table
    from raybench.train.config import load_train_config
    from raybench.train.run import train as run_training

    cfg = load_train_config(config)
    notice(f"training {cfg.name} ({cfg.recipe}) on {cfg.dataset.name}")
    result = run_training(cfg, out=out, workers=workers, gpus_per_worker=gpus_per_worker)
    rows = [{"key": k, "value": v} for k, v in sorted(result.metrics.items())]
    print_table(rows, ["key", "value"], title=f"{cfg.name}: final epoch")
    notice(f"run folder: {result.out}")
    if result.model_yaml:
        from raybench.train.export import default_out

        ref = cfg.name if default_out(cfg.name).resolve() == result.out else str(result.out)
        notice(f"model: {result.model_yaml}; in a matrix: `trained:{ref}`")
