"""Performance benchmarks against the peers: `raybench bench metrics` (rank metrics vs
torchreid's evaluate_rank) and `raybench bench embed` (embedding throughput vs a plain torch loop).

features.py holds the seeded synthetic embeddings with the shapes of real test sets that the
benchmarks share; peers.py loads the peers' reference code.
"""
