"""raybench.eval.clothes against a per-query reference of Simple-CCReID's rules, with and without ties."""

from __future__ import annotations

import numpy as np
import pytest
from eval_references import reference_clothes

from raybench.errors import EvaluationError
from raybench.eval import evaluate
from raybench.eval.clothes import CLOTHES_MODES, evaluate_clothes


def clothes_case(rng, ties: bool):
    """A random case where people wear a few outfits each, under a few cameras; ``ties``:
    distances from a handful of values, so most rows hold exact ties."""
    Q, G = int(rng.integers(1, 50)), int(rng.integers(1, 160))
    n_ids, n_cams, n_outfits = int(rng.integers(1, 12)), int(rng.integers(1, 5)), int(rng.integers(1, 4))
    q_pids, g_pids = rng.integers(1, n_ids + 1, Q), rng.integers(0, n_ids + 1, G)
    q_outfit, g_outfit = rng.integers(0, n_outfits, Q), rng.integers(0, n_outfits, G)
    distmat = rng.integers(0, 4, (Q, G)).astype(np.float64) if ties else rng.random((Q, G))
    # clothes keys are unique per person and outfit, as the datasets write them ("001_2")
    q_clothes = np.array([f"{p:03d}_{o}" for p, o in zip(q_pids, q_outfit)])
    g_clothes = np.array([f"{p:03d}_{o}" for p, o in zip(g_pids, g_outfit)])
    return distmat, q_pids, g_pids, rng.integers(0, n_cams, Q), rng.integers(0, n_cams, G), q_clothes, g_clothes


@pytest.mark.parametrize("ties", [False, True])
def test_equal_to_the_per_query_reference_of_the_rules(ties):
    rng = np.random.default_rng(21 + ties)
    compared = {mode: 0 for mode in CLOTHES_MODES}
    for _ in range(150):
        case = clothes_case(rng, ties)
        mode = CLOTHES_MODES[int(rng.integers(0, 3))]
        max_rank = int(rng.choice([1, 5, 50]))
        ref_map, ref_minp, ref_cmc, ref_valid = reference_clothes(*case, mode=mode, max_rank=max_rank)
        if ref_map is None:
            with pytest.raises(EvaluationError):
                evaluate_clothes(*case, mode=mode, max_rank=max_rank)
            continue
        ours = evaluate_clothes(*case, mode=mode, max_rank=max_rank)
        assert ours.num_valid_query == ref_valid
        assert ours.mAP == pytest.approx(ref_map, abs=1e-12)
        assert ours.mINP == pytest.approx(ref_minp, abs=1e-12)
        np.testing.assert_allclose(ours.cmc, ref_cmc, atol=1e-12)
        compared[mode] += 1
    assert min(compared.values()) >= 20, compared


def test_hand_worked_case_splits_one_person_by_the_rules():
    """One query (pid 1, camera 0, outfit a); the gallery in distance order:
    0: pid 1 cam 1 outfit a, 1: pid 2, 2: pid 1 cam 0 outfit b, 3: pid 1 cam 2 outfit b."""
    d = np.array([[0.1, 0.2, 0.3, 0.4]])
    ids = (np.array([1]), np.array([1, 2, 1, 1]), np.array([0]), np.array([1, 5, 0, 2]))
    clothes = (np.array(["1a"]), np.array(["1a", "2a", "1b", "1b"]))
    standard = evaluate_clothes(d, *ids, *clothes, mode="standard")  # item 2 junk (same camera)
    assert standard.mAP == pytest.approx((1 / 1 + 2 / 3) / 2) and standard.cmc[0] == 1.0
    cc = evaluate_clothes(d, *ids, *clothes, mode="cc")  # items 0 and 2 junk: item 3 at rank 2
    assert cc.mAP == pytest.approx(1 / 2) and list(cc.cmc[:2]) == [0.0, 1.0] and cc.mINP == pytest.approx(1 / 2)
    sc = evaluate_clothes(d, *ids, *clothes, mode="sc")  # items 2 and 3 junk: item 0 at rank 1
    assert sc.mAP == 1.0 and sc.num_valid_query == 1


def test_standard_ignores_clothes_and_equals_the_rank_engine():
    rng = np.random.default_rng(3)
    case = clothes_case(rng, ties=False)
    while reference_clothes(*case)[0] is None:
        case = clothes_case(rng, ties=False)
    plain = evaluate(*case[:5])
    for res in (evaluate_clothes(*case[:5]), evaluate_clothes(*case, mode="standard")):
        assert (res.mAP, res.mINP, res.num_valid_query) == (plain.mAP, plain.mINP, plain.num_valid_query)
        np.testing.assert_array_equal(res.cmc, plain.cmc)


def test_integer_and_string_labels_score_alike():
    rng = np.random.default_rng(5)
    case = clothes_case(rng, ties=False)
    while reference_clothes(*case, mode="cc")[0] is None:
        case = clothes_case(rng, ties=False)
    labels = {v: i for i, v in enumerate(sorted(set(case[5]) | set(case[6])))}
    as_ints = (np.array([labels[v] for v in case[5]]), np.array([labels[v] for v in case[6]]))
    a, b = evaluate_clothes(*case, mode="cc"), evaluate_clothes(*case[:5], *as_ints, mode="cc")
    assert (a.mAP, a.num_valid_query) == (b.mAP, b.num_valid_query)


