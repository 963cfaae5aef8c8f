"""Average query expansion (AQE), as fast-reid's ``aqe`` defines it
(fastreid/evaluation/query_expansion.py), without its per-row Python loop.

Definition: the query and gallery features are stacked (queries first). In each of ``times``
rounds, every row's cosine similarity to every row is taken (on L2-normalised copies); each
row's ``k`` most similar rows (itself included) are weighted by ``similarity ** alpha``, and the
row's new feature is the mean over those k of ``feature * weight``, on the features as they
are, not normalised; the next round's similarities are those of the new features. The result
is split back into query and gallery. fast-reid's config defaults are k=5, alpha=3.0, one round
(TEST.AQE.QE_K, ALPHA, QE_TIME; raybench.specs.AQE_DEFAULTS).

Here the similarities exist a block of rows at a time (``distance.row_chunks``), never as an
(Q+G) x (Q+G) matrix, and each block takes its top k with ``torch.topk``: memory is linear in
Q+G, on the CPU or the GPU. fast-reid's ``argpartition`` and ``topk`` pick the same rows unless
two similarities tie at the k-th place.
"""

from __future__ import annotations

from raybench.errors import EvaluationError


def average_query_expansion(qf, gf, *, k: int = 5, alpha: float = 3.0, times: int = 1,
                            device: str | None = None, chunk_size: int | None = None):
    """Expanded (query, gallery) features: torch tensors [Q, dim] and [G, dim] on ``device``.

    qf: [Q, dim], gf: [G, dim] (numpy or torch; float64 stays float64). A negative similarity
    among a row's k nearest to a non-integer ``alpha`` has no real power: that is an
    EvaluationError, not a NaN in the scores.
    """
    import torch
    import torch.nn.functional as F

    from raybench.eval.distance import as_features, resolve_device, row_chunks

    if k < 1 or times < 1:
        raise EvaluationError(f"query expansion needs k >= 1 and times >= 1, got k={k}, times={times}")
    device = resolve_device(device)
    q, g = as_features(qf, device, "query features"), as_features(gf, device, "gallery features")
    if q.dtype != g.dtype:
        q, g = q.double(), g.double()
    feats = torch.cat([q, g])
    if k > len(feats):
        raise EvaluationError(f"query expansion with k={k} needs at least {k} images, got {len(feats)}")
    for _ in range(times):
        unit = F.normalize(feats, p=2, dim=1)
        expanded = torch.empty_like(feats)
        # blocks sized for the larger of a row of similarities and a row's [k, dim] gather
        for a, b in row_chunks(len(feats), max(len(feats), k * feats.shape[1]), chunk_size):
            sims, nearest = torch.mm(unit[a:b], unit.t()).topk(k, dim=1)  # [B, k] each
            weights = sims.pow(alpha)
            if torch.isnan(weights).any():
                raise EvaluationError(f"query expansion: alpha {alpha} on a negative similarity has no real "
                                      "power; use an integer alpha (fast-reid's is 3)")
            expanded[a:b] = (feats[nearest] * weights[..., None]).mean(dim=1)
        feats = expanded
    return feats[:len(q)], feats[len(q):]
