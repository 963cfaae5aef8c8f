"""The classic CUHK03 single-shot CMC: one random gallery image per identity, 10 repeats.

torchreid draws from numpy's global RNG, so its numbers change from run to run. Here the draws
come from ``np.random.RandomState(seed)``, in torchreid's order (valid queries in order; per
repeat, identities in order of their first appearance in the ranking; one ``randint`` per
identity), so with tie-free distances ``np.random.seed(seed)`` before torchreid's
``eval_cuhk03`` gives the very same CMC. Only the CMC is sampled; AP is the ordinary one.
"""

from __future__ import annotations

import numpy as np

REPEATS = 10


def sampled_cmc(row: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray, g_camids: np.ndarray,
                length: int, camera_filter: bool, rng: np.random.RandomState) -> np.ndarray:
    """[length] CMC of one valid query (a query with at least one true match).

    row: [G] distances of the query. Ranks past the number of gallery identities are 1
    (torchreid returns a shorter curve there; every identity has been seen by then).
    """
    order = np.argsort(row, kind="stable")
    pids = g_pids[order]
    if camera_filter:
        pids = pids[~((pids == q_pid) & (g_camids[order] == q_camid))]
    uniq, first, inverse = np.unique(pids, return_index=True, return_inverse=True)
    by_appearance = np.empty(len(uniq), np.int64)
    by_appearance[np.argsort(first)] = np.arange(len(uniq))
    group = by_appearance[inverse]  # identity of each kept position, numbered by first appearance
    positions = np.argsort(group, kind="stable")  # kept positions grouped, ascending in a group
    sizes = np.bincount(group)
    starts = np.cumsum(sizes) - sizes
    own = by_appearance[np.searchsorted(uniq, q_pid)]
    ranks = np.arange(1, length + 1)
    cmc = np.zeros(length)
    for _ in range(REPEATS):
        chosen = positions[starts + rng.randint(0, sizes)]
        first_match = 1 + int((chosen < chosen[own]).sum())
        cmc += ranks >= first_match
    return cmc / REPEATS
