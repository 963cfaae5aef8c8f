"""`raybench bench embed`: the Ray pipeline against a plain single-process torch loop.

Both sides embed the same synthetic images (the project's generator, 128x64 JPEG crops, made
once into the cache) with the same model, preprocessing and batch size, one after the other in
one run:

- plain: one process, ``for batch: decode + resize every image (PIL), embed``: what a script
  with a torch DataLoader at num_workers=0 does;
- ray: ``raybench run``'s own stream (pipeline.embed.embedding_stream): decode tasks feeding an
  actor pool, on a local Ray started here.

Rounds alternate the sides (plain, ray, plain, ray, ...; 3 rounds by default), and the headline
ratio is the MEDIAN of the per-round paired ratios (each round's ray over the same round's
plain): the two sides of a round run back to back under about the same machine load, so a
burst of other work moves both, and one lucky or unlucky round does not decide the result.
Each side's best round (and best over best) is kept as a secondary figure. Reported: images/s
of each and their ratio, without start-up (from the first embedded batch to the last, over the
images after that batch, on both sides) and with it (plain: model build + loop; ray:
``ray.init`` + actor start + stream). While the actor starts, Ray's decode tasks run ahead; the
stream's full wall time (actor start included, ``ray.init`` not) is reported too. The target
(``TARGET``: the pipeline at least as fast as the plain loop without start-up) is judged on
the paired median.
"""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import contextmanager
from pathlib import Path

import click

#: The generator's parameters: 256 identities x 8 images = 2,048 crops.
SYNTH = {"ids": 256, "cams": 6, "images_per_id": 8, "domain": "a", "seed": 0}
#: Ray pipeline / plain loop, steady throughput (without start-up): the issue's target.
TARGET = 1.0
#: Ratios of the ray side over a plain side: record key -> (plain side, throughput key).
RATIOS = {
    "ratio_without_startup": ("plain", "images_per_s_steady"),
    "ratio_stream": ("plain", "images_per_s"),
    "ratio_with_startup": ("plain", "images_per_s_with_startup"),
    "ratio_vs_plain_actor_threads": ("plain_actor_threads", "images_per_s_steady"),
}


def bench_images() -> list[str]:
    """Paths of the benchmark's synthetic images (generated into the cache on first use)."""
    from raybench.datasets import load_manifest
    from raybench.specs import DatasetSpec

    spec = DatasetSpec(name="bench-embed", adapter="synthetic", layout_dir="", options=SYNTH)
    return sorted(set(load_manifest(spec).column("path").to_pylist()))


def bench_model(name: str, pretrained: bool):
    """A catalog model; without ``pretrained``, the same architecture with random weights
    (throughput does not depend on the weights' values, and nothing is downloaded)."""
    from raybench.catalog import catalog_get, load_model_catalog

    spec = catalog_get(load_model_catalog(), name, "model")
    return spec if pretrained else dataclasses.replace(spec, name=f"{name}-untrained", weights=None)


def _throughput(count: int, first_count: int, start: float, first: float, end: float) -> dict:
    """Throughput overall, and steady: after the first batch (when there is anything after it)."""
    steady = (count - first_count) / (end - first) if count > first_count and end > first else count / (end - start)
    return {"seconds": end - start, "first_batch_seconds": first - start,
            "images_per_s_steady": steady, "images_per_s": count / (end - start)}


@contextmanager
def torch_threads(count: int | None):
    """torch's intra-op thread count set to ``count`` (None: unchanged) for a block."""
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def plain_loop(spec, paths: list[str], batch_size: int, threads: int | None = None) -> dict:
    """The peer: one process, decode a batch, embed it, repeat (torch's default threads)."""
    import numpy as np
    import torch

    from raybench.models import build_embedder, resolve_preprocess
    from raybench.models.images import load_pixels

    with torch_threads(threads) as used:
        start = time.perf_counter()
        preprocess = resolve_preprocess(spec)
        torch.manual_seed(0)  # random weights as the pipeline's actors draw them
        embedder = build_embedder(spec)
        loop_start = time.perf_counter()
        first = first_count = None
        for i in range(0, len(paths), batch_size):
            chunk = paths[i:i + batch_size]
            embedder.embed(np.stack([load_pixels(p, preprocess) for p in chunk]))
            if first is None:
                first, first_count = time.perf_counter(), len(chunk)
        end = time.perf_counter()
    out = _throughput(len(paths), first_count, loop_start, first, end)
    out.update(build_seconds=loop_start - start, device=embedder.device, torch_threads=used,
               images_per_s_with_startup=len(paths) / (end - start))
    return out


