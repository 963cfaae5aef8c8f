"""`raybench bench metrics|embed`: performance benchmarks against the peers."""

from __future__ import annotations

import click

from raybench.cli import LazyGroup


@click.group("bench", cls=LazyGroup, lazy={"embed": "raybench.bench.embed:embed_command"})
def bench():
    """Benchmarks against the peers: rank metrics vs torchreid, embedding vs a plain torch loop."""


@bench.command("metrics")
@click.option("--scale", type=click.Choice(["market", "msmt17"]), default="market", show_default=True,
              help="Synthetic features with the shapes of this test set (d=512).")
@click.option("--against", type=click.Choice(["torchreid", "none"]), default=None,
              help="Also time torchreid's evaluate_rank (default: torchreid for market, none for "
                   "msmt17, where torchreid needs a dense matrix, a full argsort and >15 GB).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--repeat", type=int, default=3, show_default=True, help="raybench runs; the best counts.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON output (default: results/bench/metrics-<scale>.json in the checkout).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON record instead of a table.")
def metrics(scale, against, seed, repeat, out, as_json):
    """Time raybench's metrics and torchreid's evaluate_rank on the same features; compare them."""
    from pathlib import Path

    from raybench.bench import metrics as bench_metrics
    from raybench.bench import write_json
    from raybench.console import notice, print_json, print_table
    from raybench.paths import PROJECT_ROOT

    against = against or ("torchreid" if scale == "market" else "none")
    notice(f"bench metrics: {scale} scale, against {against} (each side in its own process)...")
    if scale == "msmt17" and against == "torchreid":
        notice("torchreid at MSMT17 size: a 3.8 GB float32 matrix, a 7.7 GB argsort, and many minutes")
    record = bench_metrics.run(scale, against=against, seed=seed, repeat=max(1, repeat))
    record["command"] = f"raybench bench metrics --scale {scale} --against {against} --seed {seed} --repeat {repeat}"
    path = write_json(record, Path(out) if out else PROJECT_ROOT / "results" / "bench" / f"metrics-{scale}.json")
    if as_json:
        print_json(record)
    else:
        print_table(_rows(record), ["side", "seconds", "rank_only_s", "peak_rss_gb", "mAP", "mINP", "rank1"],
                    title=f"metrics, {scale} scale: {record['num_query']:,} x {record['num_gallery']:,}, d={record['dim']}")
        comp = record.get("comparison")
        if comp:
            d = comp["max_abs_diff"]
            print(f"speedup {comp['speedup']:.1f}x (rank only {comp['speedup_rank_only']:.1f}x); "
                  f"max |diff| mAP {d['mAP']:.2e}, mINP {d['mINP']:.2e}, CMC {d['cmc']:.2e}")
    notice(f"wrote {path}")


def _rows(record: dict) -> list[dict]:
    rows = []
    for side in ("raybench", "torchreid"):
        r = record.get(side)
        if r:
            m = r["metrics"]
            rows.append({"side": side, "seconds": round(r["seconds"], 3),
                         "rank_only_s": round(r.get("seconds_rank_only", r.get("seconds_rank", 0)), 3),
                         "peak_rss_gb": round(r["peak_rss_bytes"] / 1e9, 3),
                         "mAP": round(m["mAP"], 6), "mINP": round(m["mINP"], 6), "rank1": round(m["cmc"][0], 6)})
    return rows
