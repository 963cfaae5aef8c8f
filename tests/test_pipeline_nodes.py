"""Node loss: a run on a Ray cluster of several nodes on this machine (a head with no CPUs, as
cluster/ configures it, and two workers) loses the node of its embedding actor, or of its
reducer, in the middle of the stream. The run must finish with every cell ok and equal to a
run without the fault, each result file holding its own cell and nothing else in results/.

The two actors are kept on different workers (a filler actor and a label on each worker, see
``_run_with_fault``), so that each case loses one of them only. Without raybench's placement
of the reducer (runtime.reducer_selector) it would live on the head, and losing it would be
head loss, which no run survives.

The cluster is this module's own Ray (ray.cluster_utils.Cluster): the session's local Ray is
shut down first, and this module leaves Ray shut down (conftest's ray_local starts it again
for the modules after it).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

import pytest
from pipeline_helpers import dummy_model, make_market, market_dataset, matrix

from raybench.pipeline.driver import RunOptions, run_matrix

pytestmark = pytest.mark.slow

DATASETS = ("n1", "n2", "n3", "n4", "n5")
MODEL = "slow"
#: What must equal the fault-free run's, per result file.
METRICS = ("model", "dataset", "status", "mAP", "mINP", "cmc", "num_query", "num_valid_query", "num_gallery",
           "cell_key")


@pytest.fixture(scope="module")
def cluster():
    """A head with no CPUs and two workers with two (logical) CPUs each, on this machine."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the session's local Ray, if an earlier module started it
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(2):
            _add_worker(nodes)
        nodes.wait_for_nodes()
        ray.init(address=nodes.address, log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


_WORKERS = itertools.count()
#: A label on each worker node, its own value on each: the tests' placement of the reducer.
LABEL = "raybench-test/worker"


def _add_worker(cluster):
    """A worker node with two CPUs, as an autoscaler would add."""
    return cluster.add_node(num_cpus=2, labels={LABEL: f"w{next(_WORKERS)}"})


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    """Five small datasets, each with its own images (so each cell has its own scores), and a
    model that sleeps per batch (three batches a cell), so that the stream lasts seconds."""
    root = tmp_path_factory.mktemp("node-data")
    datasets = [market_dataset(name, make_market(root / name, seed=10 + i)) for i, name in enumerate(DATASETS)]
    return matrix([dummy_model(MODEL, 8, sleep=0.5)], datasets, name="nodes")


@pytest.fixture(scope="module")
def expected(cluster, spec, tmp_path_factory) -> dict:
    """The results of the same matrix on the same cluster, without a fault."""
    out = tmp_path_factory.mktemp("clean") / "run"
    start = time.perf_counter()
    summary = run_matrix(spec, str(out), RunOptions(shared_out=True), echo=_quiet)
    print(f"fault-free run: {time.perf_counter() - start:.1f} s")
    assert summary.ok, summary.failed
    metrics = _metrics(out)
    assert len({json.dumps(m["mAP"]) for m in metrics.values()}) > 1, "cells score alike: a swap would not show"
    return metrics


def _quiet(_message: str) -> None:
    pass


def _metrics(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): {k: json.loads(p.read_text())[k] for k in METRICS}
            for p in sorted((out / "results").rglob("*.json"))}


def _actors(prefix: str) -> list[dict]:
    """The GCS actor table's entries whose name or class name starts with ``prefix`` (dead ones
    too): what `ray list actors` shows, without the dashboard."""
    from ray._private import state

    return [a for a in state.actors().values()
            if (a["Name"] or "").startswith(prefix) or a["ActorClassName"].startswith(prefix)]


