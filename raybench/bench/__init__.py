"""Performance benchmarks against the peers: `raybench bench metrics` (rank metrics vs
torchreid's evaluate_rank) and `raybench bench embed` (embedding throughput vs a plain torch loop).

features.py holds the seeded synthetic embeddings with the shapes of real test sets that the
benchmarks share; peers.py loads the peers' reference code; ``write_json`` writes a record.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_json(record: dict, out: Path) -> Path:
    """Write a benchmark record atomically (a reader never sees half a file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(out)
    return out
