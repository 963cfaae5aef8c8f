"""raybench.catalog: config files by name or path, catalog entries named inline, registered
loaders and adapters, and `trained:<run>` models, which parse without their run and resolve
where the model is built."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from raybench.catalog import find_config, load_dataset_catalog, load_matrix, load_model_catalog
from raybench.errors import SpecError, UnknownNameError
from raybench.specs import MatrixSpec, ModelSpec

MODELS = """
vit:
  loader: timm
  arch: vit_small_patch16_224
  weights: augreg_in21k
  paradigm: self-supervised
  options: {params: 21665664, hf_hub: timm/vit_small_patch16_224.augreg_in21k}
"""
DATASETS = """
synth:
  adapter: synthetic
  options: {identities: 20, cameras: 3}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def matrix(tmp_path, models: str, datasets: str = "[synth]") -> MatrixSpec:
    path = write(tmp_path / "m.yaml", f"name: m\nmodels: {models}\ndatasets: {datasets}\n")
    return load_matrix(str(path), load_model_catalog(write(tmp_path / "models.yaml", MODELS)),
                       load_dataset_catalog(write(tmp_path / "datasets.yaml", DATASETS)))


# --- one name-or-path lookup ------------------------------------------------------------------


def test_find_config_takes_a_name_or_a_path(tmp_path):
    smoke = write(tmp_path / "configs" / "smoke.yaml", "name: smoke\n")
    assert find_config("smoke", smoke.parent, "matrix") == smoke
    assert find_config(str(smoke), tmp_path, "matrix") == smoke  # a path, whatever the folder
    with pytest.raises(SpecError, match=r"gone.yaml: matrix file not found"):
        find_config(str(tmp_path / "gone.yaml"), smoke.parent, "matrix")
    with pytest.raises(UnknownNameError, match=r"unknown matrix \(in .*configs\) 'smoek'. Did you mean 'smoke'"):
        find_config("smoek", smoke.parent, "matrix")


@pytest.mark.parametrize("call, typo, meant", [
    ("raybench.catalog:load_matrix", "smoek", "smoke"),
    ("raybench.train.config:load_train_config", "osnet_smok", "osnet_smoke"),
    ("raybench.jobs.submit:train_target", "osnet_smok", "osnet_smoke"),
    ("raybench.jobs.submit:load_job_spec", "matrx", "matrix"),
])
def test_every_config_kind_is_found_by_the_same_rule(call, typo, meant):
    """Matrices, training configs (run here and submitted) and job specs: a typo suggests."""
    from raybench.registry import import_target

    with pytest.raises(UnknownNameError, match=f"Did you mean '{meant}'"):
        import_target(call)(typo)


# --- registered names ---------------------------------------------------------------------------


def test_unknown_loader_or_adapter_is_caught_when_the_matrix_is_read(tmp_path):
    with pytest.raises(SpecError, match=r"m.yaml: models\[0\]: key 'loader' is 'openclp' \(did you mean 'openclip'\?\)"):
        matrix(tmp_path, "[{name: x, loader: openclp, arch: ViT-B-16, paradigm: baseline}]")
    with pytest.raises(SpecError, match=r"datasets.yaml: dataset 'mine': key 'adapter' is 'foldr' \(did you mean 'folder'\?\)"):
        load_dataset_catalog(write(tmp_path / "datasets.yaml", "mine: {adapter: foldr}\n"))
    outside = matrix(tmp_path, "[{name: x, loader: 'pkg.mod:LOADER', arch: a, paradigm: baseline}]")
    assert outside.models[0].loader == "pkg.mod:LOADER"  # a target outside the package: on trust


# --- one override rule for inline entries ------------------------------------------------------


def test_an_inline_model_merges_its_options_over_the_catalog_entry(tmp_path):
    [model] = matrix(tmp_path, "[{name: vit, options: {params: 5}, flip: true}]").models
    assert dict(model.options) == {"params": 5, "hf_hub": "timm/vit_small_patch16_224.augreg_in21k"}
    assert model.flip and model.weights == "augreg_in21k"


def test_an_inline_dataset_merges_its_options_over_the_catalog_entry(tmp_path):
    [data] = matrix(tmp_path, "[vit]", "[{name: synth, options: {cameras: 5}, root: /d}]").datasets
    assert dict(data.options) == {"identities": 20, "cameras": 5}
    assert data.root == "/d" and data.adapter == "synthetic"


# --- trained:<run> -------------------------------------------------------------------------------

RUN_ENTRY = """
my-osnet:
  loader: torchreid
  arch: osnet_x0_25
  weights: model.pth
  paradigm: baseline
  preprocess: {size: [64, 32]}
  options: {trained_on: synth-a}
"""


@pytest.fixture
def trained_runs(tmp_path, monkeypatch):
    """$RAYBENCH_TRAINED with one finished run, my-osnet."""
    runs = tmp_path / "runs"
    write(runs / "my-osnet" / "model.yaml", RUN_ENTRY)
    (runs / "my-osnet" / "model.pth").write_bytes(b"")
    monkeypatch.setenv("RAYBENCH_TRAINED", str(runs))
    return runs


