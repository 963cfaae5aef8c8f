"""Real data, real weights: the whole Ray pipeline equals torchreid's own evaluation path.

Two real OSNet x0.25 checkpoints (Market-1501-trained and MSMT17-trained), and their weight
interpolation (loader interpolate), on the real market1501-mini crops, euclidean distance on
raw features. The reference is computed here with torchreid alone: build_model +
load_state_dict (for the interpolation, the float tensors averaged by hand), Resize(256, 128) +
ToTensor + ImageNet normalize, compute_distance_matrix, evaluate_rank. Nothing is pasted.
A fusion of the two checkpoints (weights 1 and 2) is checked the same way, fused here from
torchreid's features.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MARKET_MINI, OSNET_DIR, needs_fixtures
from osnet_reference import features as _features
from osnet_reference import reference, reference_model

from raybench.catalog import load_matrix
from raybench.pipeline.driver import RunOptions, run_matrix

# torchreid's evaluate_rank breaks when a query's camera-filtered gallery is shorter than
# max_rank (ragged CMC rows); the mini gallery has 32 images.
MAX_RANK = 20
CHECKPOINTS = {"osnet-market": ("osnet_x0_25_market1501.pth", 751), "osnet-msmt": ("osnet_x0_25_msmt17.pth", 1041)}
ALPHA = 0.3
WISE = f"osnet-wise@{ALPHA}"


def _fused(members, weights):
    """The fusion rule written out on torchreid's features: concat of sqrt(w) * f / ||f||."""
    import torch

    def side(k):
        return torch.cat([w ** 0.5 * torch.nn.functional.normalize(m[k][0], dim=1) for m, w in zip(members, weights)],
                         dim=1), members[0][k][1], members[0][k][2]

    return side(0), side(1)


def _averaged(first, second, alpha: float):
    """WiSE-FT done by hand on torchreid's own models: ``first`` with every floating-point
    backbone tensor (1 - alpha) * first + alpha * second (the classifiers, 751 vs 1041 ids, stay
    out: eval mode never reaches them)."""
    import copy

    import torch

    model, theirs = copy.deepcopy(first), second.state_dict()
    mixed = {k: (1 - alpha) * v + alpha * theirs[k] if v.is_floating_point() else v
             for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    with torch.no_grad():
        model.load_state_dict(mixed, strict=False)
    return model


@needs_fixtures
@pytest.mark.skipif(not all((OSNET_DIR / f).exists() for f, _ in CHECKPOINTS.values()),
                    reason=f"OSNet checkpoints not found in {OSNET_DIR}")
def test_osnet_on_market_mini_equals_torchreid(ray_local, tmp_path):
    import yaml

    path = tmp_path / "osnet.yaml"
    path.write_text(yaml.safe_dump({
        "name": "osnet-fixture",
        "models": [*({"name": name, "loader": "torchreid", "arch": "osnet_x0_25", "paradigm": "supervised",
                      "weights": str(OSNET_DIR / checkpoint), "batch_size": 32}
                     for name, (checkpoint, _) in CHECKPOINTS.items()),
                   # WiSE-FT between the two: its members are the matrix's own entries
                   {"name": "osnet-wise", "loader": "interpolate", "models": list(CHECKPOINTS), "alpha": [0, ALPHA]}],
        "datasets": [{"name": "market1501", "root": str(MARKET_MINI)}],
        "eval": {"distance": "euclidean", "normalize": False, "max_rank": MAX_RANK},
        "fusions": [{"name": "osnet-fused", "of": list(CHECKPOINTS), "weights": [1, 2]}],
    }))
    summary = run_matrix(load_matrix(str(path)), str(tmp_path / "run"), RunOptions(), echo=lambda _: None)
    assert summary.ok, summary.failed

    maps = {}
    references = {name: reference_model(*spec) for name, spec in CHECKPOINTS.items()}
    references[WISE] = _averaged(*references.values(), ALPHA)
    features = {name: _features(model) for name, model in references.items()}
    features["osnet-fused"] = _fused([features[name] for name in CHECKPOINTS], [1, 2])
    for name, feats in features.items():
        result = json.loads((tmp_path / "run/results/market1501" / f"{name}.json").read_text())
        ref_map, ref_cmc = reference(*feats, MAX_RANK)
        assert result["num_query"] == 32 and result["num_valid_query"] == 30  # 2 queries have no cross-camera match
        assert result["mAP"] == pytest.approx(ref_map, abs=1e-6)
        assert np.allclose(result["cmc"], ref_cmc, atol=1e-6) and len(result["cmc"]) == len(ref_cmc)
        maps[name] = result["mAP"]
    assert maps["osnet-market"] > maps["osnet-msmt"], f"in-domain should beat cross-domain: {maps}"
    assert len(set(maps.values())) == 4, f"the interpolation and the fusion are models of their own: {maps}"

    # run.json records the interpolation's members and its in-domain dataset (its first
    # supervised member's), and the report reads it from there
    from raybench.report import domain
    from raybench.report.load import load_run

    record = json.loads((tmp_path / "run/run.json").read_text())
    [wise] = [m for m in record["matrix"]["models"] if m["name"] == WISE]
    assert [m["weights"] for m in wise["options"]["members"]] == [str(OSNET_DIR / c) for c, _ in CHECKPOINTS.values()]
    assert (wise["paradigm"], wise["options"]["alpha"], wise["trained_on"]) == ("hybrid", ALPHA, "market1501")
    assert domain.trained_on(load_run(str(tmp_path / "run")), WISE) == "market1501"

    # alpha 0 is its first member: compared on the same queries, every difference is 0 exactly
    from raybench.report.paired import compare_models

    first = next(iter(CHECKPOINTS))
    rows = compare_models(load_run(str(tmp_path / "run")), "osnet-wise@0", first)
    assert [(r["delta"], r["ci_low"], r["ci_high"], r["p_value"]) for r in rows] == [(0.0, 0.0, 0.0, 1.0)] * 3
