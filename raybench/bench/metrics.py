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
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import numpy as np

SIDES = ("raybench", "torchreid")


def run(scale: str, against: str = "torchreid", seed: int = 0, repeat: int = 3) -> dict:
    """Run the benchmark; returns the JSON-ready record (also the worker outputs)."""
    from raybench.bench.features import SCALES
    from raybench.pipeline.runtime import git_state

    shape = SCALES[scale]
    record = {
        "benchmark": "metrics", "scale": scale, "seed": seed, "against": against,
        "num_query": shape.num_query, "num_gallery": shape.num_gallery, "dim": shape.dim,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": _machine(),
        "load_before": os.getloadavg(),
    }
    record["raybench"] = _spawn("raybench", scale, seed, repeat, rank_only=against == "torchreid")
    if against == "torchreid":
        record["torchreid"] = _spawn("torchreid", scale, seed, 1, rank_only=False)
        record["comparison"] = compare(record["raybench"], record["torchreid"])
    record["load_after"] = os.getloadavg()
    record.update(versions=_versions(), git=git_state())
    return record


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


def _spawn(side: str, scale: str, seed: int, repeat: int, rank_only: bool) -> dict:
    args = json.dumps({"side": side, "scale": scale, "seed": seed, "repeat": repeat, "rank_only": rank_only})
    proc = subprocess.run([sys.executable, "-m", "raybench.bench.metrics", args],
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
    from importlib import metadata

    from raybench.pipeline.runtime import versions

    found = versions()
    for name in ("numba", "faiss-cpu"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _metrics(cmc, mAP, mINP, valid) -> dict:
    return {"mAP": float(mAP), "mINP": float(mINP), "cmc": [float(x) for x in cmc], "num_valid_query": int(valid)}


def _raybench_side(data, repeat: int, rank_only: bool) -> dict:
    from raybench.bench.features import synthetic_features
    from raybench.eval import evaluate, evaluate_features

    ids = (data.q_pids, data.g_pids, data.q_camids, data.g_camids)
    t = time.perf_counter()
    tiny = synthetic_features("tiny")
    evaluate_features(tiny.qf, tiny.gf, tiny.q_pids, tiny.g_pids, tiny.q_camids, tiny.g_camids)
    out = {"warmup_seconds": time.perf_counter() - t, "rss_before_bytes": _current_rss()}
    times, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        res = evaluate_features(data.qf, data.gf, *ids, distance="euclidean", normalize=True)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    out.update(seconds=min(times), seconds_all=times, cpu_seconds_all=cpu, peak_rss_bytes=_peak_rss(),
               device=_device(),
               metrics=_metrics(res.cmc, res.mAP, res.mINP, res.num_valid_query))
    if rank_only:
        distmat = _torchreid_distmat(data)
        t = time.perf_counter()
        dense = evaluate(distmat, *ids)
        out["seconds_rank_only"] = time.perf_counter() - t
        out["rank_only_max_abs_diff_to_features"] = float(max(
            abs(dense.mAP - res.mAP), abs(dense.mINP - res.mINP), np.abs(dense.cmc - res.cmc).max()))
    return out


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
    peak = _peak_rss()
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


def _device() -> str:
    from raybench.eval.distance import resolve_device

    return resolve_device(None)


def _worker(args: dict) -> dict:
    from raybench.bench.features import synthetic_features

    data = synthetic_features(args["scale"], args["seed"])
    if args["side"] == "raybench":
        return _raybench_side(data, args["repeat"], args["rank_only"])
    return _torchreid_side(data)


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
