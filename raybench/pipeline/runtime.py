"""Where a run executes: size the embedding pool and check the output location. Starting or
joining Ray is raybench.ray_runtime's ``connect``, the one place that does it; provenance for
run.json is raybench/rundir/provenance.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from raybench.errors import RaybenchError
from raybench.pipeline.embed import Pool
from raybench.pipeline.parts import WRITES_DRIVER, WRITES_WORKERS

SHARED_OUT_ENV = "RAYBENCH_SHARED_OUT"


@dataclass(frozen=True)
class Cluster:
    nodes: int
    cpus: float
    gpus: float
    node_cpus: float = 0  # the most CPUs of one node (an actor lives on one node)

    @classmethod
    def current(cls) -> "Cluster":
        import ray

        resources = ray.cluster_resources()
        alive = [n for n in ray.nodes() if n.get("Alive")]
        node_cpus = max((n.get("Resources", {}).get("CPU", 0.0) for n in alive), default=0.0)
        return cls(len(alive), resources.get("CPU", 0.0), resources.get("GPU", 0.0), node_cpus)


def plan_pool(cluster: Cluster, actors: int | None = None, threads: int | None = None) -> Pool:
    """One actor per GPU (num_gpus=1 each); on CPU, one actor by default.

    A CPU actor reserves all but one of the node's CPUs, so that Ray always has a CPU to
    schedule the decode tasks on (they otherwise stall: ray issue #44687), but runs torch on
    all of them: decoding a batch takes a small fraction of its forward pass, and the forward
    pass is faster on every core (measured on an idle 2-core machine with OSNet x0.25:
    140 img/s with 2 torch threads vs 106 with 1; `raybench bench embed --threads N`).
    On a machine that other work keeps busy, fewer threads can be faster: pass --threads.
    """
    if cluster.gpus >= 1:
        count = min(actors or int(cluster.gpus), int(cluster.gpus))
        return Pool(actors=count, gpus=1, cpus=1, threads=threads)
    node_cpus = int(cluster.node_cpus or cluster.cpus)
    spare = max(1, int(cluster.cpus) - 1)
    count = min(max(1, actors or 1), spare)
    fits = max(1, min(spare // count, node_cpus - 1))
    return Pool(actors=count, gpus=0, cpus=fits, threads=threads or max(1, node_cpus // count))


def reducer_selector(driver: str | None = None, node_cpus: dict[str, float] | None = None) -> dict[str, str] | None:
    """Where the run's reducer may live: a label selector that keeps it off the driver's node
    when that node takes no work and another node can, else None (anywhere).

    The reducer reserves no CPU (it must not starve the decode tasks on a small machine), and
    Ray places such an actor beside its owner, on the driver's node: under Ray Jobs, the head.
    Every head in cluster/ is started with num-cpus 0 so that no pipeline work competes with
    the GCS and the dashboard there, and scoring a large cell is minutes of torch on every core
    of the node; with this selector it runs on a worker instead, where Ray restarts it on
    another worker if that one is lost (the driver sends its calls again), rather than on the
    head, whose loss ends the run anyway. A node with CPUs (a laptop, a head that takes work),
    or a cluster with no other node with CPUs yet, leaves the reducer where Ray puts it.
    ``driver`` (a node id) and ``node_cpus`` (node id -> CPUs, alive nodes) default to Ray's.
    """
    if driver is None or node_cpus is None:
        import ray

        driver = ray.get_runtime_context().get_node_id()
        node_cpus = {n["NodeID"]: n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")}
    if node_cpus.get(driver, 1.0) > 0 or not any(c > 0 for node, c in node_cpus.items() if node != driver):
        return None
    return {"ray.io/node-id": f"!{driver}"}


def declared_shared(shared: bool = False) -> bool:
    """--shared-out, or RAYBENCH_SHARED_OUT=1: --out is a mount that every node sees."""
    return shared or os.environ.get(SHARED_OUT_ENV, "").lower() in ("1", "true", "yes")


def check_out(store, cluster: Cluster, shared: bool = False) -> None:
    """A node-local --out on a multi-node cluster would scatter the cells over the nodes' disks."""
    if store.is_local and cluster.nodes > 1 and not declared_shared(shared):
        raise RaybenchError(
            f"--out {store.uri} is a local path, but this Ray cluster has {cluster.nodes} nodes: "
            "each node would write its own copy. Use object storage (--out s3://bucket/run, "
            "gs://...), or a mount every node shares, declared with --shared-out "
            f"(or {SHARED_OUT_ENV}=1)."
        )


def embedding_writes(store, cluster: Cluster, shared: bool = False, joined: bool | None = None) -> tuple[str, str]:
    """Who writes the embeddings (parts.py), and why: ``(WRITES_WORKERS, "")`` when every
    embedding actor sees the run directory as the driver does, else ``(WRITES_DRIVER, reason)``.

    The actors see it when it is object storage, a mount declared shared, or a local path on
    the one node of a Ray that this process started or initialised (``joined`` False; by
    default, no RAY_ADDRESS). A cluster the run joined may add nodes while it runs (an
    autoscaler: a head-only cluster counts one node when the run starts), and an actor on a new
    node would write its parts to that node's disk: there the driver writes them (check_out
    refuses a local --out on a cluster that already has several nodes).
    """
    from raybench import ray_runtime

    joined = ray_runtime.joins_cluster() if joined is None else joined
    if not store.is_local or declared_shared(shared) or (cluster.nodes == 1 and not joined):
        return WRITES_WORKERS, ""
    return WRITES_DRIVER, (f"--out {store.uri} is a local path on a Ray cluster this run joined, which may add nodes; "
                      f"declare --shared-out (or {SHARED_OUT_ENV}=1) if every node mounts it")
