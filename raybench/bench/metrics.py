"""`raybench bench metrics`: raybench's rank engine against torchreid's evaluate_rank.

Both sides score the same seeded synthetic features (features.py) with the shapes of a real
test set, one after the other in the same run, each in its own subprocess so that each one's
peak RSS is its own (``ru_maxrss`` of a fresh process). Timings start from the features:

- raybench: ``evaluate_features`` (chunked distances + rank counting), the best of
  ``repeat`` runs after one small warm-up call that loads the compiled kernel;
- torchreid: ``compute_distance_matrix`` + ``evaluate_rank`` with the Python path that pip users
  get (its Cython extension is not built in the wheel), timed once.

The rank-only time (both sides given the same dense distance matrix) is reported too. torchreid
has no mINP, so its mINP is fast-reid's formula applied to torchreid's own ordering (the same
``np.argsort`` call on the same matrix), untimed. CPU seconds are recorded beside wall
seconds: on a shared machine the wall time says how busy it was, the CPU time what it cost.

``rerank=True`` times k-reciprocal re-ranking + scoring instead (``rerank_rows`` into
``evaluate_rows``, from the features), raybench alone: torchreid's ``re_ranking`` holds
dense (Q+G)^2 matrices (about 7 GB at Market size, over 100 GB at MSMT17's), so there is no peer
to run at the sizes that matter; tests/test_rerank.py holds the equality with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from raybench.bench import current_rss, peak_rss, peak_rss_mark, reset_peak_rss

def run(scale: str, against: str = "torchreid", seed: int = 0, repeat: int = 3, rerank: bool = False,
        chunk_size: int | None = None, device: str | None = None) -> dict:
    """Run the benchmark; returns the JSON-ready record (also the worker outputs).

    chunk_size: query rows per block (None: the engine's default), for tests of memory bounds.
    device: raybench's side on "cpu" or "cuda" (torch; re-ranking's neighbour search on faiss's
    GPU build where it sees a GPU), None for the GPU when there is one; "cuda" without a CUDA
    device runs on the CPU, and the record says so (``device_fallback``).
    """
    from raybench.bench import bench_device, provenance
    from raybench.bench.features import SCALES
    from raybench.errors import SpecError

    if rerank and against != "none":
        raise SpecError("re-ranking is benchmarked alone: torchreid's re_ranking needs dense (Q+G)^2 "
                        "matrices; use --against none with --rerank")
    shape = SCALES[scale]
    device, fallback = bench_device(device)
    record = {
        "benchmark": "metrics", "scale": scale, "seed": seed, "against": against, "device_fallback": fallback,
        "num_query": shape.num_query, "num_gallery": shape.num_gallery, "dim": shape.dim,
        "rerank": _rerank_settings(shape) if rerank else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": _machine(),
        "load_before": os.getloadavg(), "git": provenance(),
    }
    job = {"scale": scale, "seed": seed, "repeat": repeat, "chunk_size": chunk_size, "device": device}
    record["device"] = device
    if rerank:
        record["raybench"] = _spawn("rerank", **job)
    else:
        record["raybench"] = _spawn("raybench", rank_only=against == "torchreid", **job)
    if against == "torchreid":
        record["torchreid"] = _spawn("torchreid", **{**job, "repeat": 1})
        record["comparison"] = compare(record["raybench"], record["torchreid"])
    record["load_after"] = os.getloadavg()
    record["versions"] = _versions()
    if provenance() != record["git"]:
        record["git"]["changed_during_run"] = True
    return record


def _rerank_settings(shape) -> dict:
    from dataclasses import asdict

    from raybench.eval.knn import resolve_backend
    from raybench.eval.rerank import RerankParams

    return {**asdict(RerankParams()), "knn": resolve_backend(shape.num_query + shape.num_gallery),
            "distance": "euclidean", "normalize": True}


def compare(ours: dict, ref: dict) -> dict:
    """Time ratios and the largest differences of every metric."""
    def diff(key):
        return float(np.max(np.abs(np.asarray(ours["metrics"][key]) - np.asarray(ref["metrics"][key]))))

    return {
        "speedup": ref["seconds"] / ours["seconds"],
        "speedup_rank_only": ref["seconds_rank"] / ours["seconds_rank_only"],
        "max_abs_diff": {"mAP": diff("mAP"), "mINP": diff("mINP"), "cmc": diff("cmc")},
        "cmc_length": [len(ours["metrics"]["cmc"]), len(ref["metrics"]["cmc"])],
    }


def _spawn(side: str, module: str = "raybench.bench.metrics", **job) -> dict:
    """A benchmark side in a fresh process (``python -m module``), its JSON record back."""
    args = json.dumps({"side": side, **job})
    proc = subprocess.run([sys.executable, "-m", module, args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} benchmark worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> dict:
    import platform

    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _versions() -> dict:
    from raybench.rundir.provenance import versions

    return versions(extra=("numba", "faiss-cpu"))


def _metrics(cmc, mAP, mINP, valid) -> dict:
    return {"mAP": float(mAP), "mINP": float(mINP), "cmc": [float(x) for x in cmc], "num_valid_query": int(valid)}


def _raybench_side(data, repeat: int, rank_only: bool, chunk_size: int | None = None, device: str = "cpu") -> dict:
    from raybench.eval import evaluate, evaluate_features

    ids = (data.q_pids, data.g_pids, data.q_camids, data.g_camids)

    def once():
        return evaluate_features(data.qf, data.gf, *ids, distance="euclidean", normalize=True,
                                 chunk_size=chunk_size, device=device)

    out = _warmed_up(lambda tiny: evaluate_features(tiny.qf, tiny.gf, tiny.q_pids, tiny.g_pids,
                                                    tiny.q_camids, tiny.g_camids, device=device), device)
    res = _timed(once, repeat, out)
    out["metrics"] = _metrics(res.cmc, res.mAP, res.mINP, res.num_valid_query)
    if rank_only:
        distmat = _torchreid_distmat(data)
        t = time.perf_counter()
        dense = evaluate(distmat, *ids)
        out["seconds_rank_only"] = time.perf_counter() - t
        out["rank_only_max_abs_diff_to_features"] = float(max(
            abs(dense.mAP - res.mAP), abs(dense.mINP - res.mINP), np.abs(dense.cmc - res.cmc).max()))
    return out


def _rerank_side(data, repeat: int, chunk_size: int | None = None, device: str = "cpu") -> dict:
    """Re-ranking (k1=20, k2=6, lambda=0.3, from the features) + scoring, timed together, with
    the phases of the best run: the neighbour search over all Q+G images, the k-reciprocal
    graph, then the re-ranked rows (Jaccard distances) scored block by block."""
    from raybench.eval import evaluate_rows
    from raybench.eval.rerank import Reranker

    ids = (data.q_pids, data.g_pids, data.q_camids, data.g_camids)
    shape = (len(data.qf), len(data.gf))
    phases: list[dict] = []

    def once():
        start = time.perf_counter()
        reranker = Reranker.from_features(data.qf, data.gf, distance="euclidean", normalize=True,
                                          chunk_size=chunk_size, device=device)
        built = time.perf_counter()
        res = evaluate_rows(reranker.rows(chunk_size), *ids, shape=shape)
        phases.append({**reranker.seconds, "rows_and_scoring": time.perf_counter() - built,
                       "build": built - start})
        return res

    out = _warmed_up(lambda tiny: evaluate_rows(Reranker.from_features(tiny.qf, tiny.gf, device=device).rows(),
                                                tiny.q_pids, tiny.g_pids, tiny.q_camids, tiny.g_camids,
                                                shape=(len(tiny.qf), len(tiny.gf))), device)
    res = _timed(once, repeat, out)
    out.update(seconds_phases=phases[int(np.argmin(out["seconds_all"]))], seconds_phases_all=phases,
               metrics=_metrics(res.cmc, res.mAP, res.mINP, res.num_valid_query))
    return out


def _warmed_up(call, device: str = "cpu") -> dict:
    """One call on the tiny features first: loads the numba kernels (compiled once, cached)."""
    from raybench.bench.features import synthetic_features

    t = time.perf_counter()
    call(synthetic_features("tiny"))
    return {"warmup_seconds": time.perf_counter() - t, "rss_before_bytes": current_rss(), "device": device}


def _timed(once, repeat: int, out: dict):
    """Best of ``repeat`` runs, wall and CPU seconds; peak RSS over the process
    (``peak_rss_bytes``, from the start, features and imports included) and over the timed runs
    alone (``run_peak_rss_delta_bytes``: above the RSS before them; None where unmeasurable)."""
    reset = reset_peak_rss()
    times, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        res = once()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    mark = peak_rss_mark() if reset else None
    out.update(seconds=min(times), seconds_all=times, cpu_seconds_all=cpu, peak_rss_bytes=peak_rss(),
               run_peak_rss_delta_bytes=None if mark is None else mark - out["rss_before_bytes"])
    return res


def _torchreid_side(data) -> dict:
    import warnings

    from raybench.bench.peers import torchreid_module

    warnings.filterwarnings("ignore", message="Cython evaluation")
    evaluate_rank = torchreid_module("reid/metrics/rank.py").evaluate_rank
    t, c = time.perf_counter(), time.process_time()
    distmat = _torchreid_distmat(data)
    t_dist = time.perf_counter() - t
    t = time.perf_counter()
    cmc, mAP = evaluate_rank(distmat, data.q_pids, data.g_pids, data.q_camids, data.g_camids,
                             max_rank=50, use_metric_cuhk03=False, use_cython=False)
    t_rank = time.perf_counter() - t
    cpu = time.process_time() - c
    peak = peak_rss()
    minp, valid = reference_minp(distmat, data.q_pids, data.g_pids, data.q_camids, data.g_camids)
    return {"seconds": t_dist + t_rank, "seconds_distance": t_dist, "seconds_rank": t_rank, "cpu_seconds": cpu,
            "peak_rss_bytes": peak, "metrics": _metrics(cmc, mAP, minp, valid)}


def _torchreid_distmat(data) -> np.ndarray:
    """torchreid's own distance function on L2-normalised features, as a numpy matrix."""
    import torch
    import torch.nn.functional as F

    from raybench.bench.peers import torchreid_module

    compute_distance_matrix = torchreid_module("reid/metrics/distance.py").compute_distance_matrix

    qf = F.normalize(torch.from_numpy(data.qf), p=2, dim=1)
    gf = F.normalize(torch.from_numpy(data.gf), p=2, dim=1)
    return compute_distance_matrix(qf, gf, "euclidean").numpy()