def test_a_trained_model_parses_without_its_run(tmp_path, monkeypatch):
    """`raybench submit` from a laptop: the runs live on the cluster's storage only."""
    from raybench.models import resolve_model

    monkeypatch.setenv("RAYBENCH_TRAINED", str(tmp_path / "nothing-here"))
    models = matrix(tmp_path, "[trained:my-osnet, {name: 'trained:/cluster/runs/other/model.yaml', flip: true}]").models
    assert models[0] == ModelSpec(name="my-osnet", loader="trained", arch="my-osnet", weights=None,
                                  paradigm="supervised")
    assert (models[1].name, models[1].arch, models[1].flip) == ("other", "/cluster/runs/other/model.yaml", True)
    with pytest.raises(SpecError, match="no .*nothing-here/my-osnet/model.yaml. Train it first"):
        resolve_model(models[0])


def test_submit_checks_a_matrix_of_trained_runs_that_live_on_the_cluster_only(tmp_path, monkeypatch):
    from raybench.jobs.submit import matrix_target

    monkeypatch.setenv("RAYBENCH_TRAINED", str(tmp_path))  # no run here
    assert matrix_target("ablation") == ("ablation", "ablation")


def test_a_trained_model_resolves_to_its_run_where_it_is_built(tmp_path, trained_runs):
    from raybench.models import resolve_model
    from raybench.models.trained import run_spec

    [bare] = matrix(tmp_path, "[trained:my-osnet]").models
    folder = trained_runs / "my-osnet"
    [changed] = matrix(tmp_path, f"[{{name: 'trained:{folder}', flip: true, options: {{params: 7}}}}]").models
    spec = resolve_model(bare)
    assert spec == run_spec(str(folder))  # by name or by folder
    assert spec.weights == str((folder / "model.pth").resolve())
    assert (spec.loader, spec.paradigm, spec.preprocess.size) == ("torchreid", "baseline", (64, 32))  # the run's
    assert spec.spec_hash() != bare.spec_hash()
    mine = resolve_model(changed)
    assert mine == dataclasses.replace(spec, flip=True, options={"trained_on": "synth-a", "params": 7})


def test_a_trained_entry_cannot_replace_what_its_run_decides(tmp_path):
    with pytest.raises(SpecError, match=r"models\[0\]: key 'weights': a trained:<run> model takes its loader, arch, weights"):
        matrix(tmp_path, "[{name: 'trained:my-osnet', weights: other.pth}]")


def test_the_driver_keys_cells_by_the_runs_spec(tmp_path, trained_runs):
    """Cell keys, run.json and results see the run's spec; an unreadable run stays a reference
    (its cells fail in the pre-flight check, with the reason)."""
    from raybench.models.trained import run_spec
    from raybench.pipeline.driver import _resolve_models

    spec = matrix(tmp_path, "[trained:my-osnet, trained:missing, vit]")
    resolved = _resolve_models(spec)
    assert resolved.models == (run_spec("my-osnet"), spec.models[1], spec.models[2])



# --- loader: interpolate ---------------------------------------------------------------------------

MINE = "{name: mine, loader: timm, arch: vit_small_patch16_224, weights: /w/mine.pth, paradigm: supervised}"


def test_an_interpolation_expands_to_one_model_per_alpha(tmp_path):
    from raybench.derived.interpolation import interpolation_members

    models = matrix(tmp_path, f"[vit, {MINE}, {{name: wise, loader: interpolate, models: [vit, mine], "
                              "alpha: [0, 0.25, 1]}, {name: half, loader: interpolate, models: [vit, mine], alpha: 0.5}]").models
    assert [m.name for m in models] == ["vit", "mine", "wise@0", "wise@0.25", "wise@1", "half@0.5"]
    vit, mine, *wise = models
    for spec, alpha in zip(wise, (0.0, 0.25, 1.0, 0.5)):
        assert (spec.loader, spec.arch, spec.paradigm, spec.options["alpha"]) == ("interpolate", vit.arch, "hybrid", alpha)
        assert interpolation_members(spec) == (dataclasses.replace(vit, batch_size=64, description=""),
                                               dataclasses.replace(mine, batch_size=64, description=""))
    hashes = {s.spec_hash() for s in wise}  # the alpha and both members' weights are in each hash
    assert len(hashes) == 4 and not hashes & {vit.spec_hash(), mine.spec_hash()}


