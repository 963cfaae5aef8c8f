"""The driver of a training run: a Ray Train TorchTrainer over the recipe's worker loop, then
the final checkpoint exported as a model.

Layout of ``out`` (default runs/train/<name>):
  config.json           the resolved TrainConfig
  train.log             human log (rank 0), appended across restarts and reruns
  metrics.jsonl         one JSON line per epoch: loss, acc, images/s, lr, ... (a resumed run
                        first drops the lines of epochs that its checkpoint does not hold)
  ray/<name>/           Ray Train's run storage: checkpoint_*/ (state.pt + train.json)
  model.pth | clipreid.pth + model.yaml   the exported model (see export.py)

Resume: Ray Train V2 keeps a snapshot of the reported checkpoints under storage_path/name;
re-creating the trainer with the same RunConfig(name, storage_path), which a rerun of the
same command does, makes ``ray.train.get_checkpoint()`` return the latest one. So does a
rerun after the driver was killed: the local Ray it started goes with it (its head processes
die with the driver; the workers, each in a process group of their own, exit within seconds
of losing their raylet). On a multi-node cluster ``out`` must be shared storage (every worker
writes its checkpoints and rank 0 its log there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from raybench.errors import SpecError
from raybench.train.config import TrainConfig


@dataclass(frozen=True)
class TrainResult:
    out: Path
    checkpoint: str | None  # the final checkpoint folder
    model_yaml: Path | None  # None for recipes whose output is not an image model
    metrics: dict


def train(cfg: TrainConfig, out: str | Path | None = None, workers: int | None = None,
          gpus_per_worker: float | None = None) -> TrainResult:
    """Run (or resume) ``cfg`` on the current Ray cluster, starting a local one if needed."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from raybench.ray_runtime import connect, verbose
    from raybench.train.export import default_out, export_run
    from raybench.train.loop import train_worker
    from raybench.train import RECIPES

    if "://" in str(out or ""):
        raise SpecError(f"--out {out}: a local or mounted shared folder, not a URI (the run's log and "
                        f"exported model are plain files)")
    out = Path(out or default_out(cfg.name)).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfg.replace(workers=workers or cfg.workers,
                      gpus_per_worker=gpus_per_worker if gpus_per_worker is not None else cfg.gpus_per_worker)
    cfg = _resolve_paths(RECIPES.get(cfg.recipe).prepare(cfg))
    _check_data(cfg)
    _check_resumable(cfg, out)
    resume = _set_aside_torn_snapshot(out / "ray" / cfg.name)
    (out / "config.json").write_text(json.dumps(_as_json(cfg), indent=2))
    started = connect(cfg.name, dashboard=None, kind="train")  # the dashboard's Train view, if installed
    try:
        gpus = _gpus(cfg.gpus_per_worker)
        _check_fits(cfg.workers, gpus, started)
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={"cfg": cfg, "log_dir": str(out), "resume": resume},
            scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=gpus > 0,
                                         resources_per_worker={"CPU": 1, "GPU": gpus} if gpus else None),
            run_config=RunConfig(
                name=cfg.name,
                storage_path=str(out / "ray"),
                failure_config=FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
                logging_config=LoggingConfig(log_level="WARNING"),  # our own lines say enough
            ),
        )
        with _poll_interval(), _echo(out / "train.log", not verbose()):
            result = trainer.fit()
    finally:
        if started:
            ray.shutdown()
    if result.checkpoint is None:
        return TrainResult(out, None, None, dict(result.metrics or {}))
    model_yaml = export_run(cfg, result.checkpoint.path, out)
    return TrainResult(out, result.checkpoint.path, model_yaml, dict(result.metrics or {}))


#: Ray Train V2's controller takes one ``ray.train.report`` per poll of the workers (its queue
#: holds one), every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default): short epochs (smoke
#: recipes) would wait for it, and a lost worker is noticed only at the next poll. Unless the
#: user set it, runs poll every half second (the variable is read by the controller at fit()).
POLL_ENV, POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5"


@contextlib.contextmanager
def _poll_interval():
    if POLL_ENV in os.environ:
        yield
        return
    os.environ[POLL_ENV] = POLL_S
    try:
        yield
    finally:
        os.environ.pop(POLL_ENV, None)


