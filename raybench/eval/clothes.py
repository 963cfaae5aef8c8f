"""Clothes-changing ReID: the standard, clothes-changing and same-clothes scoring rules.

Every clothes-changing paper reports a dataset twice: under the general (standard) setting and
under the clothes-changing one; the gap between the two says whether a model matches people or
outfits. The rules, per query (items of another identity are always negatives, never junk):

==========  =============================================  =========================================
mode        true matches (same identity, and ...)           junk, removed from the ranking
==========  =============================================  =========================================
standard    another camera                                 same camera
cc          another camera and another outfit              same camera, or the query's outfit
sc          another camera and the query's outfit          same camera, or another outfit
==========  =============================================  =========================================

A query with no true match under a rule is left out of that rule's averages (and counted as
not valid), as torchreid leaves out a query without a cross-camera match. These are the rules
of Simple-CCReID's ``evaluate`` (standard) and ``evaluate_with_clothes`` (modes 'CC', 'SC'),
guxinqian/Simple-CCReID tools/eval_metrics.py; on distances without ties the numbers are
theirs. Ties are ordered by gallery index (raybench.eval.count), where numpy's argsort leaves
them to chance.

They run on raybench's one rank engine (rank.py): a rule only widens each query's junk
(matches.Clothes), so scoring a setting costs what scoring the standard protocol costs: no
per-query Python loop, no Q x G mask, distances a block of queries at a time.
"""

from __future__ import annotations

from raybench.eval.matches import CLOTHES_MODES, Clothes, clothes_codes
from raybench.eval.rank import RankResult, evaluate

__all__ = ["CLOTHES_MODES", "Clothes", "clothes_codes", "evaluate_clothes"]


def evaluate_clothes(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None,
                     mode: str = "standard", max_rank: int = 50, *, chunk_size: int | None = None) -> RankResult:
    """Score a dense distance matrix under a clothes rule (module docstring).

    distmat: [Q, G] (numpy or torch); q_pids/q_camids/q_clothes: [Q]; g_pids/g_camids/g_clothes:
    [G]. Clothes labels are compared as they are (ints, or strings such as LTCC's "001_2"),
    query and gallery together; ``standard`` ignores them and may leave them out. Returns a
    RankResult: ``.mAP``, ``.cmc`` (cut at ``max_rank``), ``.mINP``, ``.num_valid_query``
    (the queries with a true match under the rule) and the per-query lists.
    """
    rule = None
    if q_clothes is not None or g_clothes is not None or mode != "standard":
        if q_clothes is None or g_clothes is None:
            from raybench.errors import EvaluationError

            raise EvaluationError(f"clothes mode {mode!r} needs the clothes labels of queries and gallery")
        rule = clothes_codes(q_clothes, g_clothes, mode)
    return evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, chunk_size=chunk_size,
                    clothes=rule)
