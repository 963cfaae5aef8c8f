"""The metrics benchmark's pieces: synthetic features, both sides' workers, the comparison, the CLI."""

from __future__ import annotations

import numpy as np
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
    assert comp["speedup"] > 0 and ours["peak_rss_bytes"] > ours["rss_before_bytes"] * 0.5
    assert ours["rank_only_max_abs_diff_to_features"] < 1e-9


def test_cli_group_and_metrics_help():
    from raybench.commands.bench import bench as group

    assert group.lazy == {"embed": "raybench.bench.embed:embed_command"}
    result = CliRunner().invoke(group, ["metrics", "--help"])
    assert result.exit_code == 0 and "--scale" in result.output and "--against" in result.output
