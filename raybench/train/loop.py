"""The Ray Train worker loop shared by every recipe.

Per epoch: the recipe's batches -> loss -> backward -> step, the rate set every iteration from
the schedule; then metrics are averaged over workers and one checkpoint (the trainable
module, the optimizer, the epoch) is reported with ``ray.train.report``, from rank 0 (every
worker calls report once per epoch: it is a barrier). A worker group restarted by
FailureConfig, or a rerun with the same run name and storage, starts from
``ray.train.get_checkpoint()``: the epoch after the latest checkpoint, same weights, same
optimizer moments, same learning-rate curve, same PK plan (it depends on seed and epoch only).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from raybench.train.config import TrainConfig

STATE_FILE = "state.pt"
INFO_FILE = "train.json"


class InjectedFailure(RuntimeError):
    """Raised by ``fail_once_after_epoch`` (fault drills), never by real training."""


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``; ``config = {"cfg": TrainConfig, "log_dir": str, "resume":
    str | None}`` (``resume``: a checkpoint folder to start from when Ray has none on record)."""
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = config["cfg"]
    _quiet_report_lines()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    log = RunLog(Path(config["log_dir"]), rank)
    from raybench.train.data import load_train_set
    from raybench.train import RECIPES
    from raybench.train.schedule import build_optimizer

    threads = reproducible()
    torch.manual_seed(cfg.seed)
    data = load_train_set(cfg.dataset)
    task = RECIPES.get(cfg.recipe).make_task(cfg, data, device, rank, world)
    optimizer = build_optimizer(task.module.named_parameters(), cfg.optimizer, task.head_prefixes)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and config.get("resume"):  # Ray's record of it was torn (run._set_aside_torn_snapshot)
        checkpoint = ray.train.Checkpoint(config["resume"])
    start = restore(checkpoint, task.module, optimizer, device) if checkpoint else 0
    log.rewind(start)
    if start >= cfg.epochs:
        log.line(f"all {cfg.epochs} epochs are done (checkpoint of epoch {start - 1}); nothing to train")
    elif start:
        log.line(f"resumed from the checkpoint of epoch {start - 1}; continuing at epoch {start}")
    model = ray.train.torch.prepare_model(task.module) if world > 1 else task.module
    info = {"name": cfg.name, "recipe": cfg.recipe, "dataset": cfg.dataset.name, "arch": cfg.model.arch,
            "num_classes": data.num_classes, "num_images": len(data), "world": world, "torch_threads": threads,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            **getattr(task, "info", {})}
    log.line(f"{cfg.name}: {cfg.recipe} on {cfg.dataset.name} train ({len(data)} images, "
             f"{data.num_classes} ids), {world} worker(s) on {device} ({threads} torch thread(s) each), "
             f"epochs {start}..{cfg.epochs - 1}")
    for epoch in range(start, cfg.epochs):
        if cfg.fail_once_after_epoch is not None and checkpoint is None and epoch == cfg.fail_once_after_epoch + 1:
            inject_failure(cfg, log)
        metrics = run_epoch(cfg, task, model, optimizer, epoch, world, device, log)
        report(metrics, task.module, optimizer, epoch, {**info, **metrics}, rank)
        log.epoch(metrics)


def reproducible() -> int:
    """Make this worker's arithmetic depend on the recipe and the machine only; returns its
    torch threads.

    torch's CPU kernels split their reductions by thread, so the thread count changes the last
    bits of every gradient, and a few dozen steps from random weights turn them into points of
    mAP. Ray sets a worker's OMP_NUM_THREADS to its CPUs only where the environment does not
    already set it (a shell, a notebook or a cluster image may): the worker's CPUs, set here,
    decide instead. Deterministic algorithms (warn-only: an op without a deterministic version
    warns in the worker's log rather than failing the run) and no cuDNN autotuning do the same
    for GPUs; cuBLAS needs its workspace fixed before its first call to be deterministic.
    """
    import math

    import ray

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU") or 1.0
    threads = max(1, math.floor(cpus))
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return threads


def inject_failure(cfg: TrainConfig, log: "RunLog") -> None:
    """The fault drill's worker failure, once Ray Train has recorded every report made so far:
    a worker that fails while a report of its group is still in flight (rank 0 uploading the
    checkpoint, the other ranks' reports already taken) loses that report round, checkpoint
    and all, and the restarted group would start from an older checkpoint than the drill says."""
    import ray.train

    wait = getattr(ray.train, "get_all_reported_checkpoints", None)  # Ray Train V2
    if wait is not None:
        wait()
    log.line(f"fail_once_after_epoch={cfg.fail_once_after_epoch}: injecting a worker failure")
    raise InjectedFailure(f"fail_once_after_epoch={cfg.fail_once_after_epoch}: injected worker failure")


