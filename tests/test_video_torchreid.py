"""raybench's video adapters read a copy as torchreid's video dataset classes do, and the real
OSNet on a MARS copy built from real crops scores exactly as torchreid's own video path.

Parsers: each adapter's tiny copy (iLIDS-VID's at the real scale, which torchreid asserts) is
read by torchreid's class too and the tracklets compared: (frames, pid, camera) of query and
gallery; torchreid numbers the persons of iLIDS-VID and PRID2011 per split and relabels train
identities, so those are compared as partitions. Frames are compared as sets where torchreid
lists them in the file system's order (an unsorted glob); raybench's are in name order.

The end-to-end check (fixtures: real Market-1501 crops, a real OSNet x0.25 checkpoint): the
frames of a pid in one camera form one tracklet of a MARS tree in MARS's naming, with the
info/ files written here. raybench's Ray pipeline embeds the frames and pools each tracklet;
torchreid's reference is its Mars class (sample_method 'all', and 'evenly' for the variant),
its OSNet and test transform, the mean (or max) of the frame features per tracklet as its
video engine pools them, compute_distance_matrix and evaluate_rank. Then a new pooling
re-scores the stored frames without embedding them again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import MARKET_MINI, OSNET_DIR, needs_fixtures
from test_datasets_torchreid import partition  # identities without their numbers, of (frames, pid, camid) here

from raybench.datasets import dukevideo, get_adapter, ilidsvid, mars, prid2011

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
CHECKPOINT = OSNET_DIR / "osnet_x0_25_market1501.pth"
MAX_RANK = 10


@pytest.fixture(scope="module")
def video():
    pytest.importorskip("torchreid")
    from torchreid.reid.data.datasets import video

    return video


def ours(table, split, trial=None):
    """{(frames, pid, camid)} of a split's tracklets (frames as a sorted tuple)."""
    by = defaultdict(list)
    for r in table.to_pylist():
        if r["split"] == split and r.get("trial") == trial:
            by[(r["tracklet"], r["pid"], r["camid"])].append((r["frame"], r["path"]))
    return {(tuple(sorted(p for _, p in frames)), pid, camid) for (_, pid, camid), frames in by.items()}


def theirs(data):
    return {(tuple(sorted(frames)), int(pid), int(camid)) for frames, pid, camid, *_ in data}


def test_mars_tiny_copy_matches_torchreid(video, tmp_path):
    for options, gallery_extra in (({}, 0), ({"gallery": "official"}, 3)):
        root = mars.tiny_copy(tmp_path / str(bool(options))).root
        table = get_adapter("mars").parse(root, **options)
        reference = video.Mars(root=str(root), transform=lambda x: x, verbose=False)
        assert ours(table, "query") == theirs(reference.query)
        assert len(ours(table, "gallery")) == len(reference.gallery) + gallery_extra
        assert theirs(reference.gallery) | (ours(table, "query") if options else set()) == ours(table, "gallery")
        assert partition(ours(table, "train")) == partition(theirs(reference.train))


def test_ilidsvid_splits_match_torchreid(video, tmp_path):
    # torchreid asserts the real scale: 10 splits of the 300 persons
    rng = np.random.default_rng(0)
    persons = [f"person{n:03d}" for n in sorted(rng.choice(np.arange(1, 320), 300, replace=False))]
    lengths = {p: (1 + i % 2, 1 + i % 3) for i, p in enumerate(persons)}
    splits = [(rng.permutation(300) + 1).tolist() for _ in range(10)]
    ilidsvid.write_tree(tmp_path, lengths, splits)
    table = get_adapter("ilidsvid").parse(tmp_path)
    for trial in (0, 7):
        reference = video.iLIDSVID(root=str(tmp_path), split_id=trial, transform=lambda x: x, verbose=False)
        for split in ("query", "gallery", "train"):
            assert partition(ours(table, split, trial)) == partition(theirs(getattr(reference, split))), split


def test_prid2011_splits_match_torchreid(video, tmp_path):
    root = prid2011.tiny_copy(tmp_path).root
    table = get_adapter("prid2011").parse(root, trials=2)
    for trial in (0, 1):
        reference = video.PRID2011(root=str(root), split_id=trial, transform=lambda x: x, verbose=False)
        for split in ("query", "gallery", "train"):
            assert partition(ours(table, split, trial)) == partition(theirs(getattr(reference, split))), split


