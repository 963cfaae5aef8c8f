"""`raybench bench metrics|embed|t2i|driver|video`: performance benchmarks against the peers."""

from __future__ import annotations

import click

from raybench.commands.lazy import LazyGroup


@click.group("bench", cls=LazyGroup, lazy={"embed": "raybench.bench.embed:embed_command",
                                          "driver": "raybench.commands.bench:driver",
                                          "t2i": "raybench.bench.text:t2i_command",
                                          "video": "raybench.bench.video:video_command"})
def bench():
    """Benchmarks against the peers: rank metrics vs torchreid, embedding vs a plain torch loop;
    text-to-image scoring's time and memory at a text-to-person test set's size; video frames vs
    images through the pipeline, and tracklet pooling at MARS's size."""


#: The --scale choices: features.SCALES' names (kept literal so that --help imports no numpy).
SCALES = ("market", "msmt17", "market500k", "tiny", "ltcc", "deepchange")


@bench.command("metrics")
@click.option("--scale", type=click.Choice(SCALES), default="market", show_default=True,
              help="Synthetic features with the shapes of this test set (d=512); tiny (120 x 600, "
                   "d=64) runs in seconds, to check the benchmark itself. market500k: Market-1501 + "
                   "500,000 distractors, scored exactly in --shards on a local Ray cluster of several nodes.")
@click.option("--shards", default=None,
              help="Shard counts to time, comma-separated, the first 1 (default for market500k: 1,2,4); "
                   "given with another scale, it times that scale in shards.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Where raybench computes distances (default: the GPU when torch sees one). cuda: torch on "
                   "the GPU (re-ranking's neighbour search on faiss's GPU build when it sees one), the CPU "
                   "when there is no CUDA device (the record says so).")
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Worker nodes of the sharded benchmark's local cluster (one CPU each).")
@click.option("--against", type=click.Choice(["torchreid", "none"]), default=None,
              help="Also time torchreid's evaluate_rank (default: torchreid for market, none for "
                   "msmt17, where torchreid needs a dense matrix, a full argsort and >15 GB, and "
                   "none with --rerank).")
@click.option("--rerank", is_flag=True,
              help="Time k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3) + scoring, raybench alone; "
                   "writes metrics-<scale>-rerank.json.")
@click.option("--clothes", type=click.Choice(["cc", "sc", "standard"]), default=None,
              help="Time a clothes-changing rule (raybench.eval.clothes) against the per-query loop the CC "
                   "codebases run, at --scale ltcc or deepchange; writes metrics-<scale>-clothes-<rule>.json.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--repeat", type=int, default=None,
              help="raybench runs; the best counts (default: 3, or 1 with --rerank).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON output (default: results/bench/metrics-<scale>[-rerank].json in the checkout).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON record instead of a table.")
def metrics(scale, shards, device, workers, against, rerank, clothes, seed, repeat, out, as_json):
    """Time raybench's metrics and torchreid's evaluate_rank on the same features; compare them
    (market500k: the same cell scored in 1, 2 and 4 shards, compared with each other)."""
    from pathlib import Path

    from raybench.bench import metrics as bench_metrics
    from raybench.bench import write_json
    from raybench.console import notice, print_json, print_table
    from raybench.paths import PROJECT_ROOT

    if clothes:
        return _clothes(scale, clothes, seed, repeat, out, as_json)
    if not rerank and (scale == "market500k" or shards):
        return _sharded(scale, shards or "1,2,4", device, workers, seed, against, out, as_json)

    if rerank and against == "torchreid":
        raise click.UsageError("--rerank runs raybench alone (torchreid's re_ranking needs dense "
                               "(Q+G)^2 matrices); leave --against out or use --against none")
    against = against or ("torchreid" if scale == "market" and not rerank else "none")
    repeat = max(1, repeat if repeat is not None else (1 if rerank else 3))
    what = "re-ranking + scoring" if rerank else f"against {against}"
    notice(f"bench metrics: {scale} scale, {what} (each side in its own process)...")
    if scale == "msmt17" and against == "torchreid":
        notice("torchreid at MSMT17 size: a 3.8 GB float32 matrix, a 7.7 GB argsort, and many minutes")
    record = bench_metrics.run(scale, against=against, seed=seed, repeat=repeat, rerank=rerank, device=device)
    record["command"] = (f"raybench bench metrics --scale {scale} --against {against}"
                         f"{' --rerank' if rerank else ''} --seed {seed} --repeat {repeat}"
                         f"{f' --device {device}' if device else ''}")
    if record.get("device_fallback"):
        notice(record["device_fallback"])
    name = f"metrics-{scale}{'-rerank' if rerank else ''}.json"
    path = write_json(record, Path(out) if out else PROJECT_ROOT / "results" / "bench" / name)
    if as_json:
        print_json(record)
    else:
        title = f"metrics{' with re-ranking' if rerank else ''}, {scale} scale: " \
                f"{record['num_query']:,} x {record['num_gallery']:,}, d={record['dim']}"
        print_table(_rows(record), ["side", "seconds", "rank_only_s", "peak_rss_gb", "mAP", "mINP", "rank1"],
                    title=title)
        comp = record.get("comparison")
        if comp:
            d = comp["max_abs_diff"]
            print(f"speedup {comp['speedup']:.1f}x (rank only {comp['speedup_rank_only']:.1f}x); "
                  f"max |diff| mAP {d['mAP']:.2e}, mINP {d['mINP']:.2e}, CMC {d['cmc']:.2e}")
        if rerank:
            t = record["raybench"]["seconds_phases"]
            print(f"neighbour search {t['neighbours']:.1f} s, k-reciprocal graph {t['graph']:.1f} s, "
                  f"re-ranked rows + scoring {t['rows_and_scoring']:.1f} s")
    notice(f"wrote {path}")


