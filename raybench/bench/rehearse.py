"""`raybench rehearse --matrix NAME`: every model of a matrix, with random weights, on synthetic
person crops, before any GPU hour is spent: does it build, how big is it, how fast can it go.

Per model (a catalog entry with the matrix's preprocessing, built with seeded random weights:
nothing is downloaded, no dataset is needed):

- in a fresh process (so peak memory is the model's own): build seconds, parameters, and the
  process's peak host memory (and peak GPU memory on CUDA) once it has embedded two batches
  (``Embedder.embed``, the call every family answers, numpy ones included);
- through the same Ray Data path as ``raybench run`` (``pipeline.embed.embedding_stream``:
  decode tasks -> the embedding actor pool) on synthetic JPEG crops of the sizes the
  matrix's datasets hold. Each embedding actor stamps every batch with when it was done and
  how long its model's ``embed`` took, on one clock (``EmbedWorker``). Both rates come from
  those same batches, steady (each actor's first batch, which carries the lazy set-up of the
  model and its kernels, left out), with the actor's own threads: the pipeline's images/s
  from the time between the ends of an actor's batches, the model's ("ceiling") from the time
  spent in ``embed`` alone. A batch's ``embed`` runs between the end of the batch before it
  and its own end, so the ratio pipeline / ceiling is at most 1: the share of the time the
  actors spend in the model rather than waiting for decoded pixels or handing results on.
  With several actors (GPUs), each actor's rates are summed. The model's start: the time from
  the stream's start to the first batch's end, less that batch at the steady pace.

``limit`` is the number of timed batches (the pipeline streams one more per actor, its first).
The estimate of the full matrix on this hardware: for each cell, the dataset's number of
evaluated images (published, or known for a generated dataset) divided by the model's
pipeline rate, plus the model's start once per model (``raybench run`` loads a model once for
all its cells).

On a CPU every torch model runs at (at most) ``CPU_BATCH_SIZE`` unless ``--batch-size`` says
otherwise: large ViTs at their GPU batch sizes would take most of an hour.

A video dataset's images are its frames: MARS's published 657,709 query and gallery frames, a
split published in tracklets only at the other split's mean tracklet length, and, with
``embed_frames: evenly:N``, at most N frames per query and gallery tracklet. Scoring a video
cell (pooling, then ranking tracklets) costs a small share of embedding it, and is left out.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

#: The synthetic crops are of each dataset's typical size (its adapter's ``crop``: decoding
#: cost grows with the source size), this one where the adapter states none.
DEFAULT_CROP = (128, 64)
#: The largest batch of a torch model in a CPU rehearsal (``--batch-size`` overrides it). The
#: paper matrix rehearsed on a 2-core CPU at batch 4 in about 9 minutes (README, "Before you
#: rent GPUs"); at the models' own batch sizes (32 to 128) it ran past 14.
CPU_BATCH_SIZE = 4


# -- one model, in its own process -------------------------------------------------------


def measure_forward(spec, preprocess, device: str) -> dict[str, Any]:
    """Build ``spec`` with seeded random weights, embed two batches of its batch size (the
    first sets up its kernels), and report its size, build time and peak memory. Runs in a
    child process (``forward_in_process``): the peak memory figures are this model's."""
    import sys

    import numpy as np

    from raybench.bench import peak_rss
    from raybench.models import build_embedder, numpy_only

    start = time.perf_counter()
    if not numpy_only(spec):
        import torch

        torch.manual_seed(0)  # as EmbedWorker seeds a model with random weights
    embedder = build_embedder(spec, device=device, pretrained=False, preprocess=preprocess)
    build_seconds = time.perf_counter() - start
    pixels = np.random.default_rng(0).integers(0, 256, (spec.batch_size, *preprocess.size, 3), dtype=np.uint8)
    for _ in range(2):
        embedder.embed(pixels)
    torch = sys.modules.get("torch")  # numpy-only models never import it
    gpu = torch.cuda.max_memory_allocated() if torch and embedder.device.startswith("cuda") else None
    return {"params": int(embedder.num_params), "build_seconds": build_seconds,
            "peak_host_bytes": peak_rss(), "peak_gpu_bytes": gpu}