def _run_with_fault(cluster, spec, out: Path, lose: str, monkeypatch) -> tuple[object, dict]:
    """Run ``spec`` in a thread; once its first cell is committed (embedded and sent to the
    reducer, which is then scoring it) and others remain, remove the worker node that holds
    the embedding actor (``lose="embedding"``) or the reducer (``"reducer"``), then add a fresh
    worker (as an autoscaler would). The run's summary, and what was seen.

    Each case loses one of the two actors only: a filler actor takes both CPUs of one worker
    ("home"), so the embedding actor (one CPU) and the decode tasks run on the other; the
    reducer's label selector, raybench's own (which keeps it off the head: checked here) plus
    "not that other worker", puts it on home, and after a loss on the fresh worker.
    """
    import dataclasses

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from raybench.pipeline import runtime

    run = f"{lose}loss"
    spec = dataclasses.replace(spec, name=run)
    head = cluster.head_node.node_id
    home, other = sorted(n.node_id for n in cluster.worker_nodes)[:2]
    labels = {n["NodeID"]: n["Labels"].get(LABEL) for n in ray.nodes() if n["Alive"]}
    class Filler:  # defined here, so that it travels by value (workers cannot import this module)
        def ready(self) -> bool:
            return True

    filler = ray.remote(num_cpus=2)(Filler).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(home, soft=False)).remote()
    ray.get(filler.ready.remote(), timeout=60)
    seen: dict = {}
    own = runtime.reducer_selector

    def selector():
        seen["selector"] = own()
        return {**(seen["selector"] or {}), LABEL: f"!{labels[other]}"}

    monkeypatch.setattr(runtime, "reducer_selector", selector)
    prefix = f"MapWorker(MapBatches(EmbedWorker_{run}_{MODEL}))" if lose == "embedding" \
        else f"raybench-reducer:{run}:"
    outcome: dict = {}

    def drive():
        try:
            outcome["summary"] = run_matrix(spec, str(out), RunOptions(shared_out=True), echo=_quiet)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    start = time.perf_counter()
    thread = threading.Thread(target=drive, name="raybench-run")
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and thread.is_alive():
        committed = list(out.glob("embeddings/*/*/_SUCCESS"))
        alive = [a for a in _actors(prefix) if a["State"] == "ALIVE"]
        if committed and alive:
            (actor,) = alive
            node_id = actor["Address"]["NodeID"]
            seen.update({
                "actor": actor["ActorID"], "node": node_id, "cells_committed": len(committed),
                "cells_scored": len(list(out.glob("results/*/*.json"))), "at_s": round(time.perf_counter() - start, 1),
                "on_that_node": sorted(a["ActorClassName"] for a in _actors("")
                                       if a["State"] == "ALIVE" and a["Address"]["NodeID"] == node_id)})
            if node_id != head:  # else: not removed, and the test fails below
                removed = time.perf_counter()
                cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == node_id))
                _add_worker(cluster)
                seen["back_after_s"] = _back(prefix, node_id, removed, thread)
            break
        time.sleep(0.1)
    thread.join(timeout=180)
    ray.kill(filler)
    assert not thread.is_alive(), "the run did not finish after the node was lost"
    if "error" in outcome:
        raise outcome["error"]
    seen["run_s"] = round(time.perf_counter() - start, 1)
    print(f"{run}: {seen}")
    assert seen["selector"] == {"ray.io/node-id": f"!{head}"}, "raybench would leave the reducer on the head"
    assert seen.get("node"), f"the run finished before {prefix} could be found: no fault happened"
    assert seen["node"] != head, f"{prefix} lived on the head: that is head loss"
    assert seen["node"] == (other if lose == "embedding" else home), seen
    assert seen["cells_committed"] < len(DATASETS) - 1, "the stream had (almost) ended before the fault"
    assert seen["back_after_s"] is not None, f"{prefix} never came back on another node"
    both = {"Reducer", f"MapWorker(MapBatches(EmbedWorker_{run}_{MODEL}))"}
    assert not both <= set(seen["on_that_node"]), f"the node held both actors: {seen['on_that_node']}"
    return outcome["summary"], seen


def _back(prefix: str, lost: str, since: float, thread: threading.Thread) -> float | None:
    """Seconds from ``since`` until an actor named ``prefix``... is alive on a node other than
    ``lost``; None if the run ended first."""
    while thread.is_alive():
        if any(a["State"] == "ALIVE" and a["Address"]["NodeID"] != lost for a in _actors(prefix)):
            return round(time.perf_counter() - since, 1)
        time.sleep(0.1)
    return None


def _check_results(out: Path, summary, expected: dict) -> None:
    """Every cell ok, equal to the fault-free run, in its own file, and no other file there."""
    assert summary.ok, summary.failed
    assert [(r["dataset"], r["status"]) for r in summary.rows] == [(d, "ok") for d in DATASETS]
    files = sorted(p.relative_to(out).as_posix() for p in (out / "results").rglob("*") if p.is_file())
    assert files == [f"results/{d}/{MODEL}.json" for d in DATASETS], files  # no stray or temporary file
    got = _metrics(out)
    for rel, metrics in got.items():
        _, dataset, name = rel.split("/")
        assert (metrics["dataset"], metrics["model"]) == (dataset, name.removesuffix(".json")), rel
    assert got == expected
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp")], "a staging file was left behind"