def test_members_are_found_in_the_matrix_first_then_in_the_catalog(tmp_path):
    from raybench.derived.interpolation import interpolation_members

    models = matrix(tmp_path, "[{name: vit, weights: /w/tuned.pth}, {name: wise, loader: interpolate, alpha: 0.5, "
                              f"models: [vit, {MINE}]}}]").models
    assert [m.weights for m in interpolation_members(models[1])] == ["/w/tuned.pth", "/w/mine.pth"]
    [alone] = matrix(tmp_path, "[{name: wise, loader: interpolate, models: [vit, {name: vit, weights: /w/b.pth}], "
                               "alpha: 0.5}]").models  # members outside the matrix: the catalog's entry
    assert [m.weights for m in interpolation_members(alone)] == ["augreg_in21k", "/w/b.pth"]


def test_an_unknown_member_suggests_close_names_in_file_and_key(tmp_path):
    with pytest.raises(SpecError, match=r"m.yaml: models\[1\]: models\[1\]: unknown model 'mien'\. Did you mean 'mine'"):
        matrix(tmp_path, f"[{MINE}, {{name: wise, loader: interpolate, models: [vit, mien], alpha: 0.5}}]")


@pytest.mark.parametrize("entry, message", [
    ("{name: w, loader: interpolate, models: [vit, mine], alpha: 1.5}", r"models\[1\]: key 'alpha' takes numbers in \[0, 1\]"),
    ("{name: w, loader: interpolate, models: [vit, mine], alpha: []}", r"key 'alpha' is an empty list"),
    ("{name: w, loader: interpolate, models: [vit, mine], alpha: [0.5, 0.5]}", r"key 'alpha' lists .* a value twice"),
    ("{name: w, loader: interpolate, models: [vit, mine, vit], alpha: 0.5}", r"key 'models' must list exactly two models"),
    ("{name: w, loader: interpolate, models: [vit, mine], alpha: 0.5, weights: x}", r"unknown key 'weights'"),
    ("{name: w, loader: interpolate, models: [vit, w], alpha: 0.5}", r"models\[1\]: 'w' is an interpolation; a member"),
])
def test_interpolation_entries_are_checked_when_the_matrix_is_read(tmp_path, entry, message):
    with pytest.raises(SpecError, match=message):
        matrix(tmp_path, f"[{MINE}, {entry}]")


def test_an_interpolation_is_a_matrix_entry_not_a_catalog_model(tmp_path):
    path = write(tmp_path / "models.yaml", "wise: {loader: interpolate, models: [a, b], alpha: 0.5}\n")
    with pytest.raises(SpecError, match=r"model 'wise': loader 'interpolate' is written in a matrix's models"):
        load_model_catalog(path)


def test_a_trained_member_resolves_where_the_model_is_built(tmp_path, trained_runs):
    from raybench.derived.interpolation import interpolation_members
    from raybench.models.trained import run_spec
    from raybench.pipeline.driver import _resolve_models

    spec = matrix(tmp_path, "[{name: wise, loader: interpolate, alpha: 0.5, models: [trained:my-osnet, "
                            "{name: base, loader: torchreid, arch: osnet_x0_25, paradigm: supervised}]}]")
    assert interpolation_members(spec.models[0])[0].loader == "trained"  # read nothing yet
    [wise] = _resolve_models(spec).models
    run = dataclasses.replace(run_spec("my-osnet"), batch_size=64, description="")
    assert interpolation_members(wise)[0] == run and wise.arch == "osnet_x0_25"
    assert wise.spec_hash() != spec.models[0].spec_hash()  # the cell key holds the run's weights


def test_an_interpolations_training_set_is_its_supervised_members():
    from raybench.catalog import trained_on
    from raybench.derived.interpolation import Interpolation, interpolation_spec
    from raybench.specs import ModelSpec

    zero_shot = ModelSpec(name="clip", loader="openclip", arch="ViT-B-16", weights="openai", paradigm="language-aligned")
    reid = ModelSpec(name="clipreid-msmt", loader="clipreid", arch="ViT-B-16", weights="/w.pth", paradigm="supervised")
    market = dataclasses.replace(reid, name="reid", options={"trained_on": "market1501"})
    entry = Interpolation("wise", ("a", "b"), (0.5,))
    assert trained_on(interpolation_spec(entry, 0.5, (zero_shot, reid)), ["market1501", "msmt17"], []) == "msmt17"
    assert trained_on(interpolation_spec(entry, 0.5, (market, reid)), ["market1501", "msmt17"], []) == "market1501"
    assert trained_on(interpolation_spec(entry, 0.5, (zero_shot, zero_shot)), ["market1501"], []) is None


def test_a_dataset_and_its_variants_name_one_training_set():
    """market1501-500k (Market-1501 with its distractors) leaves -market models in domain on
    market1501, as before it existed; two unrelated matches are still no answer."""
    from raybench.catalog import load_dataset_catalog, named_training_set

    catalog = list(load_dataset_catalog())
    assert "market1501-500k" in catalog
    assert named_training_set("osnet-x1_0-market", catalog) == "market1501"
    assert named_training_set("osnet-x1_0-market", ["market1501-500k"]) == "market1501-500k"
    assert named_training_set("x-synth", ["synth-a", "synth-b"]) is None