def _sharded(scale: str, shards: str, device: str, workers: int, seed: int, against, out, as_json: bool) -> None:
    """The sharded benchmark (raybench/bench/shards.py): one row per shard count."""
    from pathlib import Path

    from raybench.bench import shards as bench_shards
    from raybench.bench import write_json
    from raybench.console import notice, print_json, print_table
    from raybench.paths import PROJECT_ROOT

    if against == "torchreid":
        raise click.UsageError("the sharded benchmark compares shard counts with one process, not with torchreid "
                               "(its dense matrix at this size needs tens of GB); leave --against out")
    try:
        counts = tuple(int(s) for s in shards.split(","))
    except ValueError:
        raise click.BadParameter(f"{shards!r}: expected shard counts such as 1,2,4", param_hint="--shards") from None
    if not counts or counts[0] != 1 or min(counts) < 1:
        raise click.BadParameter(f"{shards!r}: the first count must be 1 (the one-process reference)",
                                 param_hint="--shards")
    notice(f"bench metrics: {scale} scale in {', '.join(map(str, counts))} shard(s) on a local cluster of "
           f"{workers} worker nodes...")
    record = bench_shards.run(scale, counts, seed=seed, device=device, workers=workers)
    record["command"] = (f"raybench bench metrics --scale {scale} --shards {','.join(map(str, counts))} "
                         f"{f'--device {device} ' if device else ''}--workers {workers} --seed {seed}")
    if record["device_fallback"]:
        notice(record["device_fallback"])
    path = write_json(record, Path(out) if out else PROJECT_ROOT / "results" / "bench" / f"metrics-{scale}.json")
    if as_json:
        print_json(record)
    else:
        rows = [{"shards": r["shards"], "seconds": round(r["seconds"], 1),
                 "scorer_peak_gb": round(r["scorer_peak_rss_bytes"] / 1e9, 2),
                 "shard_peak_gb": round(r["max_shard_peak_rss_bytes"] / 1e9, 2) if r["max_shard_peak_rss_bytes"] else "-",
                 "nodes": len({n for ns in r["nodes"] or [] for n in ns}) or 1,
                 "max_abs_diff": max(r["max_abs_diff"].values()), "mAP": round(r["metrics"]["mAP"], 6)}
                for r in record["runs"].values()]
        print_table(rows, ["shards", "seconds", "scorer_peak_gb", "shard_peak_gb", "nodes", "max_abs_diff", "mAP"],
                    title=f"metrics in shards, {scale} scale: {record['num_query']:,} x {record['num_gallery']:,} "
                          f"({record['extra_distractors']:,} of them a distractor set), d={record['dim']}")
    notice(f"wrote {path}")


