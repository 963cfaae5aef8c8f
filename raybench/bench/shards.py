"""`raybench bench metrics --scale market500k`: Market-1501 + 500k distractors, exact, in shards.

What it measures, and how:

1. Features: seeded synthetic features with Market-1501's test structure (features.py, scale
   ``market500k``: 3,368 queries; 15,913 gallery images of which 2,793 pid-0 distractors;
   then 500,000 extra distractors), d=512. They are written into a temporary run directory as
   the pipeline writes a run: the dataset's cell and the distractor set's cell, each committed
   from Parquet parts of ``PART_ROWS`` rows (rundir/store.py), so the shards read them as they
   read a real run.
2. A Ray cluster of several nodes on this machine (ray.cluster_utils.Cluster): a head with no
   CPUs, as cluster/ starts one, and ``workers`` nodes of one CPU each.
3. For each shard count (1, 2 and 4 by default): the reducer's scoring of the cell
   (raybench.pipeline.shards.score_cell, the eval block's ``shards: N``) in an actor placed as
   the reducer is (no CPU reserved, off the head): timed from the call to the scores, reading
   the embeddings included (and, with N > 1, starting the shard actors), in wall and CPU
   seconds, and each shard actor's seconds reading its rows and in steps, wall and CPU (on a
   machine that other work shares, CPU seconds are what the work costs: docs/scale.md plans
   from them); the peak resident memory of that actor and of every shard actor (each
   process's VmHWM); the largest difference of every metric and every per-query number (AP,
   INP, first-match rank) to the one-shard run, which must be 0.

``device="cuda"`` computes the distances on the GPU (torch; the counts with the torch path of
eval/count.py), each shard actor reserving a share of it; without a CUDA device it falls back
to the CPU and the record says so. Re-ranking at this size is ``--rerank`` (bench/metrics.py:
one process, the faiss neighbour search, on the GPU when a faiss GPU build sees one).
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

#: Rows per embedding part: the pipeline writes one part per batch; the shards read part by part.
PART_ROWS = 10_000
SCORED = ("mAP", "mINP", "cmc")
PER_QUERY = ("ap", "inp", "first_match")


def run(scale: str = "market500k", shards: tuple[int, ...] = (1, 2, 4), seed: int = 0, device: str | None = None,
        workers: int = 4) -> dict:
    """The benchmark's record (module docstring); ``shards`` must start with 1, the reference."""
    from raybench.bench import bench_device, provenance
    from raybench.bench.features import EXTRA_DISTRACTORS, SCALES, synthetic_features
    from raybench.bench.metrics import _machine, _versions

    if shards[0] != 1:
        raise ValueError("the first shard count must be 1: it is the one-process reference")
    device, fallback = bench_device(device)
    shape = SCALES[scale]
    record = {"benchmark": "metrics", "scale": scale, "seed": seed, "num_query": shape.num_query,
              "num_gallery": shape.num_gallery, "extra_distractors": EXTRA_DISTRACTORS[scale], "dim": shape.dim,
              "device": device, "device_fallback": fallback, "workers": workers, "part_rows": PART_ROWS,
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": _machine(), "load_before": os.getloadavg(),
              "git": provenance()}
    with tempfile.TemporaryDirectory(prefix="raybench-bench-shards-") as tmp:
        from raybench.rundir.store import RunStore

        store = RunStore.open(tmp)
        start = time.perf_counter()
        job = write_cells(store, synthetic_features(scale, seed), EXTRA_DISTRACTORS[scale])
        record["write_seconds"] = time.perf_counter() - start
        with _cluster(workers, gpu=device == "cuda"):
            runs = [_score(store, job, n, device) for n in shards]
    reference = runs[0]
    for n, one in zip(shards, runs):
        one["max_abs_diff"] = differences(one, reference)
        one["identical"] = all(v == 0 for v in one["max_abs_diff"].values())
    record["runs"] = {str(n): _public(one) for n, one in zip(shards, runs)}
    record["rates"] = rates(record, shape.num_query)
    record["metrics"] = {k: reference["metrics"][k] for k in ("mAP", "mINP", "num_valid_query")} | \
        {"R1": reference["metrics"]["cmc"][0]}
    record["load_after"] = os.getloadavg()
    record["versions"] = _versions()
    return record


