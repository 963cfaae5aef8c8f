"""`raybench bench video`: video frames through the Ray pipeline against the same model's image
pipeline, and what pooling tracklets costs the reducer.

A video cell's frames are images to the pipeline (the same decode tasks and embedding actors),
so their throughput should be the image pipeline's; this measures it instead of assuming it.
Both sides stream through ``raybench run``'s own stream (bench/embed.py ``ray_pipeline``), one
after the other in each round (images first in odd rounds, frames first in even ones, so that
an advantage of going first or second cancels), with the same model, batch size and crop size (128x64 JPEGs of
the project's generator): the image side the first N images of ``raybench bench embed``'s
synthetic set, the video side the N frames of a synthetic video dataset (synthvideo.py, MARS
layout) in its manifest's order, tracklet by tracklet. The headline is the median over rounds
of each round's frames/s over images/s, steady (after the first batch, on the actor's clock).

Scoring a video cell adds the pooling (raybench.eval.tracklets) before the ranking. It is timed
on the video side's shape, and at MARS's (657,709 query and gallery frames in 11,310 tracklets,
lengths drawn to the published totals, ``--pool-dim`` features): the pooling alone and the
whole score (pooling, distances, rank metrics) of the torchreid protocol.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import click

from raybench.bench.embed import pipeline_options

#: The video side's generator: 192 identities x 2 tracklets of 4..12 frames, 128x64.
SYNTH_VIDEO = {"ids": 192, "cams": 4, "tracklets_per_id": 2, "min_frames": 4, "max_frames": 12, "domain": "a",
               "seed": 0, "distractors": 8}
#: MARS's evaluated shape (torchreid's protocol; mars.py PUBLISHED)
MARS_SHAPE = {"query": (1980, 114493), "gallery": (9330, 543216)}


def video_frames():
    """The synthetic video dataset's query and gallery manifest rows (generated into the cache
    on first use), in manifest order."""
    import pyarrow.compute as pc

    from raybench.datasets import load_manifest
    from raybench.specs import DatasetSpec

    spec = DatasetSpec(name="bench-video", adapter="synthetic-video", layout_dir="", options=SYNTH_VIDEO)
    table = load_manifest(spec)
    return table.filter(pc.not_equal(table.column("split"), "train"))


def mars_shaped(dim: int, seed: int = 0) -> dict:
    """Columns with MARS's evaluated shape: per split, its tracklets with lengths (2..920, mean
    about 59) summing to the published frames; pids so that each query has gallery tracklets."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("tracklet", "frame", "pid", "camid", "split")}
    for split, (tracklets, frames) in MARS_SHAPE.items():
        lengths = np.clip(rng.gamma(1.2, frames / tracklets / 1.2, tracklets).round(), 2, 920)
        lengths = np.clip(np.round(lengths * frames / lengths.sum()), 2, 920).astype(int)
        diff = int(frames - lengths.sum())  # a few frames, spread one each over tracklets with room
        room = np.flatnonzero(lengths < 920 if diff > 0 else lengths > 2)
        lengths[rng.choice(room, abs(diff), replace=False)] += int(np.sign(diff))
        pids = rng.integers(1, 626, tracklets)
        for t, (n, pid) in enumerate(zip(lengths.tolist(), pids.tolist())):
            cols["tracklet"] += [f"{split[0]}{t:05d}"] * n
            cols["frame"] += range(n)
            cols["pid"] += [pid] * n
            cols["camid"] += [int(rng.integers(6))] * n
            cols["split"] += [split] * n
    out = {k: np.asarray(v, dtype=object if k in ("tracklet", "split") else np.int64) for k, v in cols.items()}
    out["path"] = out["tracklet"]
    out["embedding"] = rng.standard_normal((len(out["pid"]), dim), dtype=np.float32)
    return out


def time_scoring(cols: dict, repeat: int = 1) -> dict:
    """Seconds of the pooling alone and of the whole score (best of ``repeat``)."""
    from raybench.eval.protocol import score
    from raybench.eval.tracklets import pool_tracklets
    from raybench.specs import EvalSpec, Protocol

    pool, whole = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        pooled = pool_tracklets({**cols, "trial": None}, "mean", "all")
        pool.append(time.perf_counter() - start)
        start = time.perf_counter()
        score(cols, Protocol(), EvalSpec(), device="cpu")
        whole.append(time.perf_counter() - start)
    return {"frames": len(cols["pid"]), "tracklets": len(pooled["path"]), "dim": int(cols["embedding"].shape[1]),
            "pool_seconds": min(pool), "score_seconds": min(whole)}