def _child(send, args, quiet: bool) -> None:
    if quiet:  # a spawned process does not inherit the console's policy
        from raybench.console import quiet_libraries

        quiet_libraries()
    try:
        result = measure_forward(*args)
    except Exception as exc:  # noqa: BLE001 - the model's row says why
        from raybench.pipeline.failure import error_text

        result = {"error": f"build or forward failed: {error_text(exc)}"}
    send.send(result)


def forward_in_process(spec, preprocess, device: str) -> dict[str, Any]:
    """``measure_forward`` in a fresh (spawned) process; a process that dies is an error row.
    Interrupted (Ctrl-C, SIGTERM), the process is ended before the interrupt goes on."""
    import multiprocessing

    from raybench.ray_runtime import verbose

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, (spec, preprocess, device), not verbose()),
                            name=f"rehearse:{spec.name}", daemon=True)
    child.start()
    send.close()  # the child holds the only sending end: its death ends recv() with EOFError
    try:
        return receive.recv()
    except EOFError:
        return {"error": "the process measuring the model died (out of memory?)"}
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
        receive.close()


# -- the Ray Data pipeline ---------------------------------------------------------------


def synthetic_crops(folder: Path, sizes: list[tuple[int, int]], count: int, seed: int = 0) -> tuple[str, ...]:
    """``count`` JPEG person-crop stand-ins (smooth colour fields with noise, quality 90),
    cycling over ``sizes`` (height, width); written once per folder."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        height, width = sizes[i % len(sizes)]
        path = folder / f"{i:05d}_{height}x{width}.jpg"
        if not path.exists():
            coarse = Image.fromarray(rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)).resize((width, height))
            noisy = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3))
            Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return tuple(paths)


def measure_pipeline(spec, preprocess, paths: tuple[str, ...], pool) -> dict[str, Any]:
    """``raybench run``'s stream over ``paths`` with random weights: the steady rates of the
    pipeline and of the model on the same batches (``steady_rates``), and the model's start."""
    from raybench.bench import drain_stream
    from raybench.pipeline.embed import Source, embedding_stream

    stream = embedding_stream(spec, preprocess, [Source(0, paths)], None, pool, name=f"rehearse:{spec.name}",
                              pretrained=False, decode_rows=spec.batch_size)
    run = drain_stream(stream)
    if run["errors"]:
        return {"error": run["errors"][0]}
    rates = steady_rates(run["calls"]) if run["count"] == len(paths) else None
    if rates is None:
        return {"error": f"the stream embedded {run['count']} of {len(paths)} images, "
                         f"{'not all' if run['count'] != len(paths) else 'one batch per actor'}: no steady rate"}
    _, end, _, images = min(run["calls"], key=lambda call: call[1])  # the first batch done
    start = max(0.0, end - run["start_wall"] - images / rates["pipeline_images_per_s"])
    return {**rates, "start_seconds": start}


def steady_rates(calls) -> dict[str, Any] | None:
    """Steady rates from the embedding actors' batches, ``calls`` = [(actor, end, seconds in
    the model's embed, images)] (one clock): per actor, its first batch left out, the pipeline's
    images/s over the time from the end of its first batch to the end of its last, and the
    model's over the seconds spent in embed; summed over actors (see the module docstring).
    None when no actor did two batches."""
    by_actor: dict[str, list] = {}
    for actor, end, seconds, images in calls:
        by_actor.setdefault(actor, []).append((end, seconds, images))
    pipeline = ceiling = 0.0
    batches = images = 0
    for done in by_actor.values():
        done.sort()
        steady = done[1:]
        if not steady:
            continue
        count = sum(n for _, _, n in steady)
        pipeline += count / (steady[-1][0] - done[0][0])
        ceiling += count / sum(s for _, s, _ in steady)
        batches, images = batches + len(steady), images + count
    if not batches:
        return None
    return {"pipeline_images_per_s": pipeline, "ceiling_images_per_s": ceiling, "timed_batches": batches,
            "timed_images": images}