def write_cells(store, data, extra: int, model: str = "synthetic"):
    """Commit ``data`` (features.SynthFeatures) as a run does: the dataset's cell (queries and
    the gallery but its last ``extra`` images) and a distractor set's cell (those ``extra``),
    named with Market's naming; the reducer's job for the dataset's cell."""
    from raybench.datasets.manifest import make_manifest
    from raybench.pipeline.reducer import CellJob
    from raybench.specs import DatasetSpec

    own = len(data.gf) - extra
    names = [f"query/{p:04d}_c{c + 1}s1_{i:06d}_00.jpg" for i, (p, c) in enumerate(zip(data.q_pids, data.q_camids))]
    names += [f"bounding_box_test/{p:04d}_c{c + 1}s1_{i:06d}_00.jpg"
              for i, (p, c) in enumerate(zip(data.g_pids[:own], data.g_camids[:own]))]
    rows = make_manifest({"path": names, "pid": np.concatenate([data.q_pids, data.g_pids[:own]]).tolist(),
                          "camid": np.concatenate([data.q_camids, data.g_camids[:own]]).tolist(),
                          "split": ["query"] * len(data.qf) + ["gallery"] * own})
    dataset = "market1501"
    _commit(store, dataset, model, rows, (data.qf, data.gf[:own]))
    extra_names = [f"images/0000_c{c + 1}s1_{i:06d}_00.jpg" for i, c in enumerate(data.g_camids[own:])]
    extra_rows = make_manifest({"path": extra_names, "pid": [0] * extra, "camid": [-1] * extra,
                                "split": ["gallery"] * extra})
    name = f"distractors-synthetic{extra}"
    key = _commit(store, name, model, extra_rows, (data.gf[own:],))
    spec = DatasetSpec(name=dataset, adapter="market1501", layout_dir="", distractors="images")
    return CellJob(model=model, dataset=spec, paradigm="baseline", spec_hash="", cell_key="synthetic",
                   manifest_hash="bench", eval_hash="", distractors=(name, key))


def _commit(store, dataset: str, model: str, rows, blocks) -> str:
    """Write ``blocks`` of embeddings (in row order) as parts of PART_ROWS rows and commit the
    cell; its key."""
    from raybench.rundir.records import CellMarker
    from raybench.rundir.store import row_table

    attempt = store.new_attempt()
    folder = store.attempt_dir(dataset, model, attempt)
    parts, at = [], 0
    for block in blocks:
        for a in range(0, len(block), PART_ROWS):
            chunk = block[a:a + PART_ROWS]
            parts.append(store.write_part(folder, "part-", np.arange(at, at + len(chunk)), chunk))
            at += len(chunk)
    key = f"bench-{dataset}"
    marker = CellMarker(key=key, model=model, dataset=dataset, spec_hash="bench", manifest_hash="bench",
                        dim=blocks[0].shape[1], rows=rows.num_rows)
    store.commit_embeddings(marker, attempt, row_table(rows, np.arange(rows.num_rows)), parts)
    return key


class Scorer:
    """The reducer's scoring in an actor of its own (placed as the reducer is)."""

    def score(self, store, job, shards: int, device: str) -> dict:
        import dataclasses

        from raybench.memory import peak_rss_mark, reset_peak_rss
        from raybench.pipeline.shards import score_cell
        from raybench.specs import EvalSpec

        reset_peak_rss()
        start, cpu = time.perf_counter(), time.process_time()
        spec = dataclasses.replace(EvalSpec(), shards=shards)
        gpus = 1 / shards if device == "cuda" else 0
        scored, placement = score_cell(store, job, spec, device=device, gpus=gpus)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        main = scored.main
        return {"seconds": seconds, "cpu_seconds": cpu, "scorer_peak_rss_bytes": peak_rss_mark(),
                "shards": placement.shards,
                "metrics": {"mAP": main.mAP, "mINP": main.mINP, "cmc": list(main.cmc),
                            "num_valid_query": main.num_valid_query, "num_gallery": main.num_gallery},
                "per_query": {k: main.per_query[k] for k in PER_QUERY}}


def _score(store, job, shards: int, device: str) -> dict:
    import ray

    from raybench.pipeline.runtime import reducer_selector

    selector = reducer_selector()
    scorer = ray.remote(Scorer).options(num_cpus=0, num_gpus=1 if device == "cuda" and shards == 1 else 0,
                                        **({"label_selector": selector} if selector else {})).remote()
    try:
        return {"shards_asked": shards, **ray.get(scorer.score.remote(store, job, shards, device))}
    finally:
        ray.kill(scorer)


