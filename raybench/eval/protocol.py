"""From a manifest with embeddings to the metrics of one (model, dataset) cell.

The dataset's declared protocol (raybench.specs.Protocol) says how to score it: camera
filtering, the classic CUHK03 CMC, and how many trials (published query/gallery splits, such as
GRID's 10) must be present. The run's EvalSpec says how to compare embeddings: distance,
normalisation, CMC length, average query expansion and re-ranking. ``score`` applies both,
trial by trial, and returns every metric key of the per-cell result
(raybench.rundir.records.CellResult): the pipeline adds the model, dataset, status, protocol
block and timings. The matrix's eval variants (raybench.specs.EvalVariant) are scored by the
same code from the same features, each with its own EvalSpec.

A dataset without image queries (a text-to-person dataset: CUHK-PEDES, ICFG-PEDES, RSTPReid,
whose manifests hold test images only, each its own camera) has no query/gallery split by
camera. raybench then scores image-to-image leave-one-out (``LEAVE_ONE_OUT``): every test
image is a query against all the other test images; a query whose identity has no other image
is not valid (``num_valid_query`` counts the rest). This is what camera filtering does when
each image is its own camera, so it runs on the same rank engine. Query expansion and
re-ranking then see every test image twice (as a query and as a gallery image), as they would
any query set that repeats the gallery.

With several trials, mAP, mINP and the CMC are the means over trials (the CMC cut to the
shortest trial's length), the query and gallery counts are per-trial means, and ``spread``
holds the sample standard deviations (ddof=1) of mAP and rank-1 over trials.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from raybench.errors import EvaluationError
from raybench.rundir.records import eval_block
from raybench.rundir.store import embedding_matrix
from raybench.specs import EvalSpec, EvalVariant, Protocol


LEAVE_ONE_OUT = "leave-one-out"


def has_queries(table) -> bool:
    """Whether an embedding table has image queries (else image-to-image is leave-one-out)."""
    import pyarrow.compute as pc

    return bool(pc.any(pc.equal(table.column("split"), "query")).as_py())


def score(table, protocol: Protocol, spec: EvalSpec, seed: int = 0, device: str | None = None,
          variants: Sequence[EvalVariant] = ()) -> dict[str, Any]:
    """Metrics of an embedding table: manifest columns (path, pid, camid, split[, trial]) plus
    ``embedding`` (fixed_size_list<float32>[dim]). A table without queries and without trials
    is scored leave-one-out (module docstring). Each of ``variants`` is scored the same way,
    trial by trial, from the same features; its headline metrics go under ``variants``, by
    name (``variant_record``). A variant that cannot be scored fails the whole call, naming it."""
    cols = _columns(table)
    if not (cols["split"] == "query").any() and cols["trial"] is None:
        cols, protocol = _leave_one_out(cols), replace(protocol, camera_filter=True)
    trials = _trials(cols, protocol)
    out, per_query = _score_trials(cols, trials, protocol, spec, seed, device)
    out["per_query"] = {k: [x for pq in per_query for x in pq[k]] for k in per_query[0]}
    if variants:
        out["variants"] = {v.name: _score_variant(cols, trials, protocol, v, seed, device) for v in variants}
    return out


def _score_variant(cols, trials: list[int], protocol: Protocol, variant: EvalVariant, seed: int, device):
    try:
        scored, _ = _score_trials(cols, trials, protocol, variant.eval, seed, device)
    except EvaluationError as exc:
        raise EvaluationError(f"eval variant {variant.name!r}: {exc}") from exc
    return variant_record(scored, variant.eval)


def variant_record(scored: dict[str, Any], spec: EvalSpec) -> dict[str, Any]:
    """A variant's block of a cell's result: its headline metrics (trial means where there are
    trials, and their spread) and the eval block it was scored with."""
    keep = ("mAP", "mINP", "cmc", "num_valid_query", "spread")
    return {**{key: scored[key] for key in keep}, "eval": eval_block(spec)}


def _score_trials(cols, trials: list[int], protocol: Protocol, spec: EvalSpec, seed: int, device):
    """The metrics aggregated over ``trials`` (``_aggregate``) and each trial's per-query lists."""
    results, per_query = [], []
    for t in trials:
        query, gallery = _split(cols, t)
        try:
            res = _evaluate(cols["embedding"], cols, query, gallery, protocol, spec, seed, device)
        except EvaluationError as exc:
            if len(trials) == 1:
                raise
            raise EvaluationError(f"trial {t} ({len(trials)} trials): {exc}") from exc
        results.append(_trial_record(t, res))
        per_query.append(_per_query(t, res, cols["path"][query]))
    return _aggregate(results), per_query


def _leave_one_out(cols: dict) -> dict:
    """Every gallery row twice, as a query and as a gallery image, each with its own camera
    (its row number), so camera filtering removes exactly the query itself."""
    rows = np.flatnonzero(cols["split"] == "gallery")
    out = {key: np.concatenate([cols[key][rows], cols[key][rows]]) for key in ("path", "pid", "embedding")}
    out["camid"] = np.concatenate([rows, rows])
    out["split"] = np.array(["query"] * len(rows) + ["gallery"] * len(rows), dtype=object)
    out["trial"] = None
    return out


