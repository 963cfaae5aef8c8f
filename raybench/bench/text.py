"""`raybench bench t2i`: time and memory of evaluate_t2i at a text-to-person test set's size.

The similarity matrix is the input (float32 [T, G]: 1.5 GB at ICFG-PEDES's 19,848 x 19,848),
filled block by block from a seeded generator (uniform noise, each caption's own image lifted by
0.5, 20 images per identity); what is measured is what scoring needs beyond it: the peak of
numpy's allocations (tracemalloc) and the peak RSS above the RSS before the call (VmHWM, reset
first), after one small warm-up call that loads the compiled kernel.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

SIZES = {"icfg-pedes": (19848, 19848), "cuhk-pedes": (6156, 3074), "rstpreid": (2000, 1000), "tiny": (400, 300)}
MIB = 2 ** 20


def similarities(captions: int, images: int, seed: int = 0, block: int = 2048):
    """(similarity [T, G] float32, text_pids [T], image_pids [G]), each caption of image t % G."""
    rng = np.random.default_rng(seed)
    image_pids = np.arange(images) // 20
    own = np.arange(captions) % images
    similarity = np.empty((captions, images), np.float32)
    for a in range(0, captions, block):
        b = min(captions, a + block)
        similarity[a:b] = rng.random((b - a, images), dtype=np.float32)
        similarity[np.arange(a, b), own[a:b]] += 0.5
    return similarity, image_pids[own], image_pids


def run(size: str, seed: int = 0, chunk_size: int | None = None) -> dict:
    import tracemalloc

    from raybench.bench import current_rss, peak_rss_mark, provenance, reset_peak_rss
    from raybench.eval.text import evaluate_t2i

    similarity, text_pids, image_pids = similarities(*SIZES[size], seed=seed)
    evaluate_t2i(similarity[:64], text_pids[:64], image_pids)  # load the compiled kernel
    before, marked = current_rss(), reset_peak_rss()
    tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    result = evaluate_t2i(similarity, text_pids, image_pids, chunk_size=chunk_size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = peak_rss_mark() if marked else None
    return {
        "size": size, "num_captions": result.num_captions, "num_images": result.num_images, "seed": seed,
        "chunk_size": chunk_size, "input_mib": round(similarity.nbytes / MIB, 1),
        "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
        "traced_peak_mib": round(traced / MIB, 1),
        "rss_peak_above_start_mib": None if peak is None else round((peak - before) / MIB, 1),
        "metrics": {k: getattr(result, k) for k in ("R1", "R5", "R10", "mAP", "mINP")},
        **provenance(),
    }


@click.command("t2i")
@click.option("--size", type=click.Choice(sorted(SIZES)), default="icfg-pedes", show_default=True,
              help="captions x images of this test set (tiny: 400 x 300, seconds).")
@click.option("--chunk-size", type=int, default=None, help="captions per block (default: the rank engine's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON output (default: results/bench/t2i-<size>.json in the checkout).")
def t2i_command(size, chunk_size, seed, out):
    """Time and working memory of text-to-image scoring (evaluate_t2i) beyond its input."""
    from raybench.bench import write_json
    from raybench.console import notice, print_json
    from raybench.paths import PROJECT_ROOT

    notice(f"bench t2i: {size}, {SIZES[size][0]:,} captions x {SIZES[size][1]:,} images...")
    record = run(size, seed=seed, chunk_size=chunk_size)
    print_json(record)
    notice(f"wrote {write_json(record, Path(out) if out else PROJECT_ROOT / 'results' / 'bench' / f't2i-{size}.json')}")