# -- the whole matrix ---------------------------------------------------------------------


def eval_images(dataset) -> tuple[int | None, str]:
    """The published number of images a cell embeds (query + gallery, once each; a video
    dataset's frames), and where it comes from; None where nothing is published."""
    from raybench.datasets import published_stats
    from raybench.specs import frames_count

    if dataset.adapter == "synthetic":
        return _generated_images(dataset), "generated (query + gallery)"
    stats = published_stats(dataset)
    query, gallery = (stats.get(s) or {} for s in ("query", "gallery"))
    count, source = _published_images(stats, query, gallery, dataset.protocol.trials)
    per_tracklet = frames_count(dataset.embed_frames)
    # the tracklets a cell embeds: its query and gallery ones; with trials, every tracklet is
    # evaluated in some trial (iLIDS-VID, PRID2011), so all of them (a split's count is per trial)
    splits = ("query", "gallery") if dataset.protocol.trials == 1 else ("train", "query", "gallery")
    tracklets = [(stats.get(s) or {}).get("tracklets") for s in splits]
    if per_tracklet and None not in tracklets:
        bound = per_tracklet * sum(tracklets)  # embed_frames: evenly:N embeds at most N a tracklet
        if count is None or bound < count:
            return bound, f"at most {per_tracklet} frames x {' + '.join(splits)} tracklets (embed_frames)"
    return count, source


def _published_images(stats, query, gallery, trials: int) -> tuple[int | None, str]:
    if "eval_images" in stats:
        return int(stats["eval_images"]), "eval_images"
    if trials == 1 and "images" in query and "images" in gallery:
        return int(query["images"]) + int(gallery["images"]), "query + gallery"
    known, unknown = (query, gallery) if "images" in query else (gallery, query)
    if trials == 1 and "images" in known and known.get("tracklets") and unknown.get("tracklets"):
        # a video split published in tracklets only: its frames at the other split's mean length
        mean = known["images"] / known["tracklets"]
        return int(known["images"] + round(mean * unknown["tracklets"])), \
            "frames of one split + the other's tracklets at its mean length (estimate)"
    if "images" in stats:  # trials (each image is evaluated in some trial), or no split counts
        return int(stats["images"]), "all images (upper bound)"
    return None, "not published"


def _generated_images(dataset) -> int:
    """A generated dataset's query and gallery images (its junk is dropped when it is read),
    from the plan its adapter draws, without drawing a pixel."""
    import numpy as np

    from raybench.datasets.synthetic import config, plan

    rows = plan(config(dict(dataset.options)))
    return int((np.isin(rows["split"], ["query", "gallery"]) & (rows["pid"] >= 0)).sum())


def rehearse(matrix, limit: int = 4, device: str = "cpu", batch_size: int | None = None,
             work_dir: Path | None = None, echo=print) -> dict[str, Any]:
    """The record `raybench rehearse` prints and writes (see the module docstring). SIGINT or
    SIGTERM ends it as ``RunInterrupted`` (exit 130), as they end a run: the child process
    and the stream are stopped, Ray is shut down, nothing is written."""
    import ray

    from raybench.datasets import get_adapter
    from raybench.pipeline import runtime
    from raybench.pipeline.driver import RunInterrupted, _configure_ray_data, _sigterm_interrupts
    from raybench.ray_runtime import connect

    started = connect(matrix.name, dashboard=False, kind="bench")
    rows: list[dict[str, Any]] = []
    try:
        with _sigterm_interrupts():  # after ray.init, which installs its own SIGTERM handler
            _configure_ray_data(False)
            cluster = runtime.Cluster.current()
            if device == "cuda" and cluster.gpus < 1:
                raise RuntimeError("--device cuda: this Ray cluster has no GPU")
            if device == "cpu":
                cluster = dataclasses.replace(cluster, gpus=0)
            pool = runtime.plan_pool(cluster)
            sizes = [get_adapter(d.adapter).crop or DEFAULT_CROP for d in matrix.datasets] or [DEFAULT_CROP]
            folder = work_dir or Path(os.environ.get("TMPDIR", "/tmp")) / "raybench-rehearse"
            for model in matrix.models:
                spec = dataclasses.replace(model, batch_size=batch_size or _batch_size(model, device))
                echo(f"rehearse {spec.name}: build, then the pipeline and the model on the same batches...")
                rows.append(_finish_row(rehearse_model(spec, device, pool, folder, sizes, limit)))
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted: the rehearsal stopped after {len(rows)} of "
                             f"{len(matrix.models)} model(s); nothing was written") from None
    finally:
        if started:
            ray.shutdown()
    record = {"device": device, "cpus": cluster.cpus, "gpus": cluster.gpus, "limit": limit,
              "pool": dataclasses.asdict(pool), "models": rows}
    record.update(estimate(matrix, rows))
    return record


