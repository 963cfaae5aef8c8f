"""Paired comparisons (report/paired.py) and hybrids against every member, under every block.

The run is the session's real run (conftest.real_run), copied and run again with a second
supervised model trained on the other dataset, a fusion of the two and an eval variant: only
the new cells embed, and the report is built from what the pipeline wrote.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from raybench.metrics import Scores
from raybench.report.paired import NotPaired, compare, paired


def block(ap, first, trial=None, inp=None) -> Scores:
    """A scoring block of these per-query values (mAP, R1 and mINP are their means)."""
    ap, first = np.asarray(ap, float), np.asarray(first)
    trial = np.zeros(len(ap), int) if trial is None else np.asarray(trial)
    inp = ap if inp is None else np.asarray(inp, float)
    means = [ap[trial == t].mean() for t in np.unique(trial)]
    r1 = [np.mean(first[trial == t] == 1) for t in np.unique(trial)]
    query = np.concatenate([np.arange((trial == t).sum()) for t in np.unique(trial)])
    return Scores(float(np.mean(means)), float(np.mean([inp[trial == t].mean() for t in np.unique(trial)])),
                  (float(np.mean(r1)),), len(ap), len(ap), 10,
                  per_query={"trial": trial.tolist(), "query": query.tolist(), "ap": ap.tolist(), "inp": inp.tolist(),
                             "first_match": first.tolist()})


def test_a_block_against_itself_is_zero_with_a_zero_interval_and_p_one():
    rng = np.random.default_rng(0)
    a = block(rng.random(40), rng.integers(1, 5, 40))
    for p in compare(a, a):
        assert (p.delta, p.ci_low, p.ci_high, p.p_value, p.num_queries) == (0.0, 0.0, 0.0, 1.0, 40)
        assert not p.significant


def test_a_constant_shift_is_its_own_interval_and_trials_are_resampled_apart():
    """Every query 0.1 better: delta 0.1 exactly, interval [0.1, 0.1], p at its floor. Two
    trials, one unchanged and one 0.1 better: the metric is the trials' mean, so delta 0.05, and
    resampling within each trial keeps the interval at exactly [0.05, 0.05]."""
    rng = np.random.default_rng(1)
    ap, first = rng.random(30) * 0.8, rng.integers(1, 5, 30)
    p = paired([(block(ap + 0.1, first), block(ap, first))], "mAP", n_boot=200)
    assert p.delta == pytest.approx(0.1) and (p.ci_low, p.ci_high) == pytest.approx((0.1, 0.1))
    assert p.p_value == pytest.approx(1 / 201) and p.significant
    trial = np.repeat([0, 1], 15)
    shifted = np.where(trial == 1, ap + 0.1, ap)
    p = paired([(block(shifted, first, trial), block(ap, first, trial))], "mAP", n_boot=200)
    assert p.delta == pytest.approx(0.05) and (p.ci_low, p.ci_high) == pytest.approx((0.05, 0.05))


def test_the_paired_interval_is_far_narrower_than_the_marginal_ones():
    """Two models that agree on which queries are hard: their difference is known to a fraction
    of the width of either model's own interval (the issue's fusion-vs-member case)."""
    from raybench.report.bootstrap import bootstrap_intervals

    rng = np.random.default_rng(2)
    hard = rng.random(200)
    a = block(np.clip(hard + 0.02 + 0.01 * rng.standard_normal(200), 0, 1), rng.integers(1, 3, 200))
    b = block(hard, rng.integers(1, 3, 200))
    diff = paired([(a, b)], "mAP")
    lo, hi = bootstrap_intervals(a.per_query)["mAP"]
    assert diff.ci_low <= diff.delta <= diff.ci_high and diff.delta == a.mAP - b.mAP
    assert (diff.ci_high - diff.ci_low) < (hi - lo) / 4 and diff.significant


def test_blocks_of_other_queries_are_not_paired():
    a = block([0.5, 0.4], [1, 2])
    with pytest.raises(NotPaired, match="different queries"):
        paired([(a, block([0.5, 0.4, 0.3], [1, 2, 3]))], "mAP")
    with pytest.raises(NotPaired, match="no per-query numbers"):
        paired([(a, dataclasses.replace(a, per_query=None))], "mAP")


@pytest.fixture(scope="module")
def hybrid_run(real_run, tmp_path_factory):
    """The real run, copied, with osnet-tiny-beta (supervised, trained on beta), a fusion of
    osnet-tiny-alpha and osnet-tiny-beta (in domain on alpha: its first supervised member's
    training set) and the eval variant ``rr`` (re-ranking)."""
    from conftest import real_run_matrix
    from pipeline_helpers import dummy_model

    from raybench.pipeline.driver import RunOptions, run_matrix
    from raybench.specs import FusionSpec, parse_eval_variants

    run = Path(shutil.copytree(real_run, tmp_path_factory.mktemp("hybrids") / "run",
                               ignore=shutil.ignore_patterns("report")))
    base = real_run_matrix(real_run.parent).select(models=["osnet-tiny-alpha", "color-hist", "osnet-color"])
    beta = dataclasses.replace(dummy_model("osnet-tiny-beta", dim=6, trained_on="beta"), paradigm="supervised")
    spec = dataclasses.replace(
        base, models=(*base.models, beta),
        fusions=(*base.fusions, FusionSpec("osnet-ab", ("osnet-tiny-alpha", "osnet-tiny-beta"), (1.0, 1.0))),
        eval_variants=parse_eval_variants([{"name": "rr", "rerank": True, "rerank_k1": 6, "rerank_k2": 3}], "test",
                                          base.eval))
    summary = run_matrix(spec, str(run), RunOptions(), echo=lambda _: None)
    assert summary.ok, summary.failed
    return run


def _result(run: Path, model: str, dataset: str) -> dict:
    return json.loads((run / "results" / dataset / f"{model}.json").read_text())


def test_a_hybrid_meets_every_member_even_one_trained_elsewhere(hybrid_run):
    """osnet-tiny-beta is trained on beta, its fusion is in domain on alpha: it is on alpha's
    panel of the trade-off figure and in the hybrids table with its own numbers: every member that
    was scored is shown beside its hybrid, whatever its training set."""
    from raybench.report.load import load_run
    from raybench.report.tradeoff import hybrids_table, points

    run = load_run(hybrid_run)
    panel = {p.model: p for p in points(run)["alpha"]}
    beta = _result(hybrid_run, "osnet-tiny-beta", "alpha")["mAP"], _result(hybrid_run, "osnet-tiny-beta", "beta")["mAP"]
    assert (panel["osnet-tiny-beta"].in_domain, panel["osnet-tiny-beta"].cross) == beta
    assert "osnet-ab" in panel and "osnet-tiny-beta" in {p.model for p in points(run)["beta"]}
    line = next(line for line in hybrids_table(run).splitlines() if line.startswith("| osnet-ab |"))
    assert f"osnet-tiny-beta ({100 * beta[0]:.1f} / {100 * beta[1]:.1f})" in line and "not scored here" not in line


def test_hybrids_are_shown_against_each_member_under_every_block(hybrid_run, tmp_path):
    """results.md: the hybrids table and the paired comparison against each member for the main
    block and for the eval variant, each with its own trade-off figure; the paired difference
    is the results' own mAP difference."""
    from raybench.report.build import ReportOptions, build_report

    report = build_report(hybrid_run, ReportOptions(out=tmp_path / "report", ranklists=False, bootstraps=200))
    md = (report.out / "results.md").read_text()
    main, variant = md.split("## Hybrids: fusions and weight interpolations (eval variant `rr`)")
    assert "## Hybrids: fusions and weight interpolations\n" in main
    assert {"tradeoff_map.png", "tradeoff_map_rr.png"} <= {p.name for p in report.files}
    for section, scored in ((main, lambda r: r["mAP"]), (variant, lambda r: r["variants"]["rr"]["mAP"])):
        line = next(line for line in section.splitlines() if line.startswith("| osnet-ab | osnet-tiny-beta | alpha |"))
        delta = scored(_result(hybrid_run, "osnet-ab", "alpha")) - scored(_result(hybrid_run, "osnet-tiny-beta", "alpha"))
        found = re.search(r"\| ([+-]\d+\.\d) \[(-?\d+\.\d), (-?\d+\.\d)\] p (\d\.\d{3})", line)
        assert found and float(found[1]) == round(100 * delta, 1)
        assert float(found[2]) <= float(found[1]) <= float(found[3])


