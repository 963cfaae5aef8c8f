"""From a manifest with embeddings to the metrics of one (model, dataset) cell.

The dataset's declared protocol (raybench.specs.Protocol) says how to score it: camera
filtering, the classic CUHK03 CMC, and how many trials (published query/gallery splits, such as
GRID's 10) must be present. The run's EvalSpec says how to compare embeddings: distance,
normalisation, CMC length, average query expansion and re-ranking. ``score`` applies both,
trial by trial, to the columns of a cell's embedding table (numpy arrays: this package knows
nothing of the run directory) and returns its scoring blocks (raybench.metrics.Scores): the
main one, and one per eval variant of the matrix (raybench.specs.EvalVariant), scored by the
same code from the same features, each with its own EvalSpec.

A dataset without image queries (a text-to-person dataset: CUHK-PEDES, ICFG-PEDES, RSTPReid,
whose manifests hold test images only, each its own camera) has no query/gallery split by
camera. raybench then scores image-to-image leave-one-out (``LEAVE_ONE_OUT``): every test
image is a query against all the other test images; a query whose identity has no other image
is not valid (``num_valid_query`` counts the rest). This is what camera filtering does when
each image is its own camera, so it runs on the same rank engine. Query expansion and
re-ranking then see every test image twice (as a query and as a gallery image), as they would
any query set that repeats the gallery.

A video dataset's table holds frames of tracklets (a ``tracklet`` and a ``frame`` column):
each block pools them first, by its own eval block's ``pool`` and ``frames``
(raybench.eval.tracklets), and ranks tracklets; a pooling shared by several blocks is computed
once. ``Scored.pooling`` then states the main block's pooling, and each variant's ``scoring``
its own.

A gallery too large for one process is scored in shards (``sharded``, eval/shard.py, held by
Ray actors that raybench.pipeline.shards starts): every block over the whole held gallery
that compares plain distances by the same-pid rule (no query expansion, no re-ranking, not the
classic CUHK03 CMC, no clothes rule, step AP) is scored there, exactly as here; the others
(and a setting over part of the gallery) read their gallery rows here. Distractors (a dataset's ``distractors:``) are
gallery rows with ``pid`` ``DISTRACTOR_PID``, an identity no query has, and ``trial``
``ALL_TRIALS`` where the table has trials: they are in every trial's gallery.

With several trials, mAP, mINP and the CMC are the means over trials (the CMC cut to the
shortest trial's length), the query and gallery counts are per-trial means, and ``spread``
holds the sample standard deviations (ddof=1) over trials of the metrics that declare one
(raybench.metrics: mAP and R1).

A dataset with scoring settings (``Protocol.settings``: the clothes-changing datasets) is
scored once per setting, each a block of ``Scored.settings``: the setting keeps its queries
and gallery (by camera), matches them by its rule (raybench.eval.clothes: standard, cc, sc,
reading the ``clothes`` column) and, for a single-shot setting, scores seeded draws of one
gallery image per identity as trials (``_draws``). The headline setting is also the main
block, and eval variants score the headline setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from raybench.errors import EvaluationError
from raybench.metrics import METRICS, Scores
from raybench.specs import EvalSpec, EvalVariant, Protocol, Setting


LEAVE_ONE_OUT = "leave-one-out"
#: The pid of a distractor row: no query has it (manifests hold pids >= 0; -1 is junk, dropped).
DISTRACTOR_PID = -2
#: The trial of a row that is in every trial's gallery (a distractor).
ALL_TRIALS = -1
#: The columns ``score`` reads (``trial`` only where a dataset has several splits).
COLUMNS = ("path", "pid", "camid", "split", "embedding")


@dataclass(frozen=True)
class Scored:
    """A cell's scoring blocks: the main one, each eval variant's (by name), and how
    image-to-image was scored where the table has no image queries (``LEAVE_ONE_OUT``)."""

    main: Scores
    variants: Mapping[str, Scores] = field(default_factory=dict)
    i2i_rule: str | None = None
    pooling: Mapping[str, Any] | None = None  # a video table: the main block's pool and frames
    settings: Mapping[str, Scores] = field(default_factory=dict)  # Protocol.settings' blocks, by name


def stated(spec: EvalSpec) -> dict[str, Any]:
    """An EvalSpec as results state it (the protocol block's eval keys, and each eval variant's
    ``scoring``): re-ranking's and query expansion's parameters only where they are on."""
    block = {"distance": spec.distance, "normalize": spec.normalize, "rerank": spec.rerank,
             "max_rank": spec.max_rank}
    if spec.rerank:
        block.update(rerank_k1=spec.rerank_k1, rerank_k2=spec.rerank_k2, rerank_lambda=spec.rerank_lambda)
    if spec.aqe:
        block.update(aqe_k=spec.aqe_k, aqe_alpha=spec.aqe_alpha, aqe_times=spec.aqe_times)
    return block


def protocol_block(protocol: Protocol, spec: EvalSpec) -> dict[str, Any]:
    """A result's "protocol" block: how the cell was scored (the dataset's Protocol and the
    matrix's EvalSpec). The one place it is built, for scored and failed cells alike."""
    block = {"camera_filter": protocol.camera_filter, "cuhk03_metric": protocol.cuhk03_metric,
             "trials": protocol.trials, **stated(spec)}
    # the later keys only where they are set: a result of any other dataset reads as before
    if protocol.settings:
        block["headline"] = protocol.headline_setting.name
    if protocol.ap != "step":
        block["ap"] = protocol.ap
    if protocol.follows:
        block["follows"] = protocol.follows
    return block