def reference_minp(distmat, q_pids, g_pids, q_camids, g_camids, block: int = 256) -> tuple[float, int]:
    """fast-reid's mINP over torchreid's ordering (``np.argsort(distmat, axis=1)``), vectorised."""
    inps = []
    for a in range(0, len(distmat), block):
        order = np.argsort(distmat[a:a + block], axis=1)
        match = g_pids[order] == q_pids[a:a + block, None]
        keep = ~(match & (g_camids[order] == q_camids[a:a + block, None]))
        kept_rank = np.cumsum(keep, axis=1)  # 1-based position among kept items
        hit = match & keep
        n = hit.sum(axis=1)
        hardest = np.where(hit, kept_rank, 0).max(axis=1)
        inps.extend((n[n > 0] / hardest[n > 0]).tolist())
    return float(np.mean(inps)), len(inps)


def _worker(args: dict) -> dict:
    from raybench.bench.features import synthetic_features

    data = synthetic_features(args["scale"], args["seed"])
    chunk_size = args.get("chunk_size")
    device = args.get("device", "cpu")
    if args["side"] == "raybench":
        return _raybench_side(data, args["repeat"], args["rank_only"], chunk_size, device)
    if args["side"] == "rerank":
        return _rerank_side(data, args["repeat"], chunk_size, device)
    return _torchreid_side(data)


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