def _clothes(scale, rule, seed, repeat, out, as_json) -> None:
    """`bench metrics --clothes RULE`: the rank engine against the per-query loop (bench/clothes.py)."""
    from pathlib import Path

    from raybench.bench import clothes as bench_clothes
    from raybench.bench import write_json
    from raybench.console import notice, print_json, print_table
    from raybench.paths import PROJECT_ROOT

    repeat = max(1, repeat if repeat is not None else 3)
    notice(f"bench metrics: {scale} scale, clothes rule {rule}, against the per-query loop (each in its own process)...")
    record = bench_clothes.run(scale, mode=rule, seed=seed, repeat=repeat)
    record["command"] = f"raybench bench metrics --scale {scale} --clothes {rule} --seed {seed} --repeat {repeat}"
    path = write_json(record, Path(out) if out else PROJECT_ROOT / "results" / "bench" / f"metrics-{scale}-clothes-{rule}.json")
    if as_json:
        print_json(record)
    else:
        ours, ref = record["raybench"], record["reference"]
        rows = [{"side": side, "rank_s": round(r["seconds_rank_only"], 3), "rank_cpu_s": round(r["cpu_seconds_rank_only"], 3),
                 "from_features_s": round(r["seconds"], 3) if "seconds" in r else None,
                 "peak_rss_gb": round(r["peak_rss_bytes"] / 1e9, 3), "mAP": round(r["metrics"]["mAP"], 6),
                 "mINP": round(r["metrics"]["mINP"], 6), "rank1": round(r["metrics"]["cmc"][0], 6),
                 "valid": r["metrics"]["num_valid_query"]}
                for side, r in (("raybench", ours), ("per-query", ref))]
        print_table(rows, ["side", "rank_s", "rank_cpu_s", "from_features_s", "peak_rss_gb", "mAP", "mINP", "rank1",
                           "valid"],
                    title=f"clothes rule {rule}, {scale} scale: {record['num_query']:,} x {record['num_gallery']:,}, "
                          f"d={record['dim']} (rank: both sides on the same dense distances)")
        comp = record["comparison"]
        d = comp["max_abs_diff"]
        print(f"ranking {comp['speedup_rank']:.1f}x faster ({comp['speedup_rank_cpu']:.1f}x in CPU seconds); "
              f"max |diff| mAP {d['mAP']:.2e}, mINP {d['mINP']:.2e}, CMC {d['cmc']:.2e}")
    notice(f"wrote {path}")


def _rows(record: dict) -> list[dict]:
    rows = []
    for side in ("raybench", "torchreid"):
        r = record.get(side)
        if r:
            m = r["metrics"]
            label = "raybench+rerank" if side == "raybench" and record.get("rerank") else side
            rows.append({"side": label, "seconds": round(r["seconds"], 3),
                         "rank_only_s": round(r.get("seconds_rank_only", r.get("seconds_rank", 0)), 3),
                         "peak_rss_gb": round(r["peak_rss_bytes"] / 1e9, 3),
                         "mAP": round(m["mAP"], 6), "mINP": round(m["mINP"], 6), "rank1": round(m["cmc"][0], 6)})
    return rows


@click.command("driver")
@click.option("--images", type=click.IntRange(min=1000), default=100_000, show_default=True)
@click.option("--dim", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON output (default: results/bench/driver.json in the checkout).")
def driver(images, dim, out):
    """Embeddings per second the driver takes, writing them or with the workers writing them,
    fed by a model that costs nothing (raybench/bench/driver.py says how it is measured)."""
    import time
    from pathlib import Path

    from raybench.bench import driver as bench_driver
    from raybench.bench import provenance, write_json
    from raybench.console import notice
    from raybench.paths import PROJECT_ROOT

    notice(f"bench driver: {images:,} embeddings of d={dim}: stream only, then written by the driver, "
           "then written by the workers...")
    record = bench_driver.run(images, dim)
    record.update(command=f"raybench bench driver --images {images} --dim {dim}", git=provenance(),
                  date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    path = write_json(record, Path(out) if out else PROJECT_ROOT / "results" / "bench" / "driver.json")
    print(f"stream to the driver: {record['stream']['embeddings_per_s']:,.0f} embeddings/s")
    for side, label in (("driver_writes", "driver writes"), ("worker_writes", "workers write")):
        r = record[side]
        print(f"{label}: {r['embeddings_per_s']:,.0f} embeddings/s ({r['MB_per_s']:,.0f} MB/s); the driver's "
              f"capacity: {r['driver_capacity_per_s']:,.0f} embeddings/s, {r['embeddings_per_driver_cpu_s']:,.0f} per "
              "CPU second of its process")
    print(f"workers write / driver writes: {record['ratio']:.2f} (the driver's capacity: {record['capacity_ratio']:.2f}, "
          f"per CPU second: {record['cpu_ratio']:.2f}); "
          f"8 x H200 on ViT-B/16: ~{record['target_embeddings_per_s']:,}/s: {'met' if record['met'] else 'NOT met'}")
    notice(f"wrote {path}")