def score(cols: Mapping[str, np.ndarray], protocol: Protocol, spec: EvalSpec, seed: int = 0,
          device: str | None = None, variants: Sequence[EvalVariant] = (), sharded=None) -> Scored:
    """The blocks of a cell's embeddings, given as columns (``COLUMNS``, [rows] each; the
    embedding float32 [rows, dim]; ``trial`` [rows] where there are trials; rundir/store.py's
    ``embedding_columns`` reads them from a stored cell). A table without queries and without
    trials is scored leave-one-out (module docstring). Each of ``variants`` is scored the same
    way, trial by trial, from the same features. A variant that cannot be scored fails the
    whole call, naming it. ``sharded``: the cell's gallery held in shards (an
    eval.shard.Sharded), for the blocks it scores (module docstring); the embedding column may
    then be any object that gives rows by index (``embedding[rows]``)."""
    cols = _columns(cols)
    rule = None
    if not (cols["split"] == "query").any() and cols["trial"] is None:
        cols, protocol, rule = _leave_one_out(cols), replace(protocol, camera_filter=True), LEAVE_ONE_OUT
    trials = _trials(cols, protocol)
    rows = _Rows(cols)
    headline = protocol.headline_setting
    settings = {s.name: _score_setting(rows(spec), trials, protocol, spec, s, seed, device, sharded,
                                       paths=s is headline) for s in protocol.settings}
    main = settings[headline.name] if headline else _score_trials(rows(spec), trials, protocol, spec, seed, device,
                                                                  sharded, paths=True)
    return Scored(main, {v.name: _score_variant(rows, trials, protocol, v, headline, seed, device, sharded)
                         for v in variants}, rule, pooling=rows.stated(spec), settings=settings)


class _Rows:
    """What a block ranks: the table's rows, or, in a video table, its tracklets pooled as the
    block's eval block says (each pooling computed once)."""

    def __init__(self, cols: dict):
        self.cols, self.pooled = cols, {}

    def __call__(self, spec: EvalSpec) -> dict:
        if self.cols.get("tracklet") is None:
            return self.cols
        rule = (spec.pool, spec.frames)
        if rule not in self.pooled:
            from raybench.eval.tracklets import pool_tracklets

            self.pooled[rule] = pool_tracklets(self.cols, spec.pool, spec.frames)
        return self.pooled[rule]

    def stated(self, spec: EvalSpec) -> dict[str, Any] | None:
        """The pooling as results state it (None for an image table)."""
        return None if self.cols.get("tracklet") is None else {"pool": spec.pool, "frames": spec.frames}


def _score_variant(rows: _Rows, trials: list[int], protocol: Protocol, variant: EvalVariant, setting: Setting | None,
                   seed: int, device, sharded=None) -> Scores:
    try:
        scored = _score_trials(rows(variant.eval), trials, protocol, variant.eval, seed, device, sharded,
                               setting=setting)
    except EvaluationError as exc:
        raise EvaluationError(f"eval variant {variant.name!r}: {exc}") from exc
    return replace(scored, scoring={**stated(variant.eval), **(rows.stated(variant.eval) or {})})


def _score_setting(cols, trials: list[int], protocol: Protocol, spec: EvalSpec, setting: Setting, seed: int, device,
                   sharded, paths: bool) -> Scores:
    try:
        scored = _score_trials(cols, trials, protocol, spec, seed, device, sharded, paths=paths, setting=setting)
    except EvaluationError as exc:
        raise EvaluationError(f"setting {setting.name!r}: {exc}") from exc
    return replace(scored, scoring=setting.stated())