def _columns(table) -> dict[str, np.ndarray]:
    missing = [c for c in ("path", "pid", "camid", "split", "embedding") if c not in table.column_names]
    if missing:
        raise EvaluationError(f"the table lacks the columns: {', '.join(missing)}")
    cols = {c: table.column(c).to_numpy() for c in ("path", "pid", "camid", "split")}
    cols["trial"] = table.column("trial").to_numpy() if "trial" in table.column_names else None
    cols["embedding"] = embedding_matrix(table)
    return cols


def _trials(cols, protocol: Protocol) -> list[int]:
    if cols["trial"] is None:
        if protocol.trials > 1:
            raise EvaluationError(
                f"the protocol asks for {protocol.trials} trials but the table has no 'trial' column: "
                "the dataset adapter must emit one row per image and trial")
        return [0]
    found = sorted(int(t) for t in np.unique(cols["trial"]))
    if len(found) != protocol.trials:
        raise EvaluationError(
            f"the protocol asks for {protocol.trials} trials but the table has {len(found)} "
            f"({found[:10]}); check the dataset's protocol.trials and its adapter")
    return found


def _split(cols, trial: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the trial's queries and gallery, in table order."""
    here = np.ones(len(cols["split"]), bool) if cols["trial"] is None else cols["trial"] == trial
    query = np.flatnonzero(here & (cols["split"] == "query"))
    gallery = np.flatnonzero(here & (cols["split"] == "gallery"))
    if not len(query) or not len(gallery):
        raise EvaluationError(f"trial {trial}: {len(query)} query and {len(gallery)} gallery rows; "
                              "both are needed")
    return query, gallery


def _evaluate(emb, cols, query, gallery, protocol: Protocol, spec: EvalSpec, seed: int, device):
    from raybench.eval.rank import evaluate_features, evaluate_rows
    from raybench.eval.rerank import rerank_rows

    ids = (cols["pid"][query], cols["pid"][gallery], cols["camid"][query], cols["camid"][gallery])
    common = dict(max_rank=spec.max_rank, camera_filter=protocol.camera_filter,
                  cuhk03=protocol.cuhk03_metric, seed=seed)
    qf, gf = emb[query], emb[gallery]
    if spec.aqe:
        qf, gf = _expanded(qf, gf, spec, device)
    if not spec.rerank:
        return evaluate_features(qf, gf, *ids, distance=spec.distance,
                                 normalize=spec.normalize, device=device, **common)
    rows = rerank_rows(qf, gf, k1=spec.rerank_k1, k2=spec.rerank_k2,
                       lambda_value=spec.rerank_lambda, distance=spec.distance,
                       normalize=spec.normalize, device=device)
    return evaluate_rows(rows, *ids, shape=(len(query), len(gallery)), **common)


def _expanded(qf, gf, spec: EvalSpec, device):
    """Average query expansion (raybench.eval.qe) of one trial's query and gallery, before the
    distance and before re-ranking, as fast-reid orders them. It expands the features as the
    eval block prepares them (L2-normalised when ``normalize``); the distance step then
    normalises the expanded ones again."""
    from raybench.eval.distance import prepare_features
    from raybench.eval.qe import average_query_expansion

    q, g = prepare_features(qf, gf, distance=spec.distance, normalize=spec.normalize, device=device)
    return average_query_expansion(q, g, k=spec.aqe_k, alpha=spec.aqe_alpha, times=spec.aqe_times, device=device)


def _trial_record(trial: int, res) -> dict[str, Any]:
    return {"trial": trial, "mAP": res.mAP, "mINP": res.mINP, "cmc": res.cmc.tolist(),
            "num_query": res.num_query, "num_valid_query": res.num_valid_query,
            "num_gallery": res.num_gallery}


def _per_query(trial: int, res, paths: np.ndarray) -> dict[str, list]:
    idx = np.flatnonzero(res.valid)
    return {"trial": [trial] * len(idx), "query": idx.tolist(), "path": [str(p) for p in paths[idx]],
            "ap": res.ap[idx].tolist(), "inp": res.inp[idx].tolist(),
            "first_match": res.first_match[idx].tolist()}


def _aggregate(trials: list[dict]) -> dict[str, Any]:
    def mean(key):
        return float(np.mean([t[key] for t in trials]))

    def count(key):
        return int(round(mean(key)))

    n = min(len(t["cmc"]) for t in trials)
    spread = None
    if len(trials) > 1:
        spread = {"mAP_std": float(np.std([t["mAP"] for t in trials], ddof=1)),
                  "rank1_std": float(np.std([t["cmc"][0] for t in trials], ddof=1))}
    return {"mAP": mean("mAP"), "mINP": mean("mINP"),
            "cmc": np.mean([t["cmc"][:n] for t in trials], axis=0).tolist(),
            "num_query": count("num_query"), "num_valid_query": count("num_valid_query"),
            "num_gallery": count("num_gallery"), "trials": trials, "spread": spread}
