"""`raybench rehearse --matrix NAME`: every model of a matrix, with random weights, on synthetic
person crops, before any GPU hour is spent: does it build, how big is it, how fast can it go.

Per model (a catalog entry with the matrix's preprocessing, built with seeded random weights:
nothing is downloaded, no dataset is needed):

- in a fresh process (so peak memory is the model's own): build seconds, parameters, the
  forward-only ceiling: images/s of ``Embedder.features`` (normalised input, the model's
  precision and flip) on ready tensors of its input size and batch size, after one warm-up
  batch, and the process's peak host memory (and peak GPU memory on CUDA);
- through the same Ray Data path as ``raybench run`` (``pipeline.embed.embedding_stream``:
  decode tasks -> the embedding actor pool): the pipeline's images/s on synthetic JPEG crops
  of the sizes the matrix's datasets hold, steady (after the first batch, timed on the actor's
  own clock from the end of its first batch to the end of its last), and the model's start
  (actor start + build, up to the first batch);
- ratio = pipeline / ceiling, both measured in this run.

``limit`` is the number of timed batches on each side (the pipeline streams one more: its
first, which carries the start). The estimate of the full matrix on this hardware: for each
cell, the dataset's published number of evaluated images divided by the model's pipeline rate,
plus the model's start once per model (``raybench run`` loads a model once for all its cells).
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


# -- one model, in its own process -------------------------------------------------------


def measure_forward(spec, preprocess, device: str, batches: int) -> dict[str, Any]:
    """Build ``spec`` with seeded random weights and time its forward on ready tensors.
    Runs in a child process (``_child``): the peak memory figures are this model's."""
    import torch

    from raybench.bench import peak_rss
    from raybench.models import build_embedder

    start = time.perf_counter()
    torch.manual_seed(0)
    embedder = build_embedder(spec, device=device, pretrained=False, preprocess=preprocess)
    build_seconds = time.perf_counter() - start
    height, width = preprocess.size
    x = torch.randn(spec.batch_size, 3, height, width, device=embedder.device)
    with torch.inference_mode():
        embedder.features(x)  # warm-up: allocator, kernels, lazy initialisation
        _sync(embedder.device)
        timed = time.perf_counter()
        for _ in range(batches):
            embedder.features(x)
        _sync(embedder.device)
        seconds = time.perf_counter() - timed
    gpu = torch.cuda.max_memory_allocated() if embedder.device.startswith("cuda") else None
    return {"params": int(embedder.num_params), "build_seconds": build_seconds,
            "ceiling_images_per_s": batches * spec.batch_size / seconds,
            "peak_host_bytes": peak_rss(), "peak_gpu_bytes": gpu,
            "torch_threads": torch.get_num_threads()}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _child(args) -> dict[str, Any]:
    try:
        return measure_forward(*args)
    except Exception as exc:  # noqa: BLE001 - the model's row says why
        from raybench.pipeline.failure import error_text

        return {"error": f"build or forward failed: {error_text(exc)}"}


def forward_in_process(spec, preprocess, device: str, batches: int) -> dict[str, Any]:
    """``measure_forward`` in a fresh (spawned) process; a process that dies is an error row."""
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_child, (spec, preprocess, device, batches)).result()
        except concurrent.futures.process.BrokenProcessPool:
            return {"error": "the process measuring the model died (out of memory?)"}


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
    """``raybench run``'s stream over ``paths`` with random weights: steady images/s after the
    first batch, and the start (stream start to first batch, less one steady batch)."""
    from raybench.bench import drain_stream
    from raybench.pipeline.embed import Source, embedding_stream

    stream = embedding_stream(spec, preprocess, [Source(0, paths)], None, pool, name=f"rehearse:{spec.name}",
                              pretrained=False, decode_rows=spec.batch_size)
    run = drain_stream(stream)
    count, first, first_count = run["count"], run["first"], run["first_count"]
    if run["errors"]:
        return {"error": run["errors"][0]}
    if count != len(paths) or first is None or count == first_count:
        return {"error": f"the stream embedded {count} of {len(paths)} images, "
                         f"{'in one batch' if count == first_count else 'not all'}: no steady rate"}
    # Timed on the actor's clock, from the end of its first batch to the end of its last: the
    # batches' arrival at the driver is no measure (Ray Data can hand the first one over late,
    # when the next is already done, which made a few timed batches look faster than the
    # model's own forward). Waits for decoded pixels count: they are the pipeline's.
    rate = (count - first_count) / (run["last_embedded"] - run["first_embedded"])
    return {"pipeline_images_per_s": rate, "start_seconds": max(0.0, (first - run["start"]) - first_count / rate)}