def test_duke_video_matches_torchreid_but_keeps_the_last_frame(video, tmp_path):
    dukevideo.tiny_copy(tmp_path / "dukemtmc-vidreid")
    table = get_adapter("dukemtmc-videoreid").parse(tmp_path)
    reference = video.DukeMTMCVidReID(root=str(tmp_path), transform=lambda x: x, verbose=False)
    assert ours(table, "query") == theirs(reference.query)
    assert partition(ours(table, "train")) == partition(theirs(reference.train))
    mine, other = ours(table, "gallery"), theirs(reference.gallery)
    # the tracklet numbered from F0002: torchreid looks up F0001..F0003 and loses F0004
    [(kept, pid, cam)] = mine - other
    [(lost, _, _)] = other - mine
    assert (pid, cam) == (5, 0) and lost == kept[:-1] and kept[-1].endswith("F0004X45024.jpg")


# -- the real OSNet on a MARS tree of real crops --------------------------------------------------


def fake_mars(root: Path) -> Path:
    """root/mars from market1501-mini: each (pid, camera) of the test crops is a test tracklet
    (frames in name order), and each pid's query the first tracklet in the camera of its first
    query crop; the train crops' (pid, camera) groups are the train tracklets, but one, lent to
    the test side as a distractor (pid 0). MARS's corner case, with real crops: pid 13's
    camera-5 crops are split into two tracklets (its query, then a gallery tracklet in the
    query's own camera) and its camera-6 tracklet is junk (pid -1), so its query has no
    cross-camera match. Frames are symlinks to the real crops."""
    import re

    base = root / "mars"

    def groups(folders) -> list[tuple[int, int, list[Path]]]:
        out = defaultdict(list)
        for folder in folders:
            for crop in sorted((MARKET_MINI / folder).glob("*.jpg")):
                pid, cam = map(int, re.match(r"(\d+)_c(\d)", crop.name).groups())
                out[(pid, cam)].append(crop)
        return [(pid, cam, crops) for (pid, cam), crops in sorted(out.items())]

    def write(tracklets, side) -> list[list[str]]:
        names, numbers = [], defaultdict(int)
        for pid, cam, crops in tracklets:
            numbers[pid] += 1
            names.append([mars.frame_name(pid, cam, numbers[pid], f + 1) for f in range(len(crops))])
            for name, crop in zip(names[-1], crops):
                (base / side / name[:4]).mkdir(parents=True, exist_ok=True)
                (base / side / name[:4] / name).symlink_to(crop)
        return names

    train = groups(["bounding_box_train"])
    test = []
    for pid, cam, crops in groups(["query", "bounding_box_test"]):
        if pid == 13:
            test += [(13, 5, crops[:1]), (13, 5, crops[1:])] if cam == 5 else [(-1, cam, crops)]
        else:
            test.append((pid, cam, crops))
    test.append((0, *train.pop(0)[1:]))
    first_query = {}
    for crop in sorted((MARKET_MINI / "query").glob("*.jpg")):
        first_query.setdefault(int(crop.name[:4]), int(crop.name[6]))
    query, chosen = [], set()
    for i, (pid, cam, _) in enumerate(test):
        if pid > 0 and first_query.get(pid) == cam and pid not in chosen:
            query.append(i)
            chosen.add(pid)
    mars.write_info(base, write(train, "bbox_train"), write(test, "bbox_test"), query)
    return root


def torchreid_scores(root: Path, sample_method: str, seq_len: int) -> dict:
    """torchreid's video test path on the fake MARS: Mars, OSNet x0.25 + the checkpoint, the test
    transform, per tracklet the frame features pooled as VideoSoftmaxEngine pools them ("avg",
    "max"), then euclidean distances and evaluate_rank: pooling -> (mAP, cmc, queries, gallery,
    valid queries). One torch thread: on a loaded two-core machine two spin-waiting threads run
    this model tens of times slower."""
    import torch
    import torchreid
    from torchreid.reid.data.datasets.video import Mars
    from torchreid.reid.data.transforms import build_transforms
    from torchreid.reid.metrics import compute_distance_matrix, evaluate_rank

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = torchreid.models.build_model("osnet_x0_25", num_classes=751, pretrained=False)
        model.load_state_dict(torch.load(CHECKPOINT, map_location="cpu"))
        model.eval()
        _, test_transform = build_transforms(256, 128)
        side = {}
        for mode in ("query", "gallery"):
            data = Mars(root=str(root), mode=mode, transform=test_transform, seq_len=seq_len,
                        sample_method=sample_method, verbose=False)
            with torch.no_grad():
                items = [data[k] for k in range(len(data))]
                frames = [model(item["img"]) for item in items]
            side[mode] = ({"avg": torch.stack([f.mean(0) for f in frames]),
                           "max": torch.stack([f.max(0)[0] for f in frames])},
                          np.array([i["pid"] for i in items]), np.array([i["camid"] for i in items]))
    finally:
        torch.set_num_threads(threads)
    (qf, q_pids, q_cams), (gf, g_pids, g_cams) = side["query"], side["gallery"]
    valid = sum(1 for i in range(len(q_pids)) if ((g_pids == q_pids[i]) & (g_cams != q_cams[i])).any())
    out = {}
    for pooling in ("avg", "max"):
        distmat = compute_distance_matrix(qf[pooling], gf[pooling], metric="euclidean").numpy()
        cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=MAX_RANK)
        out[pooling] = (float(mAP), np.asarray(cmc), len(q_pids), len(g_pids), valid)
    return out