def test_losing_the_node_of_the_embedding_actor_mid_stream(cluster, spec, expected, tmp_path, monkeypatch):
    out = tmp_path / "run"
    prefix = f"MapWorker(MapBatches(EmbedWorker_embeddingloss_{MODEL}))"
    summary, seen = _run_with_fault(cluster, spec, out, "embedding", monkeypatch)
    _check_results(out, summary, expected)
    # The actor went on elsewhere: restarted by Ray (same actor), or replaced by Ray Data.
    after = [a for a in _actors(prefix) if a["Address"]["NodeID"] != seen["node"]]
    assert after, f"no embedding actor ran on another node after {seen['node'][:8]} was lost"
    restarts = {a["ActorID"][:8]: a["NumRestarts"] for a in _actors(prefix)}
    print(f"embedding actors after the loss: {restarts}, on {[a['Address']['NodeID'][:8] for a in after]}")


def test_losing_the_node_of_the_reducer_mid_run(cluster, spec, expected, tmp_path, monkeypatch):
    out = tmp_path / "run"
    summary, seen = _run_with_fault(cluster, spec, out, "reducer", monkeypatch)
    _check_results(out, summary, expected)
    (reducer,) = [a for a in _actors("raybench-reducer:reducerloss:") if a["ActorID"] == seen["actor"]]
    assert reducer["NumRestarts"] >= 1, reducer  # the same named actor, restarted
    assert reducer["Address"]["NodeID"] not in (seen["node"], cluster.head_node.node_id), reducer
    print(f"reducer restarted {reducer['NumRestarts']} time(s), now on {reducer['Address']['NodeID'][:8]}")


def stalling_once(marker: str):
    """A shard actor class whose first shard, at its first counting step, writes its node id to
    ``marker`` and waits there (for its node to be removed), once."""
    import os

    from raybench.pipeline.shards import ShardActor

    class Stalls(ShardActor):
        def __init__(self, store, pieces, start, *args):
            super().__init__(store, pieces, start, *args)
            self.stalls = start == 0 and not os.path.exists(marker)

        def step(self, queries, step):
            if self.stalls and step.count is not None:
                import ray

                with open(marker + ".tmp", "w") as out:
                    out.write(ray.get_runtime_context().get_node_id())
                os.replace(marker + ".tmp", marker)
                time.sleep(300)
            return super().step(queries, step)

    return Stalls


def test_losing_the_node_of_a_shard_actor_mid_cell(cluster, tmp_path):
    """A cell in 2 shards; the node of one shard actor is removed while that actor holds a step:
    the shard is read again from the stored embeddings on another node, and the cell scores as
    one process does."""
    import dataclasses

    import numpy as np

    from raybench.bench.features import synthetic_features
    from raybench.bench.shards import write_cells
    from raybench.pipeline.shards import score_cell
    from raybench.rundir.store import RunStore
    from raybench.specs import EvalSpec

    store = RunStore.open(tmp_path / "run")
    job = write_cells(store, synthetic_features("tiny", seed=4), extra=60)
    spec = EvalSpec(max_rank=20)
    whole, _ = score_cell(store, job, dataclasses.replace(spec, shards=1))
    marker = tmp_path / "stalled"
    outcome: dict = {}

    def score():
        try:
            outcome["scored"] = score_cell(store, job, dataclasses.replace(spec, shards=2),
                                           actor=stalling_once(str(marker)))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=score, name="raybench-shards")
    thread.start()
    deadline = time.monotonic() + 120
    while not marker.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the shard actor never reached its step: no fault happened"
    lost = marker.read_text()
    assert lost != cluster.head_node.node_id
    cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == lost))
    _add_worker(cluster)
    thread.join(timeout=240)
    assert not thread.is_alive(), "the cell did not finish after the node was lost"
    if "error" in outcome:
        raise outcome["error"]
    scored, placement = outcome["scored"]
    shards = placement.shards
    assert shards["restarts"] >= 1 and lost in shards["nodes"][0] and len(shards["nodes"][0]) == 2, shards
    assert (scored.main.mAP, scored.main.cmc) == (whole.main.mAP, whole.main.cmc)
    for key in ("ap", "inp", "first_match"):
        np.testing.assert_array_equal(scored.main.per_query[key], whole.main.per_query[key])