def ray_pipeline(spec, paths: list[str], actors: int | None, threads: int | None) -> dict:
    import ray

    from raybench.bench import drain_stream
    from raybench.models import resolve_preprocess
    from raybench.pipeline import runtime
    from raybench.pipeline.embed import Source, embedding_stream
    from raybench.ray_runtime import connect

    start = time.perf_counter()
    started = connect("embed", dashboard=False, kind="bench")
    init_seconds = time.perf_counter() - start if started else None
    try:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        pool = runtime.plan_pool(runtime.Cluster.current(), actors, threads)
        # decode blocks of one batch, so batches leave the actor one by one (with the default
        # 64-image blocks, a few hundred images arrive in a handful of lumps)
        stream = embedding_stream(spec, resolve_preprocess(spec), [Source(0, tuple(paths))], None, pool,
                                  decode_rows=spec.batch_size)
        drained = drain_stream(stream)
        stream_start, first, first_count = drained["start"], drained["first"], drained["first_count"]
        count, errors, end = drained["count"], drained["errors"], drained["end"]
    finally:
        if started:
            ray.shutdown()
    if errors or count != len(paths):
        raise RuntimeError(f"the Ray stream embedded {count} of {len(paths)} images: {errors[:1]}")
    out = _throughput(count, first_count, stream_start, first, end)
    # steady on the actor's clock (as `raybench rehearse`): from the end of its first batch to
    # the end of its last, so that batches handed to the driver late do not look fast
    if count > first_count and drained["last_embedded"] > drained["first_embedded"]:
        out["images_per_s_steady"] = (count - first_count) / (drained["last_embedded"] - drained["first_embedded"])
    out.update(init_seconds=init_seconds, pool=dataclasses.asdict(pool),
               images_per_s_with_startup=count / (end - start) if started else None)
    return out