# -- the whole matrix ---------------------------------------------------------------------


def eval_images(dataset) -> tuple[int | None, str]:
    """The published number of images a cell embeds (query + gallery, once each; a video
    dataset's frames), and where it comes from; None where nothing is published."""
    from raybench.datasets import published_stats
    from raybench.specs import frames_count

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


def rehearse(matrix, limit: int = 4, device: str = "cpu", batch_size: int | None = None,
             work_dir: Path | None = None, echo=print) -> dict[str, Any]:
    """The record `raybench rehearse` prints and writes (see the module docstring)."""
    import ray

    from raybench.datasets import get_adapter
    from raybench.models import check_model, resolve_preprocess
    from raybench.pipeline import runtime
    from raybench.pipeline.driver import _configure_ray_data
    from raybench.ray_runtime import connect

    started = connect(matrix.name, dashboard=False, kind="bench")
    try:
        _configure_ray_data(False)
        cluster = runtime.Cluster.current()
        if device == "cuda" and cluster.gpus < 1:
            raise RuntimeError("--device cuda: this Ray cluster has no GPU")
        if device == "cpu":
            cluster = dataclasses.replace(cluster, gpus=0)
        pool = runtime.plan_pool(cluster)
        sizes = [get_adapter(d.adapter).crop or DEFAULT_CROP for d in matrix.datasets] or [DEFAULT_CROP]
        folder = work_dir or Path(os.environ.get("TMPDIR", "/tmp")) / "raybench-rehearse"
        rows = []
        for model in matrix.models:
            spec = dataclasses.replace(model, batch_size=batch_size or model.batch_size)
            echo(f"rehearse {spec.name}: build, forward-only ceiling, then the pipeline...")
            row = {"model": spec.name, "status": "ok", "error": None, "batch_size": spec.batch_size}
            try:
                check_model(spec, local_files=False)
                preprocess = resolve_preprocess(spec, random_weights=True)
            except Exception as exc:  # noqa: BLE001 - the model's row says why
                rows.append(_finish_row({**row, "status": "failed", "error": str(exc)}))
                continue
            row.update(forward_in_process(spec, preprocess, device, limit))
            if not row.get("error"):
                paths = synthetic_crops(folder, sizes, (limit + 1) * spec.batch_size)
                row.update(measure_pipeline(spec, preprocess, paths, pool))
            rows.append(_finish_row(row))
        record = {"device": device, "cpus": cluster.cpus, "gpus": cluster.gpus, "limit": limit,
                  "pool": dataclasses.asdict(pool), "models": rows}
        record.update(estimate(matrix, rows))
        return record
    finally:
        if started:
            ray.shutdown()


FIELDS = ("model", "status", "error", "params", "build_seconds", "peak_host_bytes", "peak_gpu_bytes",
          "ceiling_images_per_s", "pipeline_images_per_s", "ratio")


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
    plus the model's start on its first cell; None where a rate or a count is missing."""
    cells, total, complete = [], 0.0, True
    by_model = {r["model"]: r for r in rows}
    for model in matrix.models:
        row = by_model[model.name]
        for i, dataset in enumerate(matrix.datasets):
            images, source = eval_images(dataset)
            rate = row.get("pipeline_images_per_s")
            seconds = None
            if images is not None and rate:
                seconds = images / rate + ((row.get("start_seconds") or 0.0) if i == 0 else 0.0)
                total += seconds
            else:
                complete = False
            cells.append({"model": model.name, "dataset": dataset.name, "images": images, "images_source": source,
                          "seconds": seconds})
    return {"estimate_seconds": total if complete else None, "estimate_partial_seconds": total, "cells": cells}
