"""Clothes-changing datasets: bad copies and settings are one line before Ray starts; the
official Celeb-reID protocol, DeepChange's camera rule and synth-cc's outfits are what they say."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from raybench.datasets import ltcc, prcc
from raybench.datasets.common import touch
from raybench.errors import RaybenchError
from raybench.pipeline.preflight import preflight
from raybench.specs import EvalSpec, MatrixSpec, parse_dataset, parse_model


def _matrix(*datasets) -> MatrixSpec:
    model = parse_model({"name": "dummy", "loader": "dummy", "arch": "random-projection", "paradigm": "baseline",
                         "preprocess": {"size": [32, 16]}, "options": {"dim": 8}}, "test")
    return MatrixSpec("bad", (model,), tuple(datasets), EvalSpec())


def _dataset(name: str, adapter: str, root, **protocol):
    entry = {"name": name, "adapter": adapter, "root": str(root)}
    if protocol:
        entry["protocol"] = protocol
    return parse_dataset(entry, "test")


@pytest.mark.parametrize("case", ["ltcc-without-clothes", "prcc-without-c", "market-asked-cc"])
def test_bad_clothes_input_is_one_line_before_ray_starts(case, tmp_path):
    from raybench.catalog import load_dataset_catalog

    catalog = load_dataset_catalog()
    if case == "ltcc-without-clothes":
        ltcc.tiny_copy(tmp_path)
        touch(tmp_path / "LTCC_ReID" / "query", "003_c4_000100.png")  # no clothes field
        spec, why = catalog["ltcc"], "'003_c4_000100.png' in .* has no clothes field"
    elif case == "prcc-without-c":
        prcc.tiny_copy(tmp_path)
        for path in sorted((tmp_path / "prcc/rgb/test/C").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (tmp_path / "prcc/rgb/test/C").rmdir()
        spec, why = catalog["prcc"], r"test/C is missing: the clothes-changing queries \(camera C\)"
    else:
        from raybench.datasets import market1501

        market1501.tiny_copy(tmp_path)
        spec = _dataset("market1501", "market1501", None, settings=["standard", "cc"])
        why = "setting 'cc' \\(rule cc\\) needs clothes labels, and adapter 'market1501' gives none"
    spec = dataclasses.replace(spec, root=str(tmp_path))
    with pytest.raises(RaybenchError, match=why) as info:
        preflight(_matrix(spec))
    problem = str(info.value).splitlines()[1]
    assert problem.startswith(f"  - dataset {spec.name}: ") and "Traceback" not in str(info.value)


def test_a_setting_keeps_cameras_the_copy_has(tmp_path):
    ltcc.tiny_copy(tmp_path)
    spec = _dataset("ltcc", "ltcc", tmp_path, settings=[{"name": "far", "rule": "standard", "query_cameras": [40]}])
    with pytest.raises(RaybenchError, match=r"setting 'far' keeps query images of cameras \[40\]"):
        preflight(_matrix(spec))


def test_celebreid_official_protocol_is_recorded_as_such():
    from raybench.catalog import load_dataset_catalog
    from raybench.eval.protocol import protocol_block

    catalog = load_dataset_catalog()
    official = protocol_block(catalog["celebreid-official"].protocol, EvalSpec())
    assert official["camera_filter"] is True and official["ap"] == "trapezoid"
    assert official["follows"].startswith("Huang-3/Celeb-reID evaluator: pseudo-camera")
    assert catalog["celebreid-official"].options == {"cameras": "official"}
    # raybench's own reading is unchanged, and its results do not grow new keys
    assert protocol_block(catalog["celebreid"].protocol, EvalSpec()).keys() == \
        {"camera_filter", "cuhk03_metric", "trials", "distance", "normalize", "rerank", "max_rank"}


def test_celebreid_official_drops_same_pseudo_camera_matches_as_open_reid_does(tmp_path):
    """One query (3_1_0: pseudo-camera 0); its person's gallery images 3_14_1 (camera 0: dropped)
    and 3_2_0 (camera 1: kept): open-reid's valid = (gid != qid) | (gcam != qcam)."""
    from raybench.datasets import celebreid
    from raybench.eval import evaluate

    celebreid.tiny_copy_official(tmp_path)
    table = celebreid.parse(tmp_path, cameras="official").to_pydict()
    q = [i for i, s in enumerate(table["split"]) if s == "query" and table["pid"][i] == 3]
    g = [i for i, s in enumerate(table["split"]) if s == "gallery"]
    names = [table["path"][i].rsplit("/", 1)[1] for i in g]
    d = np.array([[{"3_14_1.jpg": 0.1, "3_2_0.jpg": 0.3, "4_3_0.jpg": 0.2}[n] for n in names]])
    ids = [np.array([table[k][i] for i in idx]) for k, idx in (("pid", q), ("pid", g), ("camid", q), ("camid", g))]
    res = evaluate(d, *ids, ap="trapezoid")  # ranking after the drop: 4_3_0, then 3_2_0 at rank 2
    assert res.first_match[0] == 2 and res.mAP == pytest.approx(0.25)


