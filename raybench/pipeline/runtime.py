"""Where a run executes: size the embedding pool, check the output location, and record
provenance (versions, git hash) for run.json. Starting or joining Ray is raybench.ray_runtime's
``connect`` (imported here for the driver), the one place that does it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata

from raybench.errors import RaybenchError
from raybench.pipeline.embed import Pool
from raybench.ray_runtime import connect  # noqa: F401 - the driver's runtime.connect

#: Distributions whose versions go into run.json (read from metadata: nothing is imported).
VERSIONED = ("raybench", "ray", "torch", "torchvision", "pyarrow", "numpy", "torchreid",
             "open_clip_torch", "timm", "transformers", "pillow")

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


def check_out(store, cluster: Cluster, shared: bool = False) -> None:
    """A node-local --out on a multi-node cluster would scatter the cells over the nodes' disks."""
    shared = shared or os.environ.get(SHARED_OUT_ENV, "").lower() in ("1", "true", "yes")
    if store.is_local and cluster.nodes > 1 and not shared:
        raise RaybenchError(
            f"--out {store.uri} is a local path, but this Ray cluster has {cluster.nodes} nodes: "
            "each node would write its own copy. Use object storage (--out s3://bucket/run, "
            "gs://...), or a mount every node shares, declared with --shared-out "
            f"(or {SHARED_OUT_ENV}=1)."
        )


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_state() -> dict[str, object]:
    """The checkout's commit and whether it had local changes (None outside a git checkout)."""
    from raybench.paths import PROJECT_ROOT

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}