def test_no_valid_query_names_the_clothes_rule():
    d = np.array([[0.1, 0.2]])
    with pytest.raises(EvaluationError, match="'cc' clothes rule"):  # the only cross-camera match shares the outfit
        evaluate_clothes(d, [1], [1, 2], [0], [1, 1], ["1a"], ["1a", "2a"], mode="cc")
    with pytest.raises(EvaluationError, match="needs the clothes labels"):
        evaluate_clothes(d, [1], [1, 2], [0], [1, 1], mode="sc")
    with pytest.raises(EvaluationError, match="clothes mode 'xx'"):
        evaluate_clothes(d, [1], [1, 2], [0], [1, 1], ["1a"], ["1a", "2a"], mode="xx")


def test_trapezoid_ap_equals_the_area_under_the_precision_recall_curve():
    """Celeb-reID's evaluator: auc(recall, precision); one hit at rank 2 is 0.25, not 0.5."""
    d = np.array([[0.1, 0.2]])
    one = evaluate(d, [1], [2, 1], [0], [1, 1], ap="trapezoid")
    assert one.mAP == pytest.approx(0.25)
    rng = np.random.default_rng(9)
    for _ in range(40):
        case = clothes_case(rng, ties=False)
        ref = reference_clothes(*case, ap="trapezoid")
        if ref[0] is None:
            continue
        assert evaluate(*case[:5], ap="trapezoid").mAP == pytest.approx(ref[0], abs=1e-12)


# -- settings: a cell's table scored once per setting (raybench.eval.protocol) -----------------


def clothes_table(seed: int = 0):
    """A stored cell's table as the store writes it (manifest with clothes + embeddings): 8
    people in 2 outfits each under 3 cameras; an outfit shifts the embedding far more than the
    camera, as a colour histogram would see it."""
    from raybench.datasets.manifest import make_manifest
    from raybench.rundir.store import embedding_table

    rng = np.random.default_rng(seed)
    person, outfit = rng.standard_normal((9, 6)), rng.standard_normal((9, 2, 6)) * 2
    rows, emb = [], []
    for pid in range(1, 9):
        for k in range(10):
            split = "query" if k < 2 else "gallery"
            o, cam = (k % 2, k % 3) if split == "gallery" else (k, k)
            rows.append({"path": f"/d/{split}/{pid:03d}_{o}_c{cam}_{k}.png", "pid": pid, "camid": cam, "split": split,
                         "clothes": f"{pid:03d}_{o}"})
            emb.append(person[pid] + outfit[pid, o] + 0.3 * rng.standard_normal(6))
    return embedding_table(make_manifest(rows), np.array(emb, np.float32))


def test_settings_are_blocks_of_the_rules_and_the_headline_is_main():
    from raybench.eval import protocol
    from raybench.rundir.store import embedding_columns
    from raybench.specs import EvalSpec, parse_dataset

    tab = clothes_table()
    spec = parse_dataset({"name": "t", "adapter": "ltcc", "protocol": {
        "settings": ["standard", "cc", "sc", {"name": "cam0", "rule": "standard", "query_cameras": [1],
                                              "gallery_cameras": [0]}], "headline": "cc"}}, "test")
    scored = protocol.score(embedding_columns(tab), spec.protocol, EvalSpec(distance="euclidean", max_rank=10))
    assert list(scored.settings) == ["standard", "cc", "sc", "cam0"] and scored.main is scored.settings["cc"]
    cols = embedding_columns(tab)
    q, g = cols["split"] == "query", cols["split"] == "gallery"
    feats = cols["embedding"] / np.linalg.norm(cols["embedding"], axis=1, keepdims=True)
    for name, mode, qm, gm in (("standard", "standard", q, g), ("cc", "cc", q, g), ("sc", "sc", q, g),
                               ("cam0", "standard", q & (cols["camid"] == 1), g & (cols["camid"] == 0))):
        d = ((feats[qm][:, None] - feats[gm][None]) ** 2).sum(-1)
        ref = reference_clothes(d, cols["pid"][qm], cols["pid"][gm], cols["camid"][qm], cols["camid"][gm],
                                cols["clothes"][qm], cols["clothes"][gm], mode=mode, max_rank=10)
        block = scored.settings[name]
        assert (block.mAP, block.num_valid_query) == (pytest.approx(ref[0], abs=1e-6), ref[3]), name
        np.testing.assert_allclose(block.cmc, ref[2], atol=1e-9)
        assert block.scoring["rule"] == mode
    # the outfit dominates the features: clothes-changing is much harder than same-clothes
    assert scored.settings["cc"].mAP < scored.settings["sc"].mAP - 0.3
    assert scored.main.per_query["path"]  # the main block keeps its queries' paths (rank lists, bootstrap)


def test_single_shot_setting_scores_seeded_draws_as_trials():
    from raybench.eval import protocol
    from raybench.rundir.store import embedding_columns
    from raybench.specs import EvalSpec, parse_dataset

    spec = parse_dataset({"name": "t", "adapter": "prcc", "protocol": {"settings": [
        "standard", {"name": "one", "rule": "standard", "single_shot": 10, "seed": 3}]}}, "test")
    cols = embedding_columns(clothes_table())
    a = protocol.score(cols, spec.protocol, EvalSpec(max_rank=10)).settings["one"]
    b = protocol.score(cols, spec.protocol, EvalSpec(max_rank=10)).settings["one"]
    assert len(a.trials) == 10 and a.trials == b.trials  # seeded: the same draws every time
    assert {t["num_gallery"] for t in a.trials} == {8}  # one gallery image per identity
    assert len({t["mAP"] for t in a.trials}) > 1  # the draws differ
    assert a.mAP == pytest.approx(np.mean([t["mAP"] for t in a.trials]))
    assert a.std("mAP") == pytest.approx(np.std([t["mAP"] for t in a.trials], ddof=1))
    assert a.scoring == {"rule": "standard", "single_shot": 10, "seed": 3}