def _batch_size(model, device: str) -> int:
    """A model's batch in a rehearsal without --batch-size: its own, except a torch model on a
    CPU, at most ``CPU_BATCH_SIZE`` (a weight-free numpy model costs next to nothing at its own
    batch, and at 4 would measure Ray Data's cost per batch rather than its pace)."""
    from raybench.models import numpy_only

    if device == "cpu" and not numpy_only(model):
        return min(model.batch_size, CPU_BATCH_SIZE)
    return model.batch_size


def rehearse_model(spec, device: str, pool, folder: Path, sizes, limit: int) -> dict[str, Any]:
    """One model's row: checked, built and measured in a child process, then streamed."""
    from raybench.models import check_model, resolve_preprocess

    row = {"model": spec.name, "status": "ok", "error": None, "batch_size": spec.batch_size}
    try:
        check_model(spec, local_files=False)
        preprocess = resolve_preprocess(spec, random_weights=True)
    except Exception as exc:  # noqa: BLE001 - the model's row says why
        return {**row, "status": "failed", "error": str(exc)}
    row.update(forward_in_process(spec, preprocess, device))
    if not row.get("error"):  # each actor's first batch is set-up: one more per actor
        paths = synthetic_crops(folder, sizes, (limit + pool.actors) * spec.batch_size)
        row.update(measure_pipeline(spec, preprocess, paths, pool))
    return row


FIELDS = ("model", "status", "error", "params", "build_seconds", "peak_host_bytes", "peak_gpu_bytes",
          "ceiling_images_per_s", "pipeline_images_per_s", "ratio", "timed_batches")


def _finish_row(row: dict[str, Any]) -> dict[str, Any]:
    """Every field present; the ratio from the row's own two rates; failed when any step failed."""
    out = {key: row.get(key) for key in FIELDS} | {k: v for k, v in row.items() if k not in FIELDS}
    if out["error"]:
        out["status"] = "failed"
    elif out["ceiling_images_per_s"] and out["pipeline_images_per_s"]:
        out["ratio"] = out["pipeline_images_per_s"] / out["ceiling_images_per_s"]
    return out


def estimate(matrix, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """{"estimate_seconds", "cells": [...]}: each cell's images / the model's pipeline rate,
    plus the model's start on its first cell that has both; None where a rate or a count is
    missing."""
    cells, total, complete = [], 0.0, True
    by_model = {r["model"]: r for r in rows}
    for model in matrix.models:
        row = by_model[model.name]
        start = row.get("start_seconds") or 0.0  # paid once per model, with its first cell
        for dataset in matrix.datasets:
            images, source = eval_images(dataset)
            rate = row.get("pipeline_images_per_s")
            seconds = None
            if images is not None and rate:
                seconds, start = images / rate + start, 0.0
                total += seconds
            else:
                complete = False
            cells.append({"model": model.name, "dataset": dataset.name, "images": images, "images_source": source,
                          "seconds": seconds})
    return {"estimate_seconds": total if complete else None, "estimate_partial_seconds": total, "cells": cells}
