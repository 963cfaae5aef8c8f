"""Node loss: a run on a Ray cluster of several nodes on this machine (a head with no CPUs, as
cluster/ configures it, and two workers) loses the node of its embedding actor, or of its
reducer, in the middle of the stream. The run must finish with every cell ok and equal to a
run without the fault, each result file holding its own cell and nothing else in results/.

The cluster is this module's own Ray (ray.cluster_utils.Cluster): the session's local Ray is
shut down first, and this module leaves Ray shut down (conftest's ray_local starts it again
for the modules after it).
"""

from __future__ import annotations

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
            nodes.add_node(num_cpus=2)
        nodes.wait_for_nodes()
        ray.init(address=nodes.address, log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


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


def _run_with_fault(cluster, spec, out: Path, actor_prefix: str, run: str) -> tuple[object, dict]:
    """Run ``spec`` in a thread; once its first cell is committed (embedded and handed to the
    reducer, which is then scoring it) and others remain, remove the worker node that holds the
    (alive) actor named ``actor_prefix``..., then add a fresh worker (as an autoscaler would).
    The run's summary, and what was seen at the removal.

    The embedding actor and the reducer are kept on different nodes, so that each case loses
    one of them only: as soon as the reducer is up (it starts before the stream), a filler actor
    takes every CPU of its node, and the embedding actor (one CPU) goes to the other worker.
    """
    import dataclasses

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    spec = dataclasses.replace(spec, name=run)
    outcome: dict = {}

    def drive():
        try:
            outcome["summary"] = run_matrix(spec, str(out), RunOptions(shared_out=True), echo=_quiet)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    start = time.perf_counter()
    thread = threading.Thread(target=drive, name="raybench-run")
    thread.start()
    seen: dict = {}
    filler = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and thread.is_alive():
        if filler is None:
            reducers = [a for a in _actors(f"raybench-reducer:{run}:") if a["State"] == "ALIVE"]
            if reducers and reducers[0]["Address"]["NodeID"] != cluster.head_node.node_id:
                filler = ray.remote(num_cpus=2)(_Filler).options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                    reducers[0]["Address"]["NodeID"], soft=False)).remote()
        committed = list(out.glob("embeddings/*/*/_SUCCESS"))
        alive = [a for a in _actors(actor_prefix) if a["State"] == "ALIVE"]
        if committed and alive:
            (actor,) = alive
            node_id = actor["Address"]["NodeID"]
            seen = {"actor": actor["ActorID"], "node": node_id, "cells_committed": len(committed),
                    "cells_scored": len(list(out.glob("results/*/*.json"))),
                    "at_s": round(time.perf_counter() - start, 1),
                    "on_that_node": sorted(a["ActorClassName"] for a in _actors("")
                                           if a["State"] == "ALIVE" and a["Address"]["NodeID"] == node_id)}
            if node_id != cluster.head_node.node_id:  # else: not removed, and the test fails below
                removed = time.perf_counter()
                cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == node_id))
                cluster.add_node(num_cpus=2)
                seen["back_after_s"] = _back(actor_prefix, node_id, removed, thread)
            break
        time.sleep(0.1)
    thread.join(timeout=180)
    if filler is not None:
        ray.kill(filler)
    assert not thread.is_alive(), "the run did not finish after the node was lost"
    if "error" in outcome:
        raise outcome["error"]
    seen["run_s"] = round(time.perf_counter() - start, 1)
    print(f"{run}: {seen}")
    assert seen.get("node"), f"the run finished before {actor_prefix} could be found: no fault happened"
    assert seen["node"] != cluster.head_node.node_id, f"{actor_prefix} lived on the head: that is head loss"
    assert seen["cells_committed"] < len(DATASETS) - 1, "the stream had (almost) ended before the fault"
    assert seen["back_after_s"] is not None, f"{actor_prefix} never came back on another node"
    lost = {"Reducer" if name == "Reducer" else "embedding" for name in seen["on_that_node"]
            if name == "Reducer" or "EmbedWorker" in name}
    assert len(lost) == 1, f"the node held both the reducer and the embedding actor: {seen['on_that_node']}"
    return outcome["summary"], seen


def _back(prefix: str, lost: str, since: float, thread: threading.Thread) -> float | None:
    """Seconds from ``since`` until an actor named ``prefix``... is alive on a node other than
    ``lost``; None if the run ended first."""
    while thread.is_alive():
        if any(a["State"] == "ALIVE" and a["Address"]["NodeID"] != lost for a in _actors(prefix)):
            return round(time.perf_counter() - since, 1)
        time.sleep(0.1)
    return None


class _Filler:
    """An actor that takes every CPU of a worker node (see _run_with_fault)."""


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


def test_losing_the_node_of_the_embedding_actor_mid_stream(cluster, spec, expected, tmp_path):
    out = tmp_path / "run"
    prefix = f"MapWorker(MapBatches(EmbedWorker_embedloss_{MODEL}))"
    summary, seen = _run_with_fault(cluster, spec, out, prefix, "embedloss")
    _check_results(out, summary, expected)
    # The actor went on elsewhere: restarted by Ray (same actor), or replaced by Ray Data.
    after = [a for a in _actors(prefix) if a["Address"]["NodeID"] != seen["node"]]
    assert after, f"no embedding actor ran on another node after {seen['node'][:8]} was lost"
    restarts = {a["ActorID"][:8]: a["NumRestarts"] for a in _actors(prefix)}
    print(f"embedding actors after the loss: {restarts}, on {[a['Address']['NodeID'][:8] for a in after]}")


def test_losing_the_node_of_the_reducer_mid_run(cluster, spec, expected, tmp_path):
    out = tmp_path / "run"
    summary, seen = _run_with_fault(cluster, spec, out, "raybench-reducer:reduceloss:", "reduceloss")
    _check_results(out, summary, expected)
    (reducer,) = [a for a in _actors("raybench-reducer:reduceloss:") if a["ActorID"] == seen["actor"]]
    assert reducer["NumRestarts"] >= 1, reducer  # the same named actor, restarted
    assert reducer["Address"]["NodeID"] not in (seen["node"], cluster.head_node.node_id), reducer
    print(f"reducer restarted {reducer['NumRestarts']} time(s), now on {reducer['Address']['NodeID'][:8]}")
