"""`raybench bench metrics --clothes`: the clothes-changing rules at LTCC and DeepChange sizes.

Two sides score the same seeded synthetic features (features.py, whose ``ltcc`` and
``deepchange`` shapes also give every image an outfit), each in its own process, both ranking
the same dense float32 distance matrix (computed first and not timed; 4.4 GB at DeepChange's
size):

- raybench: ``evaluate_clothes`` (raybench.eval.clothes) on it: the rank engine with the
  setting's clothes rule; and, timed too, ``evaluate_features`` from the features, as the
  pipeline scores a clothes-changing cell (chunked distances, no dense matrix);
- reference: the rules as the CC codebases run them (Simple-CCReID's ``evaluate_with_clothes``):
  per query, a full sort of the gallery, the good and junk sets, AP, CMC and mINP, in a Python
  loop (``per_query``).

``per_query`` is also the tests' reference of the rules (tests/eval_references.py), with ties
ordered by gallery index (a stable sort), raybench's rule.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Iterable

import numpy as np


def run(scale: str, mode: str = "cc", seed: int = 0, repeat: int = 3) -> dict:
    """Both sides at ``scale`` (a features.SCALES shape with outfits); the JSON-ready record."""
    from raybench.bench import provenance
    from raybench.bench.features import SCALES
    from raybench.bench.metrics import _machine, _spawn, _versions
    from raybench.errors import SpecError

    shape = SCALES[scale]
    if shape.outfits < 2:
        raise SpecError(f"--clothes needs a scale whose images wear outfits (ltcc, deepchange), not {scale!r}")
    record = {"benchmark": "metrics-clothes", "scale": scale, "mode": mode, "seed": seed, "against": "per-query",
              "num_query": shape.num_query, "num_gallery": shape.num_gallery, "dim": shape.dim,
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": _machine(), "load_before": os.getloadavg(),
              "git": provenance()}
    job = {"scale": scale, "seed": seed, "mode": mode, "module": "raybench.bench.clothes"}
    record["raybench"] = _spawn("raybench", repeat=repeat, **job)
    record["reference"] = _spawn("reference", **job)
    record["comparison"] = compare(record["raybench"], record["reference"])
    record.update(load_after=os.getloadavg(), versions=_versions())
    return record


def per_query(blocks: Iterable[tuple[int, int, np.ndarray]], q_pids, g_pids, q_camids, g_camids, q_clothes,
              g_clothes, mode: str = "standard", max_rank: int = 50, ap: str = "step") -> dict:
    """The rules one query at a time, from distance rows given block by block (start, stop, rows):

    - good: same pid, another camera, and (cc) another outfit / (sc) the same outfit;
    - junk: same pid and (same camera, or (cc) the same outfit / (sc) another outfit);
    - the gallery sorted by distance, ties by gallery index, junk removed;
    - AP: mean over the good items of (hits so far / rank), or with ``ap="trapezoid"`` the area
      under the precision-recall curve from (recall 0, precision 1) to full recall;
    - CMC: 1 from the first good item's rank on; mINP: #good / rank of the last good item;
    - a query without a good item is left out.

    Returns {mAP, mINP, cmc, num_valid_query}; mAP None when no query is valid."""
    g_pids, g_camids, g_clothes = np.asarray(g_pids), np.asarray(g_camids), np.asarray(g_clothes)
    aps, inps, cmcs = [], [], []
    for a, _, rows in blocks:
        for i, row in enumerate(np.asarray(rows), a):
            order = np.argsort(row, kind="stable")
            same_pid = g_pids[order] == q_pids[i]
            same_cam = g_camids[order] == q_camids[i]
            same_clothes = g_clothes[order] == q_clothes[i]
            good, junk = same_pid & ~same_cam, same_pid & same_cam
            if mode == "cc":
                good, junk = good & ~same_clothes, junk | (same_pid & same_clothes)
            elif mode == "sc":
                good, junk = good & same_clothes, junk | (same_pid & ~same_clothes)
            good = good[~junk]
            if not good.any():
                continue
            hits = np.flatnonzero(good) + 1
            aps.append(_trapezoid(good, hits) if ap == "trapezoid" else float(np.mean(np.arange(1, len(hits) + 1) / hits)))
            inps.append(len(hits) / hits[-1])
            cmcs.append(np.arange(1, min(max_rank, len(g_pids)) + 1) >= hits[0])
    if not aps:
        return {"mAP": None, "mINP": None, "cmc": None, "num_valid_query": 0}
    return {"mAP": float(np.mean(aps)), "mINP": float(np.mean(inps)), "cmc": np.mean(cmcs, axis=0).tolist(),
            "num_valid_query": len(aps)}


def _trapezoid(good: np.ndarray, hits: np.ndarray) -> float:
    """The area under one query's precision-recall curve, cut by cut (sklearn's curve stops at
    full recall and starts at recall 0, precision 1)."""
    found = np.cumsum(good[:hits[-1]])
    recall = np.concatenate([[0.0], found / len(hits)])
    precision = np.concatenate([[1.0], found / np.arange(1, hits[-1] + 1)])
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))


def engine_side(data, mode: str, repeat: int) -> dict:
    """raybench with the clothes rule: from the features as the pipeline scores a cell
    (``evaluate_features``), and on the dense distance matrix (the public ``evaluate_clothes``,
    the ranking alone); each best of ``repeat`` after a warm-up."""
    from raybench.bench import current_rss
    from raybench.bench.metrics import _device, _metrics, _timed
    from raybench.eval import evaluate_features
    from raybench.eval.clothes import clothes_codes, evaluate_clothes

    def score(n=None):
        return evaluate_features(data.qf[:n], data.gf, data.q_pids[:n], data.g_pids, data.q_camids[:n],
                                 data.g_camids, clothes=clothes_codes(data.q_clothes[:n], data.g_clothes, mode))

    t = time.perf_counter()
    score(64)  # loads the compiled kernel (numba, cached on disk)
    out = {"warmup_seconds": time.perf_counter() - t, "rss_before_bytes": current_rss(), "device": _device()}
    res = _timed(score, repeat, out)
    out["metrics"] = _metrics(res.cmc, res.mAP, res.mINP, res.num_valid_query)
    distmat, out["seconds_distance"] = _dense(data)
    ids = (data.q_pids, data.g_pids, data.q_camids, data.g_camids, data.q_clothes, data.g_clothes)
    rank = {"rss_before_bytes": current_rss()}
    ranked = _timed(lambda: evaluate_clothes(distmat, *ids, mode=mode), repeat, rank)
    # from the features, the distances come from another BLAS pass: a near tie may order apart
    out.update(seconds_rank_only=rank["seconds"], cpu_seconds_rank_only=min(rank["cpu_seconds_all"]),
               metrics_rank_only=_metrics(ranked.cmc, ranked.mAP, ranked.mINP, ranked.num_valid_query),
               rank_only_max_abs_diff_to_features=float(max(abs(ranked.mAP - res.mAP), abs(ranked.mINP - res.mINP),
                                                             np.abs(ranked.cmc - res.cmc).max())))
    return out


def _dense(data) -> tuple[np.ndarray, float]:
    """The Q x G float32 distances as the engine computes them (L2-normalised features, squared
    euclidean, chunked on the CPU), and the seconds they took."""
    from raybench.eval.distance import DistanceRows, prepare_features, row_chunks

    t = time.perf_counter()
    q, g = prepare_features(data.qf, data.gf, distance="euclidean", normalize=True, device="cpu")
    rows = DistanceRows(g, "euclidean")
    distmat = np.empty((len(q), len(g)), np.float32)
    for a, b in row_chunks(len(q), len(g)):
        distmat[a:b] = rows(q[a:b]).numpy()
    return distmat, time.perf_counter() - t


def reference_side(data, mode: str) -> dict:
    """The per-query loop over the same dense distances (computed first, not timed)."""
    from raybench.bench import peak_rss

    distmat, seconds_distance = _dense(data)
    t, c = time.perf_counter(), time.process_time()
    res = per_query([(0, len(distmat), distmat)], data.q_pids, data.g_pids, data.q_camids, data.g_camids,
                    data.q_clothes, data.g_clothes, mode=mode)
    return {"seconds_rank_only": time.perf_counter() - t, "cpu_seconds_rank_only": time.process_time() - c,
            "seconds_distance": seconds_distance, "peak_rss_bytes": peak_rss(),
            "metrics": {**res, "cmc": res["cmc"][:50] if res["cmc"] else []}}


def _worker(args: dict) -> dict:
    from raybench.bench.features import synthetic_features

    data = synthetic_features(args["scale"], args["seed"])
    if args["side"] == "raybench":
        return engine_side(data, args["mode"], args["repeat"])
    return reference_side(data, args["mode"])


def compare(ours: dict, ref: dict) -> dict:
    """Both sides ranking the same dense distances: wall and CPU time ratios (CPU seconds are
    the steadier figure on a shared machine), and the largest differences of every metric, both
    from those same distances."""
    m, r = ours["metrics_rank_only"], ref["metrics"]
    return {"speedup_rank": ref["seconds_rank_only"] / ours["seconds_rank_only"],
            "speedup_rank_cpu": ref["cpu_seconds_rank_only"] / ours["cpu_seconds_rank_only"],
            "max_abs_diff": {"mAP": abs(m["mAP"] - r["mAP"]), "mINP": abs(m["mINP"] - r["mINP"]),
                             "cmc": float(np.max(np.abs(np.asarray(m["cmc"]) - np.asarray(r["cmc"]))))},
            "num_valid_query": [m["num_valid_query"], r["num_valid_query"]]}


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