def _score_trials(cols, trials: list[int], protocol: Protocol, spec: EvalSpec, seed: int, device, sharded=None,
                  paths: bool = False, setting: Setting | None = None) -> Scores:
    """The block of ``trials`` (``_aggregate``), with every trial's per-query lists (and the
    queries' image paths, with ``paths``); with a ``setting``, its queries, gallery and rule,
    and for a single-shot setting each trial's draws as trials of their own."""
    results, per_query = [], []
    for t in trials:
        query, gallery = _split(cols, t, setting)
        draws = _draws(cols, gallery, setting) if setting is not None and setting.single_shot else [gallery]
        for d, drawn in enumerate(draws):
            label = t * len(draws) + d  # a trial of the dataset, or a draw, or both
            try:
                res = _evaluate(cols["embedding"], cols, query, drawn, protocol, spec, seed, device, setting, sharded)
            except EvaluationError as exc:
                if len(trials) * len(draws) == 1:
                    raise
                what = f"draw {d} ({len(draws)} draws)" if len(draws) > 1 else f"trial {t} ({len(trials)} trials)"
                raise EvaluationError(f"{what}: {exc}") from exc
            results.append(_trial_record(label, res))
            per_query.append(_per_query(label, res, cols["path"][query] if paths else None))
    merged = {k: [x for pq in per_query for x in pq[k]] for k in per_query[0]}
    return replace(_aggregate(results), per_query=merged)


def _leave_one_out(cols: dict) -> dict:
    """Every gallery row twice, as a query and as a gallery image, each with its own camera
    (its row number), so camera filtering removes exactly the query itself."""
    rows = np.flatnonzero(cols["split"] == "gallery")
    out = {key: np.concatenate([cols[key][rows], cols[key][rows]]) for key in ("path", "pid", "embedding")}
    out["camid"] = np.concatenate([rows, rows])
    out["split"] = np.array(["query"] * len(rows) + ["gallery"] * len(rows), dtype=object)
    out["trial"] = None
    return out


