"""Evaluation: rank metrics (rank.py), text-to-image metrics (text.py), k-reciprocal re-ranking (rerank.py) and the per-dataset
protocol that turns an embedding table into query/gallery sets and trials (protocol.py).

Importing this package is cheap: torch, numba and faiss load inside the functions that use them.
"""

from raybench.eval.rank import RankResult, evaluate, evaluate_features, evaluate_rows

__all__ = ["RankResult", "evaluate", "evaluate_features", "evaluate_rows"]