def rates(record: dict, num_query: int, dims: tuple[int, ...] = (512, 1024)) -> dict:
    """Per CPU second, what docs/scale.md plans from: a shard's stored rows read and (query,
    item) pairs computed, gathered and counted (the sharded runs, mean over shards), and the
    distance GEMM alone at each of ``dims`` (one thread, here, on blocks of the runs' width)."""
    out: dict = {"dim": record["dim"]}
    sharded = [r for r in record["runs"].values() if r["items"]]
    if sharded:
        read = [n / c for r in sharded for n, c in zip(r["items"], r["shard_read_cpu_seconds"])]
        step = [num_query * n / c for r in sharded for n, c in zip(r["items"], r["shard_step_cpu_seconds"])]
        out.update(read_rows_per_cpu_second=float(np.mean(read)), step_pairs_per_cpu_second=float(np.mean(step)))
    out["gemm_pairs_per_cpu_second"] = {str(d): gemm_rate(d) for d in dims}
    return out


def gemm_rate(dim: int, items: int = 100_000, rows: int = 130, chunks: int = 4) -> float:
    """(query, item) pairs a CPU second of the distance GEMM (eval.distance.DistanceRows) at
    ``dim``, one torch thread, on ``chunks`` blocks of ``rows`` queries (Market + 500k's chunk)."""
    import torch

    from raybench.eval.distance import DistanceRows, prepare_features

    rng = np.random.default_rng(0)
    q, g = prepare_features(rng.standard_normal((rows * chunks, dim), np.float32),
                            rng.standard_normal((items, dim), np.float32), distance="euclidean", normalize=True,
                            device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        distances = DistanceRows(g, "euclidean")
        cpu = time.process_time()
        for a in range(0, rows * chunks, rows):
            distances(q[a:a + rows])
        return rows * chunks * items / (time.process_time() - cpu)
    finally:
        torch.set_num_threads(threads)


def differences(one: dict, reference: dict) -> dict[str, float]:
    """The largest absolute difference of each metric and per-query list to the reference's."""
    out = {}
    for key in SCORED:
        out[key] = float(np.max(np.abs(np.subtract(one["metrics"][key], reference["metrics"][key]))))
    for key in PER_QUERY:
        out[key] = float(np.max(np.abs(np.subtract(one["per_query"][key], reference["per_query"][key]))))
    return out


def _public(one: dict) -> dict:
    """A run as the record keeps it (the per-query lists are compared, not stored)."""
    shards = one["shards"] or {}
    peaks = [p for p in shards.get("peak_rss_bytes") or [] if p is not None]
    return {"shards": one["shards_asked"], "seconds": one["seconds"], "scorer_cpu_seconds": one["cpu_seconds"],
            "scorer_peak_rss_bytes": one["scorer_peak_rss_bytes"],
            "shard_peak_rss_bytes": shards.get("peak_rss_bytes"), "max_shard_peak_rss_bytes": max(peaks, default=None),
            "items": shards.get("items"), "nodes": shards.get("nodes"), "restarts": shards.get("restarts"),
            **{f"shard_{key}": shards.get(key) for key in ("read_seconds", "read_cpu_seconds", "step_seconds",
                                                          "step_cpu_seconds")},
            "max_abs_diff": one["max_abs_diff"], "identical": one["identical"],
            "metrics": {k: v for k, v in one["metrics"].items() if k != "cmc"} | {"R1": one["metrics"]["cmc"][0]}}


class _cluster:
    """A head with no CPUs and ``workers`` one-CPU nodes on this machine, this process joined to
    it (ray_runtime.connect, by RAY_ADDRESS while the cluster lives)."""

    def __init__(self, workers: int, gpu: bool = False):
        self.workers, self.gpu = workers, gpu

    def __enter__(self):
        import socket

        import ray
        from ray.cluster_utils import Cluster

        from raybench import ray_runtime

        ray.shutdown()
        ray_runtime.configure_ray_console()
        with socket.socket() as probe:  # Ray's Jobs server binds a port even without a dashboard
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                                   "dashboard_port": port})
        for _ in range(self.workers):
            self.nodes.add_node(num_cpus=1, **({"num_gpus": 1} if self.gpu else {}))
        self.nodes.wait_for_nodes()
        self.address = os.environ.get("RAY_ADDRESS")
        os.environ["RAY_ADDRESS"] = self.nodes.address
        ray_runtime.connect("shards", kind="bench")
        return self

    def __exit__(self, *exc):
        import ray

        ray.shutdown()
        self.nodes.shutdown()
        if self.address is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = self.address