def run(model: str = "osnet-x0_25-market", pretrained: bool = False, images: int | None = None,
        batch_size: int | None = None, actors: int | None = None, threads: int | None = None,
        repeat: int = 3) -> dict:
    from raybench.bench import provenance
    from raybench.rundir.provenance import versions

    spec = bench_model(model, pretrained)
    spec = dataclasses.replace(spec, batch_size=batch_size or spec.batch_size)
    paths = bench_images()
    paths = paths[:images] if images else paths
    record = {"benchmark": "embed", "model": spec.name, "images": len(paths), "batch_size": spec.batch_size,
              "cpus": os.cpu_count(), "repeat": repeat, "load_before": os.getloadavg()}
    rounds = []
    for _ in range(repeat):  # alternate the sides, so that a change of machine load hits both
        one = {"plain": plain_loop(spec, paths, spec.batch_size),
               "ray": ray_pipeline(spec, paths, actors, threads)}
        actor_threads = one["ray"]["pool"]["threads"]
        if one["plain"]["device"] == "cpu" and actor_threads != one["plain"]["torch_threads"]:
            # The same loop with the actor's thread count: tells the pipeline from the threads.
            one["plain_actor_threads"] = plain_loop(spec, paths, spec.batch_size, actor_threads)
        rounds.append(one)
    record.update(summarize(rounds))
    record.update(load_after=os.getloadavg(), versions=versions(), git=provenance(),
                  date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return record


def summarize(rounds: list[dict]) -> dict:
    """The record's figures from its rounds: each ratio as the median of the rounds' paired
    ratios (``ratio_*``, with the per-round values under ``paired``), each side's best round
    and the best-over-best ratios (``best_of``), and the target judged on the paired median."""
    import statistics

    out: dict = {"rounds": rounds, "paired": {}, "best_of": {}}
    for side in ("plain", "ray", "plain_actor_threads"):
        if all(side in r for r in rounds):
            out[side] = _best([r[side] for r in rounds])
    for key, (side, metric) in RATIOS.items():
        pairs = [r["ray"][metric] / r[side][metric] for r in rounds
                 if side in r and r["ray"][metric] and r[side][metric]]
        if len(pairs) == len(rounds):
            out["paired"][key] = pairs
            out[key] = statistics.median(pairs)
            out["best_of"][key] = out["ray"][metric] / out[side][metric]
    headline = out["ratio_without_startup"]
    out["target"] = {"ratio_without_startup": TARGET, "met": headline >= TARGET,
                     "judged_on": f"median of {len(rounds)} paired round(s) (ray / plain, steady images/s)"}
    return out


def _best(runs: list[dict]) -> dict:
    """The round with the best steady throughput (the least disturbed by other load)."""
    return max(runs, key=lambda r: r["images_per_s_steady"])


def summary_line(record: dict) -> str:
    """The printed verdict: the paired median against the target, then the secondary figures."""
    paired = record["paired"]["ratio_without_startup"]
    target = record["target"]
    text = (f"ray / plain, median of {len(paired)} paired round(s): {record['ratio_without_startup']:.2f}x "
            f"without start-up (rounds: {', '.join(f'{r:.2f}' for r in paired)}); "
            f"target >= {target['ratio_without_startup']:.1f}x: {'met' if target['met'] else 'NOT met'}")
    if "ratio_with_startup" in record:
        text += f"; {record['ratio_with_startup']:.2f}x with start-up"
    if "ratio_vs_plain_actor_threads" in record:
        text += f"; {record['ratio_vs_plain_actor_threads']:.2f}x vs the loop at the actor's thread count"
    return text + f". Best round over best round: {record['best_of']['ratio_without_startup']:.2f}x without start-up."


def _plain_row(run: dict) -> dict:
    return {"side": f"plain torch loop, {run['torch_threads']} thread(s)", "steady img/s": run["images_per_s_steady"],
            "img/s with start-up": run["images_per_s_with_startup"], "start-up s": run["build_seconds"],
            "device": run["device"]}


def _rows(record: dict) -> list[dict]:
    ray_ = record["ray"]
    plains = [record["plain"]] + ([record["plain_actor_threads"]] if "plain_actor_threads" in record else [])
    return [_plain_row(run) for run in plains] + [
        {"side": f"ray pipeline, {ray_['pool']['actors']} actor(s)", "steady img/s": ray_["images_per_s_steady"],
         "img/s with start-up": ray_["images_per_s_with_startup"],
         "start-up s": (ray_["init_seconds"] or 0) + ray_["first_batch_seconds"],
         "device": "cuda" if ray_["pool"]["gpus"] else "cpu"},
    ]


def pipeline_options(command):
    """The options of the benchmarks that stream through the pipeline (embed, video): the
    model, its weights, the batch size, the actors and their torch threads."""
    options = [
        click.option("--model", default="osnet-x0_25-market", show_default=True, help="A catalog model."),
        click.option("--pretrained", is_flag=True, help="Load the model's weights (default: random weights, no download)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default: the model's."),
        click.option("--actors", type=click.IntRange(min=1), default=None,
                     help="Embedding actors (default: as `raybench run`)."),
        click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads per CPU actor."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command("embed")
@pipeline_options
@click.option("--images", type=click.IntRange(min=1), default=None, help="Use only the first N of the 2,048 images.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds of (plain, ray); the ratio is the median of the rounds' paired ratios.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON output (default: results/bench/embed.json in the checkout).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON record instead of a table.")
def embed_command(model, pretrained, images, batch_size, actors, threads, repeat, out, as_json):
    """Embedding throughput: the Ray pipeline vs a plain single-process torch loop, same model,
    same 2,048 synthetic images, same batch size."""
    from raybench.bench import write_json
    from raybench.console import notice, print_json, print_table
    from raybench.paths import PROJECT_ROOT

    notice(f"bench embed: {model}, plain torch loop, then the Ray pipeline...")
    record = run(model, pretrained, images, batch_size, actors, threads, repeat)
    path = write_json(record, Path(out) if out else PROJECT_ROOT / "results" / "bench" / "embed.json")
    if as_json:
        print_json(record)
    else:
        print_table(_rows(record), ["side", "steady img/s", "img/s with start-up", "start-up s", "device"],
                    title=f"embed: {record['model']}, {record['images']:,} images, batch {record['batch_size']}"
                          f" (each side's best of {record['repeat']} round(s))")
        print(summary_line(record))
    notice(f"wrote {path}")
