"""Shard actors on Ray: a cell whose gallery (its own images and a distractor set's) is held by 3
shard actors scores exactly as one process, and a shard actor that dies in the middle of the
cell (its process gone, as when its node is lost) is restarted by Ray from the stored
embeddings, and the cell finishes with the same numbers; its result records the restart.

The cell is committed as a run commits one (raybench.bench.shards.write_cells, which the
market500k benchmark uses at full size).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from raybench.bench.features import synthetic_features
from raybench.bench.shards import write_cells
from raybench.pipeline.shards import ShardActor, score_cell
from raybench.rundir.store import RunStore
from raybench.specs import EvalSpec


def dying_once(marker: str, offset: int):
    """A shard actor class whose shard starting at ``offset`` kills its own process at its first
    counting step, once (``marker`` records that it did)."""

    class DiesOnce(ShardActor):
        def __init__(self, store, pieces, start, *args):
            super().__init__(store, pieces, start, *args)
            self.dies = start == offset and not os.path.exists(marker)

        def step(self, queries, step):
            if self.dies and step.count is not None:
                open(marker, "w").close()
                os._exit(1)
            return super().step(queries, step)

    return DiesOnce


def test_a_shard_actor_killed_mid_cell_is_restarted_and_scores_the_same(ray_local, tmp_path):
    store = RunStore.open(tmp_path / "run")
    job = write_cells(store, synthetic_features("tiny", seed=3), extra=60)
    spec = EvalSpec(max_rank=20)
    whole, placement = score_cell(store, job, dataclasses.replace(spec, shards=1))
    assert placement.shards is None and placement.distractors["images"] == 60
    assert whole.main.num_gallery == 600 and 0 < whole.main.num_valid_query <= 120

    marker = tmp_path / "died"
    scored, placement = score_cell(store, job, dataclasses.replace(spec, shards=3), actor=dying_once(str(marker), 200))
    assert marker.exists(), "no shard actor died: the test proves nothing"
    shards = placement.shards
    assert (shards["count"], shards["items"], shards["restarts"]) == (3, [200, 200, 200], 1)
    assert all(p > 0 for p in shards["peak_rss_bytes"])
    assert (scored.main.mAP, scored.main.mINP, scored.main.cmc) == (whole.main.mAP, whole.main.mINP, whole.main.cmc)
    for key in ("ap", "inp", "first_match", "query"):
        np.testing.assert_array_equal(scored.main.per_query[key], whole.main.per_query[key])