@needs_fixtures
@pytest.mark.skipif(not CHECKPOINT.exists(), reason=f"OSNet checkpoint not found at {CHECKPOINT}")
def test_osnet_on_a_mars_tree_of_real_crops_equals_torchreids_video_path(ray_local, tmp_path):
    pytest.importorskip("torchreid")
    import yaml

    from raybench.catalog import load_matrix
    from raybench.pipeline.driver import RunOptions, run_matrix
    from raybench.rundir.store import RunStore

    root = fake_mars(tmp_path / "data")

    def matrix(variants):
        path = tmp_path / "video.yaml"
        path.write_text(yaml.safe_dump({
            "name": "video-fixture",
            "models": [{"name": "osnet", "loader": "torchreid", "arch": "osnet_x0_25", "paradigm": "supervised",
                        "weights": str(CHECKPOINT), "batch_size": 16}],
            "datasets": [{"name": "mars", "root": str(root)}],
            "eval": {"distance": "euclidean", "normalize": False, "max_rank": MAX_RANK},
            "eval_variants": variants,
        }))
        return load_matrix(str(path))

    out = str(tmp_path / "run")
    options = RunOptions(threads=1)  # see torchreid_scores
    summary = run_matrix(matrix([{"name": "max", "pool": "max"}]), out, options, echo=lambda _: None)
    assert summary.ok, summary.failed
    result = json.loads((tmp_path / "run/results/mars/osnet.json").read_text())
    reference = torchreid_scores(root, "all", 15)
    ref_map, ref_cmc, queries, gallery, valid = reference["avg"]
    assert (result["num_query"], result["num_gallery"], result["num_valid_query"]) == (queries, gallery, valid)
    assert valid < queries  # a query whose identity the gallery holds in its own camera only is skipped
    assert result["mAP"] == pytest.approx(ref_map, abs=1e-6)
    assert np.allclose(result["cmc"], ref_cmc, atol=1e-6) and len(result["cmc"]) == len(ref_cmc)
    assert result["protocol"]["pool"] == "mean" and result["protocol"]["frames"] == "all"
    frames = [p for p in (root / "mars" / "bbox_test").rglob("*.jpg") if p.parent.name != "00-1"]
    assert result["video"]["frames"] == result["video"]["frames_in_copy"] == len(frames)
    max_map, max_cmc, *_ = reference["max"]
    assert result["variants"]["max"]["mAP"] == pytest.approx(max_map, abs=1e-6)
    assert np.allclose(result["variants"]["max"]["cmc"], max_cmc, atol=1e-6)

    # a new pooling is an eval variant: scored from the stored frames, nothing embedded again
    store = RunStore.open(out)
    before = store.cell_marker("mars", "osnet")
    summary = run_matrix(matrix([{"name": "max", "pool": "max"}, {"name": "evenly2", "frames": "evenly:2"}]), out,
                         options, echo=lambda _: None)
    assert summary.ok and store.cell_marker("mars", "osnet") == before
    again = json.loads((tmp_path / "run/results/mars/osnet.json").read_text())
    assert again["mAP"] == result["mAP"] and again["variants"]["max"] == result["variants"]["max"]
    evenly_map, evenly_cmc, *_ = torchreid_scores(root, "evenly", 2)["avg"]
    assert again["variants"]["evenly2"]["mAP"] == pytest.approx(evenly_map, abs=1e-6)
    assert np.allclose(again["variants"]["evenly2"]["cmc"], evenly_cmc, atol=1e-6)