def _quiet_report_lines() -> None:
    """Ray Train (2.5x-2.60) logs every report, metrics and all, at INFO under a logger named by
    its file path, which LoggingConfig's level does not reach: one long console line per worker
    and epoch. Our epoch line says the same once."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: nothing to quiet
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def run_epoch(cfg: TrainConfig, task, model, optimizer, epoch: int, world: int, device, log: "RunLog") -> dict:
    from raybench.train.schedule import lr_factor, set_lr

    task.start_epoch(model, epoch)
    model.train()
    steps = task.steps(epoch)
    meter = Meter(device)
    scaler = torch.amp.GradScaler("cuda") if _amp_dtype(cfg, device) == torch.float16 else None
    start = time.perf_counter()
    for step, batch in enumerate(task.batches(epoch)):
        lr = set_lr(optimizer, lr_factor(cfg.schedule, cfg.epochs, epoch + step / steps))
        with _autocast(cfg, device):
            loss, parts, n = task.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        meter.add(loss, parts, n)
        if (step + 1) % cfg.log_every == 0:
            log.line(f"epoch {epoch} step {step + 1}/{steps} loss {loss.item():.4f} lr {lr:.2e}")
    seconds = time.perf_counter() - start
    return {"epoch": epoch, "lr": lr, **meter.reduce(world, seconds)}


class Meter:
    """Sums of the loss and the recipe's metrics over an epoch, averaged over workers at the end."""

    def __init__(self, device):
        self.device, self.sums, self.steps, self.images = device, {}, 0, 0

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], images: int) -> None:
        for key, value in {"loss": loss, **parts}.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()
        self.steps += 1
        self.images += images

    def reduce(self, world: int, seconds: float) -> dict[str, float]:
        keys = sorted(self.sums)
        values = torch.stack([self.sums[k] / max(self.steps, 1) for k in keys]
                             + [torch.tensor(float(self.images), device=self.device)])
        if world > 1:
            torch.distributed.all_reduce(values)
            values[:-1] /= world
        out = {k: float(v) for k, v in zip(keys, values[:-1].tolist())}
        out["images"] = int(values[-1].item())
        out["images_per_s"] = out["images"] / max(seconds, 1e-9)
        out["seconds"] = seconds
        return out


def report(metrics: dict, module: torch.nn.Module, optimizer, epoch: int, info: dict, rank: int) -> None:
    """One checkpoint per epoch, written by rank 0 (the module is identical on every rank)."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="raybench-ckpt-") as tmp:
        checkpoint = None
        if rank == 0:
            torch.save({"model": module.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
                       Path(tmp) / STATE_FILE)
            (Path(tmp) / INFO_FILE).write_text(json.dumps(info, indent=2))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def restore(checkpoint, module: torch.nn.Module, optimizer, device) -> int:
    """Load a reported checkpoint into ``module`` and ``optimizer``; returns the next epoch."""
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location=device, weights_only=True)
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]) + 1


def load_state(checkpoint_dir: str | Path) -> tuple[dict, dict]:
    """(module state_dict, info) of a checkpoint folder, on the CPU (the driver's export)."""
    folder = Path(checkpoint_dir)
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    return state["model"], json.loads((folder / INFO_FILE).read_text())


def _amp_dtype(cfg: TrainConfig, device) -> torch.dtype | None:
    if torch.device(device).type != "cuda" or cfg.precision == "fp32":
        return None
    return torch.bfloat16 if cfg.precision == "bf16" else torch.float16


def _autocast(cfg: TrainConfig, device):
    dtype = _amp_dtype(cfg, device)
    return torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()


class RunLog:
    """Rank 0's log: human lines in train.log, one JSON object per epoch in metrics.jsonl, both
    in --out (appended, so a resumed run keeps its history); the lines also go to the
    ``raybench.train`` logger, which Ray Train routes to the driver's console and its worker
    log files (a print() would show twice: Ray Train also turns prints into log records)."""

    def __init__(self, folder: Path, rank: int):
        self.folder, self.active = folder, rank == 0
        if self.active:
            folder.mkdir(parents=True, exist_ok=True)

    def line(self, text: str) -> None:
        if not self.active:
            return
        stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}"
        logging.getLogger("raybench.train").info(text)
        with open(self.folder / "train.log", "a") as fh:
            fh.write(stamped + "\n")

    def rewind(self, start: int) -> None:
        """Keep metrics.jsonl to the epochs before ``start``, the first epoch this worker group
        trains. A run killed (or whose workers were lost) after an epoch's report but before Ray
        Train recorded its checkpoint has logged an epoch that is trained again now: without this
        it would be in the file twice. A line cut short by a kill is dropped too."""
        path = self.folder / "metrics.jsonl"
        if not self.active or not path.is_file():
            return
        lines = path.read_text().splitlines()
        keep = [line for line in lines if _epoch_of(line) < start]
        if len(keep) == len(lines):
            return
        self.line(f"metrics.jsonl: dropped {len(lines) - len(keep)} line(s) of epochs from {start} on, "
                  f"which the checkpoint does not hold (they are trained again)")
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, path)

    def epoch(self, metrics: dict) -> None:
        if not self.active:
            return
        self.line("epoch {epoch} done: loss {loss:.4f} acc {acc:.3f} {images_per_s:.1f} images/s".format(
            **{"acc": float("nan"), **metrics}))
        with open(self.folder / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"time": time.time(), "pid": os.getpid(), **metrics}) + "\n")


def _epoch_of(line: str) -> float:
    """The epoch of a metrics.jsonl line; infinity for a line cut short by a kill (or blank)."""
    try:
        return int(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return float("inf")
