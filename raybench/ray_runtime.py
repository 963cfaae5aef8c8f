"""Starting or joining Ray: the one place that does it (`run`, `train`, `bench embed`).

Local Ray is started with ``address="local"``, never a bare ``ray.init()``, which would silently
join whatever cluster happens to run on the machine; RAY_ADDRESS (set by Ray Jobs, or by the
user) joins that cluster instead.
"""

from __future__ import annotations

import os


def connect(name: str, num_cpus: int | None = None, dashboard: bool | None = False,
            kind: str = "run", log_to_driver: bool = True) -> bool:
    """Start a local Ray or join RAY_ADDRESS; True when this process started Ray (and must stop it).

    ``name`` and ``kind`` ("run", "train", "bench") label the Ray job (its metadata, shown by the
    dashboard); ``num_cpus`` and ``dashboard`` apply to a local Ray only (``None``: Ray's default,
    the dashboard when its packages are installed).
    """
    import ray

    if ray.is_initialized():
        return False
    from ray.job_config import JobConfig

    common = {
        "namespace": "raybench",
        "log_to_driver": log_to_driver,
        "job_config": JobConfig(metadata={"job_name": f"raybench-{kind}:{name}", f"raybench_{kind}": name}),
    }
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, **common)
    return not address


def session_log_dir() -> str | None:
    """The log folder of the Ray session this process is connected to (``/tmp/ray/session_*/logs``
    on its node: the raylet's, the workers', this driver's core-worker log); None without Ray."""
    import ray

    if not ray.is_initialized():
        return None
    node = getattr(ray._private.worker, "_global_node", None)  # the public API does not say
    return node.get_logs_dir_path() if node is not None else None