def run(model: str, pretrained: bool = False, batch_size: int | None = None, actors: int | None = None,
        threads: int | None = None, repeat: int = 3, pool_dim: int | None = 512) -> dict:
    import dataclasses

    import numpy as np

    from raybench.bench import provenance
    from raybench.bench.embed import bench_images, bench_model, ray_pipeline
    from raybench.rundir.provenance import versions

    spec = bench_model(model, pretrained)
    spec = dataclasses.replace(spec, batch_size=batch_size or spec.batch_size)
    frames_table = video_frames()
    frames = list(dict.fromkeys(frames_table.column("path").to_pylist()))
    images = bench_images()[:len(frames)]
    record = {"benchmark": "video", "model": spec.name, "frames": len(frames), "images": len(images),
              "tracklets": len(set(frames_table.column("tracklet").to_pylist())), "batch_size": spec.batch_size,
              "cpus": os.cpu_count(), "repeat": repeat, "load_before": os.getloadavg()}
    rounds = []
    for i in range(repeat):  # both sides each round, which goes first alternating by round
        sides = [("images", images), ("frames", frames)][::1 if i % 2 == 0 else -1]
        rounds.append({side: ray_pipeline(spec, paths, actors, threads) for side, paths in sides})
    ratios = [r["frames"]["images_per_s_steady"] / r["images"]["images_per_s_steady"] for r in rounds]
    record.update(rounds=rounds, paired_ratios=ratios, ratio=statistics.median(ratios),
                  images_per_s=statistics.median(r["images"]["images_per_s_steady"] for r in rounds),
                  frames_per_s=statistics.median(r["frames"]["images_per_s_steady"] for r in rounds))
    cols = {name: frames_table.column(name).to_numpy(zero_copy_only=False)
            for name in ("path", "pid", "camid", "split", "tracklet", "frame")}
    cols["embedding"] = np.random.default_rng(0).standard_normal((len(cols["pid"]), 512), dtype=np.float32)
    record["scoring"] = {"bench": time_scoring(cols, repeat=3)}
    if pool_dim:
        record["scoring"]["mars"] = time_scoring(mars_shaped(pool_dim))
    record.update(load_after=os.getloadavg(), versions=versions(), git=provenance(),
                  date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return record


@click.command("video")
@pipeline_options
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds of (images, frames); the ratio is the median of the rounds' ratios.")
@click.option("--pool-dim", type=click.IntRange(min=0), default=512, show_default=True,
              help="Feature size of the MARS-shaped pooling timing (0: skip it; 512 needs about 1.4 GB).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON output (default: results/bench/video.json in the checkout).")
def video_command(model, pretrained, batch_size, actors, threads, repeat, pool_dim, out):
    """Video frames vs images through the Ray pipeline, same model and crop size; and the cost of
    pooling tracklets at the bench's and at MARS's size."""
    from raybench.bench import write_json
    from raybench.console import notice, print_table
    from raybench.paths import PROJECT_ROOT

    notice(f"bench video: {model}, images then video frames through the Ray pipeline, {repeat} round(s)...")
    record = run(model, pretrained, batch_size, actors, threads, repeat, pool_dim or None)
    record["command"] = (f"raybench bench video --model {model}{' --pretrained' if pretrained else ''}"
                         f"{f' --batch-size {batch_size}' if batch_size else ''}{f' --actors {actors}' if actors else ''}"
                         f"{f' --threads {threads}' if threads else ''} --repeat {repeat} --pool-dim {pool_dim}")
    path = write_json(record, Path(out) if out else PROJECT_ROOT / "results" / "bench" / "video.json")
    print_table([{"side": side, "steady per s": record[f"{side}_per_s"]} for side in ("images", "frames")],
                ["side", "steady per s"],
                title=f"video: {record['model']}, {record['frames']:,} frames in {record['tracklets']} tracklets vs "
                      f"{record['images']:,} images, batch {record['batch_size']} (medians of {repeat} round(s))")
    print(f"frames / images: {record['ratio']:.2f} (rounds: {', '.join(f'{r:.2f}' for r in record['paired_ratios'])})")
    for name, s in record["scoring"].items():
        print(f"scoring at {name} size ({s['frames']:,} frames, {s['tracklets']:,} tracklets, d={s['dim']}): "
              f"pooling {s['pool_seconds']:.2f} s, whole score {s['score_seconds']:.2f} s")
    notice(f"wrote {path}")