@contextlib.contextmanager
def _echo(log: Path, on: bool, every_s: float = 0.5):
    """Print the lines rank 0 adds to train.log while the block runs. Ray forwards worker output
    to this console only with -v (prefixed ``(RayTrainWorker pid=...)``, among Ray's own lines);
    by default the run's own lines come this way instead, without their time stamp."""
    if not on:
        yield
        return
    stop = threading.Event()
    start = log.stat().st_size if log.exists() else 0

    def follow():
        offset = start
        while not stop.wait(every_s):
            offset = _print_lines(log, offset)
        _print_lines(log, offset)

    thread = threading.Thread(target=follow, name="raybench-train-log", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _print_lines(log: Path, offset: int) -> int:
    """Print the whole lines of ``log`` after byte ``offset``; the offset after them."""
    from raybench.console import notice

    if not log.exists():
        return offset
    with open(log, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    whole = chunk[:chunk.rfind(b"\n") + 1]
    for line in whole.decode(errors="replace").splitlines():
        notice(STAMP.sub("", line, count=1))
    return offset + len(whole)


#: The time stamp RunLog puts before each line of train.log.
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def latest_checkpoint(storage: Path) -> Path | None:
    """The latest checkpoint folder of a run's Ray Train storage that holds its info file
    (written with the weights), or None."""
    from raybench.train.loop import INFO_FILE

    infos = sorted(storage.glob(f"checkpoint_*/{INFO_FILE}"))
    return infos[-1].parent if infos else None


def _set_aside_torn_snapshot(storage: Path) -> str | None:
    """Ray Train rewrites its list of checkpoints (checkpoint_manager_snapshot.json) in place,
    so a run killed during that write leaves it empty or cut, and Ray then refuses to start
    ("Expecting value"). Such a file is renamed ``*.torn`` and the latest checkpoint folder is
    resumed by path (train_worker's ``resume``); None when there is nothing to repair."""
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    snapshot = storage / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
    if not snapshot.is_file():
        return None
    try:
        json.loads(snapshot.read_text())
        return None
    except ValueError:
        snapshot.replace(snapshot.with_name(snapshot.name + ".torn"))
    latest = latest_checkpoint(storage)
    return str(latest) if latest else None


#: What a rerun may change and still resume a run folder: how long it trains and on what
#: resources, its logging and fault drills. Anything else (the model, data, sampler, augmentation,
#: loss, optimizer, schedule, seed, ...) would resume one training with another's settings.
RESUMABLE_CHANGES = ("epochs", "workers", "gpus_per_worker", "data_workers", "log_every", "keep_checkpoints",
                     "max_failures", "fail_once_after_epoch", "description", "source")


def _check_resumable(cfg: TrainConfig, out: Path) -> None:
    """A rerun resumes the latest checkpoint under ``out``: refuse, before any worker starts,
    one written by another recipe, dataset or architecture (it would not load), or with other
    settings than ``cfg``'s (the resolved config the run folder's config.json records; any key
    but RESUMABLE_CHANGES), naming the keys that differ."""
    from raybench.train.loop import INFO_FILE

    latest = latest_checkpoint(out / "ray" / cfg.name)
    if latest is None:
        return
    old = json.loads((latest / INFO_FILE).read_text())
    new = {"recipe": cfg.recipe, "dataset": cfg.dataset.name, "arch": cfg.model.arch}
    for key, value in new.items():
        if key in old and old[key] != value:
            raise SpecError(f"{out} holds run {cfg.name!r} with {key} {old[key]!r}, not {value!r}: "
                            f"rerunning would resume it. Use another --out (or run name)")
    recorded = out / "config.json"
    if not recorded.is_file():  # a folder written before config.json held the whole config
        return
    differ = [f"{key} {a!r}, not {b!r}" for key, a, b in _changed(_settings(json.loads(recorded.read_text())),
                                                                  _settings(_as_json(cfg)))]
    if differ:
        raise SpecError(f"{out} holds run {cfg.name!r} trained with other settings ({'; '.join(differ)}): "
                        "rerunning would resume it with these. Use another --out (or run name), or the same settings")


def _as_json(cfg: TrainConfig) -> dict:
    """The config as config.json records it."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _settings(config: dict) -> dict:
    """What a resumed run must share with the run it resumes: all but RESUMABLE_CHANGES, the
    dataset by name (its root may move with the folder)."""
    out = {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}
    out["dataset"] = (config.get("dataset") or {}).get("name")
    return out


def _changed(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old, new) for each key whose value differs, nested mappings key by key."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def _check_data(cfg: TrainConfig) -> None:
    """The train split, read here once before Ray starts: a dataset that is missing, has no
    train split, or cannot fill an epoch of the recipe's batches for every worker is a one-line
    error now, not a failure of every worker that FailureConfig retries into a traceback."""
    from raybench.train.data import load_train_set
    from raybench.train import RECIPES

    RECIPES.get(cfg.recipe).check(cfg, load_train_set(cfg.dataset))


def _resolve_paths(cfg: TrainConfig) -> TrainConfig:
    """The dataset's root, resolved here (synthetic data generated once, here, not by every
    worker at the same time; $RAYBENCH_DATA read in this process): workers get a path."""
    from raybench.datasets import resolve_root

    root = str(resolve_root(cfg.dataset).resolve())
    return cfg.replace(dataset=dataclasses.replace(cfg.dataset, root=root))


def _check_fits(workers: int, gpus: float, local: bool) -> None:
    """A worker group larger than the local Ray this run started can never be placed: Ray Train
    would wait for it (60 s per attempt, every attempt FailureConfig allows) and end in a
    traceback. Say so now. A joined cluster may autoscale: there it is only a notice."""
    import ray

    from raybench.console import notice

    have = ray.cluster_resources()
    for resource, each in (("CPU", 1.0), ("GPU", gpus)):
        need, available = workers * each, have.get(resource, 0.0)
        if not each or need <= available:
            continue
        message = (f"{workers} worker(s) need {need:g} {resource}(s); the Ray cluster has "
                   f"{available:g}")
        if local:
            fewer = int(available // each)
            hints = [f"--workers {fewer}"] if fewer else []
            hints += ["--gpus-per-worker 0 (CPU workers)"] if resource == "GPU" else []
            raise SpecError(f"{message} (the local Ray started here): use {' or '.join(hints)}, "
                            f"or join a larger cluster with RAY_ADDRESS")
        notice(f"{message} now: the workers start once the cluster scales up")


def _gpus(per_worker: float | None) -> float:
    """GPUs per worker: as given, else 1 when the cluster has GPUs, else 0 (CPU workers)."""
    import ray

    if per_worker is not None:
        return float(per_worker)
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
