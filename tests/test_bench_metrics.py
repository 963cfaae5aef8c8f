"""The metrics benchmark's pieces: synthetic features, both sides' workers, the comparison, the
re-ranking benchmark, the record's provenance, the CLI."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from raybench.bench import metrics as bench
from raybench.bench.features import SCALES, _layout, synthetic_features


def test_synthetic_features_are_seeded_and_shaped_like_the_test_set():
    a, b = synthetic_features("tiny", seed=3), synthetic_features("tiny", seed=3)
    np.testing.assert_array_equal(a.gf, b.gf)
    shape = SCALES["tiny"]
    assert a.qf.shape == (shape.num_query, shape.dim) and a.gf.shape == (shape.num_gallery, shape.dim)
    assert a.qf.dtype == a.gf.dtype == np.float32
    assert (a.g_pids == 0).sum() == shape.num_distractors and (a.q_pids > 0).all()
    pairs = set(zip(a.q_pids.tolist(), a.q_camids.tolist()))
    assert len(pairs) == shape.num_query  # one query per (identity, camera)
    cams_per_id = {p: len({c for q, c in pairs if q == p}) for p in set(a.q_pids.tolist())}
    assert min(cams_per_id.values()) >= 2  # every query has matches under another camera


def test_real_scales_have_the_published_sizes():
    for name in ("market", "msmt17"):
        s = SCALES[name]
        q_pids, q_cams, g_pids, g_cams = _layout(s, np.random.default_rng(0))
        assert len(q_pids) == s.num_query and len(g_pids) + s.num_distractors == s.num_gallery
        assert len(np.unique(q_pids)) == s.num_ids and q_cams.max() < s.num_cameras


def test_both_sides_agree_on_tiny_features():
    ours = bench._worker({"side": "raybench", "scale": "tiny", "seed": 0, "repeat": 1, "rank_only": True})
    ref = bench._worker({"side": "torchreid", "scale": "tiny", "seed": 0, "repeat": 1, "rank_only": False})
    comp = bench.compare(ours, ref)
    assert max(comp["max_abs_diff"].values()) < 1e-6
    assert comp["speedup"] == pytest.approx(ref["seconds"] / ours["seconds"])  # the two measured times
    assert ours["peak_rss_bytes"] >= 0.99 * ours["rss_before_bytes"]  # two readings of the same process
    assert ours["rank_only_max_abs_diff_to_features"] < 1e-9


def test_cli_group_and_metrics_help():
    from raybench.commands.bench import bench as group

    import click

    listing = CliRunner().invoke(group, ["--help"]).output
    assert "embed" in listing and "metrics" in listing
    assert isinstance(group.get_command(click.Context(group), "embed"), click.Command)  # its lazy target imports
    result = CliRunner().invoke(group, ["metrics", "--help"])
    assert result.exit_code == 0 and "--scale" in result.output and "--against" in result.output
    assert "--rerank" in result.output


def test_cli_scales_are_the_feature_scales():
    from raybench.commands.bench import SCALES as cli_scales

    assert set(cli_scales) == set(SCALES)


def test_rerank_worker_scores_what_dense_reranking_scores():
    """What the re-ranking benchmark times is torchreid's re-ranking, scored: the same numbers
    as the dense re_ranking (equal to torchreid's, test_rerank.py) on the same features."""
    import torch
    import torch.nn.functional as F

    from raybench.eval import evaluate
    from raybench.eval.distance import DistanceRows
    from raybench.eval.rerank import re_ranking

    ours = bench._worker({"side": "rerank", "scale": "tiny", "seed": 0, "repeat": 1, "chunk_size": 50})
    d = synthetic_features("tiny", seed=0)
    q, g = (F.normalize(torch.from_numpy(x), dim=1) for x in (d.qf, d.gf))
    mats = [DistanceRows(b, "euclidean")(a).numpy() for a, b in ((q, g), (q, q), (g, g))]
    ref = evaluate(re_ranking(*mats), d.q_pids, d.g_pids, d.q_camids, d.g_camids)
    m = ours["metrics"]
    assert abs(m["mAP"] - ref.mAP) < 1e-6 and abs(m["mINP"] - ref.mINP) < 1e-6
    np.testing.assert_allclose(m["cmc"], ref.cmc, atol=1e-6)
    phases = ours["seconds_phases"]
    assert set(phases) == {"neighbours", "graph", "build", "rows_and_scoring"}
    assert phases["neighbours"] + phases["graph"] <= phases["build"] <= ours["seconds"]
    assert ours["peak_rss_bytes"] >= 0.99 * ours["rss_before_bytes"]  # two readings of the same process


def test_cli_rerank_at_tiny_scale_writes_the_record(tmp_path):
    from raybench.commands.bench import bench as group

    out = tmp_path / "rerank.json"
    result = CliRunner().invoke(group, ["metrics", "--scale", "tiny", "--rerank", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "raybench+rerank" in result.output
    record = json.loads(out.read_text())
    assert record["against"] == "none" and "torchreid" not in record and "comparison" not in record
    assert record["rerank"] == {"k1": 20, "k2": 6, "lambda_value": 0.3, "knn": "exact",
                                "distance": "euclidean", "normalize": True}
    assert record["command"].endswith("--rerank --seed 0 --repeat 1")
    side = record["raybench"]
    assert len(side["seconds_all"]) == 1 and side["seconds"] == min(side["seconds_all"])
    assert side["peak_rss_bytes"] >= 0.99 * side["rss_before_bytes"]
    assert side["run_peak_rss_delta_bytes"] is None or side["run_peak_rss_delta_bytes"] < side["peak_rss_bytes"]
    assert 0.5 < side["metrics"]["mAP"] <= 1 and side["metrics"]["num_valid_query"] == SCALES["tiny"].num_query
    assert {"commit", "dirty", "dirty_paths", "ignored_paths"} <= set(record["git"])


def test_cli_against_torchreid_prints_both_sides_and_the_comparison(tmp_path):
    """The table names both sides with their times and peak memory, then the speedup and the
    largest metric differences; the record on disk holds the same comparison."""
    from raybench.commands.bench import bench as group

    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(group, ["metrics", "--scale", "tiny", "--against", "torchreid", "--repeat", "1",
                                        "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["against"] == "torchreid" and record["command"].endswith("--against torchreid --seed 0 --repeat 1")
    comp = record["comparison"]
    assert max(comp["max_abs_diff"].values()) < 1e-6 and comp["cmc_length"] == [50, 50]
    from raybench.console import format_cell

    lines = result.stdout.splitlines()
    for side in ("raybench", "torchreid"):
        (line,) = [x.split() for x in lines if x.startswith(side + " ")]
        r = record[side]
        assert format_cell(round(r["seconds"], 3)) == line[1]
        assert format_cell(round(r["peak_rss_bytes"] / 1e9, 3)) == line[3]
    assert f"speedup {comp['speedup']:.1f}x" in result.output and "max |diff| mAP" in result.output


def test_cli_json_prints_the_record(tmp_path, monkeypatch):
    from raybench.commands.bench import bench as group

    canned = {"num_query": 1, "num_gallery": 2, "dim": 3, "raybench": {"seconds": 1.0}}
    monkeypatch.setattr(bench, "run", lambda *a, **k: dict(canned))
    result = CliRunner().invoke(group, ["metrics", "--scale", "tiny", "--json", "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads((tmp_path / "m.json").read_text())
    assert printed["raybench"] == canned["raybench"] and printed["command"].startswith("raybench bench metrics")


def test_rerank_against_torchreid_is_refused():
    from raybench.commands.bench import bench as group
    from raybench.errors import SpecError

    result = CliRunner().invoke(group, ["metrics", "--scale", "tiny", "--rerank", "--against", "torchreid"])
    assert result.exit_code == 2 and "--against none" in result.output
    with pytest.raises(SpecError, match="against none"):
        bench.run("tiny", against="torchreid", rerank=True)


def test_provenance_ignores_benchmark_outputs_and_untracked_notes(tmp_path, monkeypatch):
    """Writing one record (results/) must not mark the next one dirty; a changed or new module
    must."""
    import raybench.paths
    from raybench.bench import provenance

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path), *args],
                       check=True, capture_output=True)

    for path in ("results/bench/metrics-market.json", "raybench/eval/rank.py", "README.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("v1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    monkeypatch.setattr(raybench.paths, "PROJECT_ROOT", tmp_path)
    (tmp_path / "results/bench/metrics-market.json").write_text("v2\n")
    (tmp_path / "notes.txt").write_text("scratch\n")
    state = provenance()
    assert state["dirty"] is False and state["dirty_paths"] == [] and len(state["commit"]) == 40
    (tmp_path / "raybench/eval/rank.py").write_text("v2\n")
    (tmp_path / "raybench/eval/new.py").write_text("v1\n")
    (tmp_path / "README.md").unlink()
    state = provenance()
    assert state["dirty"] is True
    assert state["dirty_paths"] == ["README.md", "raybench/eval/new.py", "raybench/eval/rank.py"]


def test_market500k_is_market_and_a_set_of_500k_distractors():
    from raybench.bench.features import EXTRA_DISTRACTORS

    market, big = SCALES["market"], SCALES["market500k"]
    assert (big.num_query, big.num_ids, big.num_cameras, big.dim) == (3368, 750, 6, 512)
    assert big.num_gallery - EXTRA_DISTRACTORS["market500k"] == market.num_gallery == 15913
    assert big.num_distractors - EXTRA_DISTRACTORS["market500k"] == market.num_distractors == 2793


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is present: nothing falls back")
def test_cuda_without_a_gpu_falls_back_to_the_cpu_and_says_so(tmp_path):
    from raybench.commands.bench import bench as group

    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(group, ["metrics", "--scale", "tiny", "--against", "none", "--repeat", "1",
                                        "--device", "cuda", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert (record["device"], record["raybench"]["device"]) == ("cpu", "cpu")
    assert record["device_fallback"].startswith("no CUDA device") and record["command"].endswith("--device cuda")
    assert record["raybench"]["metrics"]["num_valid_query"] == SCALES["tiny"].num_query
