"""Independent references for the eval variant tests: fast-reid's average query expansion
written as its definition reads (a loop over rows), and a cell's metrics as torchreid computes
them from features (compute_distance_matrix, re_ranking, evaluate_rank), with mINP by brute force."""

from __future__ import annotations

import numpy as np

from raybench.bench.peers import torchreid_module


def reference_aqe(qf, gf, k: int, alpha: float, times: int = 1):
    """Queries then gallery, in float64; each round: cosine similarities on normalised copies
    (F.normalize's: a zero row stays zero), each row's k most similar rows (itself included),
    mean of raw feature * similarity ** alpha."""
    feats = np.concatenate([np.asarray(qf), np.asarray(gf)]).astype(np.float64)
    for _ in range(times):
        unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        expanded = np.empty_like(feats)
        for i in range(len(feats)):
            sims = unit @ unit[i]
            top = np.argsort(-sims, kind="stable")[:k]
            expanded[i] = np.mean(feats[top] * (sims[top] ** alpha)[:, None], axis=0)
        feats = expanded
    return feats[:len(qf)], feats[len(qf):]


def torchreid_metrics(qf, gf, q_pids, g_pids, q_camids, g_camids, *, distance="euclidean", normalize=True,
                      max_rank=50, aqe=None, rerank=None):
    """(mAP, mINP, cmc) by torchreid's functions, on L2-normalised features where ``normalize``.
    ``aqe``: (k, alpha, times) by reference_aqe first (then normalised again where
    ``normalize``); ``rerank``: (k1, k2, lambda) by torchreid's re_ranking on the distances of
    the query and gallery features."""
    import torch
    import torch.nn.functional as F

    dist = torchreid_module("reid/metrics/distance.py").compute_distance_matrix
    rank = torchreid_module("reid/metrics/rank.py").evaluate_rank
    prepare = F.normalize if normalize else (lambda x: x)
    q, g = prepare(torch.as_tensor(np.asarray(qf))), prepare(torch.as_tensor(np.asarray(gf)))
    if aqe:
        q, g = (prepare(torch.from_numpy(x).float()) for x in reference_aqe(q.numpy(), g.numpy(), *aqe))
    distmat = dist(q, g, distance).numpy()
    if rerank:
        k1, k2, lam = rerank
        re_ranking = torchreid_module("reid/utils/rerank.py").re_ranking
        distmat = re_ranking(distmat, dist(q, q, distance).numpy(), dist(g, g, distance).numpy(),
                             k1=k1, k2=k2, lambda_value=lam)
    ids = (np.asarray(q_pids), np.asarray(g_pids), np.asarray(q_camids), np.asarray(g_camids))
    cmc, mAP = rank(distmat, *ids, max_rank=max_rank, use_metric_cuhk03=False, use_cython=False)
    return float(mAP), _minp(distmat, *ids), np.asarray(cmc)


def _minp(distmat, q_pids, g_pids, q_camids, g_camids) -> float:
    """fast-reid's mINP: per valid query, #matches / rank of the hardest match (market filter)."""
    inps = []
    for i, row in enumerate(distmat):
        order = np.argsort(row, kind="stable")
        match = g_pids[order] == q_pids[i]
        match = match[~(match & (g_camids[order] == q_camids[i]))]
        if match.any():
            hits = np.flatnonzero(match) + 1
            inps.append(len(hits) / hits[-1])
    return float(np.mean(inps))



def reference_clothes(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, mode="standard",
                      max_rank=50, ap="step"):
    """The clothes-changing rules as Simple-CCReID states them (tools/eval_metrics.py, ``evaluate``
    and ``evaluate_with_clothes``), one query at a time with a stable sort: raybench.bench.clothes'
    per-query loop (the benchmark's reference) on one block of distances.

    Returns (mAP, mINP, cmc [min(max_rank, G)], number of valid queries); mAP None when none is valid."""
    from raybench.bench.clothes import per_query

    d = np.asarray(distmat)
    res = per_query([(0, len(d), d)], np.asarray(q_pids), g_pids, np.asarray(q_camids), g_camids,
                    np.asarray(q_clothes), g_clothes, mode=mode, max_rank=max_rank, ap=ap)
    cmc = None if res["cmc"] is None else np.asarray(res["cmc"])
    return res["mAP"], res["mINP"], cmc, res["num_valid_query"]