def _columns(cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing = [c for c in COLUMNS if c not in cols]
    if missing:
        raise EvaluationError(f"the table lacks the columns: {', '.join(missing)}")
    out = {**{c: v if c == "embedding" else np.asarray(v) for c, v in cols.items()}, "trial": cols.get("trial"),
           "tracklet": cols.get("tracklet")}
    if "clothes" in out:  # outfit keys -> integer codes, once for every setting
        out["clothes_code"] = np.unique(out["clothes"].astype(str), return_inverse=True)[1].reshape(-1)
    return out


def _trials(cols, protocol: Protocol) -> list[int]:
    if cols["trial"] is None:
        if protocol.trials > 1:
            raise EvaluationError(
                f"the protocol asks for {protocol.trials} trials but the table has no 'trial' column: "
                "the dataset adapter must emit one row per image and trial")
        return [0]
    found = sorted(int(t) for t in np.unique(cols["trial"]) if t != ALL_TRIALS)
    if len(found) != protocol.trials:
        raise EvaluationError(
            f"the protocol asks for {protocol.trials} trials but the table has {len(found)} "
            f"({found[:10]}); check the dataset's protocol.trials and its adapter")
    return found


def _split(cols, trial: int, setting: Setting | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the trial's queries and gallery, in table order; a setting keeps those
    under its cameras."""
    here = np.ones(len(cols["split"]), bool) if cols["trial"] is None else np.isin(cols["trial"], (trial, ALL_TRIALS))
    query, gallery = here & (cols["split"] == "query"), here & (cols["split"] == "gallery")
    if setting is not None and setting.query_cameras:
        query &= np.isin(cols["camid"], setting.query_cameras)
    if setting is not None and setting.gallery_cameras:
        gallery &= np.isin(cols["camid"], setting.gallery_cameras)
    query, gallery = np.flatnonzero(query), np.flatnonzero(gallery)
    if not len(query) or not len(gallery):
        raise EvaluationError(f"trial {trial}: {len(query)} query and {len(gallery)} gallery rows; "
                              "both are needed")
    return query, gallery


def _draws(cols, gallery: np.ndarray, setting: Setting) -> list[np.ndarray]:
    """A single-shot setting's galleries: per draw, one image of each identity, picked by a
    generator seeded with (seed, draw) among the identity's gallery rows in table order (the
    manifest's path order: the same draws on every copy and machine), kept in table order."""
    pids = cols["pid"][gallery]
    order = np.argsort(pids, kind="stable")
    starts = np.flatnonzero(np.r_[True, pids[order][1:] != pids[order][:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    draws = []
    for d in range(setting.single_shot):
        rng = np.random.default_rng([setting.seed, d])
        picked = order[starts + rng.integers(0, sizes)]
        draws.append(np.sort(gallery[picked]))
    return draws


def _evaluate(emb, cols, query, gallery, protocol: Protocol, spec: EvalSpec, seed: int, device,
              setting: Setting | None = None, sharded=None):
    from raybench.eval.rank import evaluate_features, evaluate_rows
    from raybench.eval.rerank import rerank_rows

    ids = (cols["pid"][query], cols["pid"][gallery], cols["camid"][query], cols["camid"][gallery])
    clothes = _clothes(cols, query, gallery, setting)
    if sharded is not None and sharded.holds(gallery) and not (spec.aqe or spec.rerank or protocol.cuhk03_metric) \
            and clothes is None and protocol.ap == "step":
        from raybench.eval.matches import SamePid

        # a block whose matches and junk are the same-pid rule (.rows(a, b)) scores in the shards
        return sharded.evaluate(_rows(emb, query), gallery, SamePid(*ids, protocol.camera_filter), spec)
    common = dict(max_rank=spec.max_rank, camera_filter=protocol.camera_filter,
                  cuhk03=protocol.cuhk03_metric, seed=seed, ap=protocol.ap, clothes=clothes)
    qf, gf = _rows(emb, query), _rows(emb, gallery)
    if spec.aqe:
        qf, gf = _expanded(qf, gf, spec, device)
    if not spec.rerank:
        return evaluate_features(qf, gf, *ids, distance=spec.distance,
                                 normalize=spec.normalize, device=device, **common)
    rows = rerank_rows(qf, gf, k1=spec.rerank_k1, k2=spec.rerank_k2,
                       lambda_value=spec.rerank_lambda, distance=spec.distance,
                       normalize=spec.normalize, device=device)
    return evaluate_rows(rows, *ids, shape=(len(query), len(gallery)), **common)


def _clothes(cols, query, gallery, setting: Setting | None):
    """The setting's clothes rule over these queries and gallery; None where it reads none."""
    if setting is None or setting.rule == "standard":
        return None
    from raybench.eval.matches import Clothes

    codes = cols.get("clothes_code")
    if codes is None:
        raise EvaluationError(f"rule {setting.rule!r} needs clothes labels: the table has no 'clothes' column")
    return Clothes(codes[query], codes[gallery], setting.rule)


def _rows(emb, rows: np.ndarray):
    """``emb[rows]``; a view where the rows are one ascending run (a gallery after its queries),
    not a copy: at half a million gallery rows, a copy is another gigabyte."""
    if isinstance(emb, np.ndarray) and len(rows) and rows[-1] - rows[0] + 1 == len(rows) \
            and (len(rows) < 2 or bool((np.diff(rows) == 1).all())):
        return emb[rows[0]:rows[-1] + 1]
    return emb[rows]


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


def _per_query(trial: int, res, paths: np.ndarray | None) -> dict[str, list]:
    idx = np.flatnonzero(res.valid)
    out = {"trial": [trial] * len(idx), "query": idx.tolist()}
    if paths is not None:
        out["path"] = [str(p) for p in paths[idx]]
    return {**out, **{key: values[idx].tolist() for key, values in res.per_query_values().items()}}


def _aggregate(trials: list[dict]) -> Scores:
    def mean(key):
        return float(np.mean([t[key] for t in trials]))

    def count(key):
        return int(round(mean(key)))

    n = min(len(t["cmc"]) for t in trials)
    blocks = [Scores(t["mAP"], t["mINP"], tuple(t["cmc"]), t["num_query"], t["num_valid_query"], t["num_gallery"])
              for t in trials]
    spread = None
    if len(trials) > 1:
        spread = {m.std_key: float(np.std([b.value(m.name) for b in blocks], ddof=1)) for m in METRICS if m.spread}
    return Scores(mAP=mean("mAP"), mINP=mean("mINP"), cmc=tuple(np.mean([t["cmc"][:n] for t in trials], axis=0).tolist()),
                  num_query=count("num_query"), num_valid_query=count("num_valid_query"),
                  num_gallery=count("num_gallery"), spread=spread, trials=tuple(trials))