def test_compare_prints_json_rows_with_exact_deltas(hybrid_run):
    from click.testing import CliRunner

    from raybench.cli import cli as main

    out = CliRunner().invoke(main, ["report", str(hybrid_run), "--compare", "osnet-ab,osnet-tiny-alpha",
                                    "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert {(r["dataset"], r["metric"]) for r in rows} == {(d, m) for d in ("alpha", "beta") for m in ("mAP", "R1", "mINP")}
    for r in rows:
        assert set(r) == {"a", "b", "dataset", "metric", "a_value", "b_value", "delta", "ci_low", "ci_high", "p_value",
                          "num_queries"}
        assert r["delta"] == r["a_value"] - r["b_value"] and r["ci_low"] <= r["ci_high"]
        if r["metric"] == "mAP":
            assert r["a_value"] == _result(hybrid_run, "osnet-ab", r["dataset"])["mAP"]
    same = json.loads(CliRunner().invoke(main, ["report", str(hybrid_run), "--compare", "color-hist,color-hist",
                                                "--dataset", "beta", "--format", "json"]).output)
    assert [(r["delta"], r["ci_low"], r["ci_high"], r["p_value"]) for r in same] == [(0.0, 0.0, 0.0, 1.0)] * 3
    variant = json.loads(CliRunner().invoke(main, ["report", str(hybrid_run), "--compare", "color-hist:rr,color-hist",
                                                   "--dataset", "alpha", "--format", "json"]).output)
    assert variant[0]["a_value"] == _result(hybrid_run, "color-hist", "alpha")["variants"]["rr"]["mAP"]
    bad = CliRunner().invoke(main, ["report", str(hybrid_run), "--compare", "osnet-abc,color-hist"])
    assert bad.exit_code != 0 and "Did you mean 'osnet-ab'" in str(bad.exception)  # the close name


def test_tradeoff_labels_never_overlap_nor_leave_the_axes():
    """results/ablation_smoke's points (close together, an interpolation's alphas among them):
    every number and alpha label lies inside the axes and on no other label, and the key beside
    the panel names each numbered point."""
    from raybench.report.plots import _pyplot
    from raybench.report.tradeoff import Point, _panel

    plt = _pyplot()
    rng = np.random.default_rng(3)
    panel = [Point(f"model-{i}", "baseline" if i % 2 else "supervised", 0.30 + 0.02 * rng.random(),
                   0.15 + 0.02 * rng.random(), 1) for i in range(9)]
    panel += [Point(f"wise@{a:g}", "hybrid", 0.23 + 0.1 * a, 0.18 + 0.05 * a, 1, curve="wise", alpha=a)
              for a in (0.25, 0.5, 0.75)]
    fig, ax = plt.subplots(figsize=(9.6, 5.6), layout="constrained")
    _panel(ax, "synth-a", panel, {"wise": ("model-0", "model-1")})
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    labels = [t for t in ax.texts if re.fullmatch(r"\d+(\.\d+)?", t.get_text())]
    assert sorted(t.get_text() for t in labels) == sorted([*map(str, range(1, 11)), "0.25", "0.5", "0.75"])
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, box in enumerate(boxes):
        assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1), labels[i].get_text()
        assert not any(box.overlaps(other) for other in boxes[i + 1:]), labels[i].get_text()
    key = next(t.get_text() for t in ax.texts if t.get_text().startswith("1 "))
    assert key.splitlines() == [f"{i + 1} model-{i}" for i in range(9)] + ["10 wise"]
    plt.close(fig)


def test_the_report_console_shows_the_variant_tables_it_writes(hybrid_run, tmp_path):
    from click.testing import CliRunner

    from raybench.cli import cli

    out = CliRunner().invoke(cli, ["report", str(hybrid_run), "--out", str(tmp_path / "r"), "--no-ranklists",
                                   "--bootstraps", "100"])
    assert out.exit_code == 0, out.output
    assert "Eval variants `rr`: mAP / Rank-1, intervals, vs main (%)" in out.output
    rr = _result(hybrid_run, "color-hist", "alpha")["variants"]["rr"]
    line = next(line for line in out.output.split("Eval variants `rr`")[1].splitlines() if line.startswith("color-hist"))
    assert f"{100 * rr['mAP']:.1f} [" in line and ", vs main " in line