def test_deepchange_true_matches_may_share_the_camera_not_the_tracklet(tmp_path):
    """Query P7 (camera C01, tracklet 70); gallery P7 C01 tracklet 70 (junk under either rule),
    P7 C01 tracklet 71 (a true match only under the tracklet rule), P7 C03 (a true match)."""
    from raybench.datasets import deepchange
    from raybench.eval.matches import SamePid

    deepchange.tiny_copy(tmp_path)
    counts = {}
    for camera in ("tracklet", "camera"):
        t = deepchange.parse(tmp_path, camera=camera).to_pydict()
        q = [i for i, s in enumerate(t["split"]) if s == "query"]
        g = [i for i, s in enumerate(t["split"]) if s == "gallery"]
        same = SamePid(*(np.array([t[k][i] for i in idx]) for k, idx in
                         (("pid", q), ("pid", g), ("camid", q), ("camid", g))))
        m = same.rows(0, len(q))
        counts[camera] = (m.npos.tolist(), m.njunk.tolist())
    assert counts == {"tracklet": ([2, 1], [1, 0]), "camera": ([1, 0], [2, 1])}


def test_synth_cc_people_keep_their_body_and_change_clothes(tmp_path):
    from raybench.datasets import synthetic

    tiny = synthetic.tiny_copy_outfits(tmp_path)
    table = synthetic.parse(tiny.root, **tiny.options).to_pydict()
    by_pid: dict[int, set] = {}
    for pid, split, key, camid in zip(table["pid"], table["split"], table["clothes"], table["camid"]):
        by_pid.setdefault(pid, set()).add(key)
        assert key.startswith(f"{pid:03d}_")  # unique per person and outfit, LTCC's key
    assert all(len(keys) >= 2 for keys in by_pid.values())  # everyone owns 2..3 outfits here
    queries = [(p, c, k) for p, s, c, k in zip(table["pid"], table["split"], table["camid"], table["clothes"])
               if s == "query"]
    assert len(queries) == len(set(queries))  # one query per person, camera and outfit
    captions = json.loads((tiny.root / synthetic.CAPTIONS_FILE).read_text())
    worn = {}
    for record in captions:
        key = record["file_path"].split("/")[1].rsplit("_c", 1)[0]
        worn.setdefault(key.split("_")[0], {})[key] = record["captions"][0].split(", with")[0].split(" and ")[0]
    assert any(len(set(tops.values())) > 1 for tops in worn.values())  # a caption says what this image wears


def test_outfits_keep_everything_but_the_clothes():
    from raybench.datasets import synthdraw

    domain = synthdraw.DOMAINS["a"]
    person, dressed = synthdraw.identity_params(3, domain, 7), synthdraw.dressed(3, domain, 7, 2)
    assert dressed.keys() == person.keys()
    for key in ("height", "head", "shoulder", "torso", "leg", "long_hair"):
        assert np.array_equal(dressed[key], person[key]), key
    assert np.array_equal(dressed["skin"], person["skin"]) and np.array_equal(dressed["hair"], person["hair"])
    assert not np.array_equal(dressed["upper"], person["upper"])


def test_settings_are_in_the_eval_hash_and_a_dataset_without_them_keeps_its_hash():
    from raybench.pipeline.plan import eval_hash

    plain = parse_dataset({"name": "x", "adapter": "ltcc"}, "test")
    assert eval_hash(plain, EvalSpec()) == "d865186f40a690d9"  # market1501's pinned hash: the same protocol
    cc = parse_dataset({"name": "x", "adapter": "ltcc", "protocol": {"settings": ["standard", "cc"]}}, "test")
    headline = parse_dataset({"name": "x", "adapter": "ltcc",
                              "protocol": {"settings": ["standard", "cc"], "headline": "cc"}}, "test")
    assert len({eval_hash(plain, EvalSpec()), eval_hash(cc, EvalSpec()), eval_hash(headline, EvalSpec())}) == 3
