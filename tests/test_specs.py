import dataclasses
import textwrap

import pytest

from raybench.catalog import load_matrix, load_model_catalog
from raybench.errors import SpecError, UnknownNameError
from raybench.specs import DatasetSpec, EvalSpec, EvalVariant, ModelSpec, Preprocess, parse_model, parse_preprocess


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


MODELS = """
osnet:
  loader: torchreid
  arch: osnet_x0_25
  weights: /w/osnet.pth
  paradigm: supervised
  preprocess: {size: [256, 128]}
clip:
  loader: openclip
  arch: ViT-B-16
  weights: openai
  paradigm: language-aligned
  preprocess: {size: 224, mean: [0.48, 0.45, 0.40], std: [0.26, 0.26, 0.27], interpolation: bicubic, resize_mode: shortest_crop}
"""

DATASETS = {"market1501": DatasetSpec(name="market1501", adapter="market1501", layout_dir="Market-1501-v15.09.15")}


def test_specs_are_frozen():
    spec = ModelSpec(name="m", loader="color", arch="hist", weights=None, paradigm="baseline")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"


def test_model_catalog_parses(tmp_path):
    catalog = load_model_catalog(write(tmp_path, "models.yaml", MODELS))
    assert catalog["osnet"].preprocess == Preprocess(size=(256, 128))
    clip = catalog["clip"].preprocess
    assert clip.size == (224, 224) and clip.interpolation == "bicubic"
    assert clip.pixel_key == "224x224-bicubic-shortest_crop"
    # mean/std are applied inside the model, except the pad border, which is the mean colour
    osnet = catalog["osnet"].preprocess
    assert dataclasses.replace(osnet, std=(1.0, 1.0, 1.0)).pixel_key == osnet.pixel_key
    padded = dataclasses.replace(osnet, resize_mode="pad")
    assert padded.pixel_key == "256x128-bilinear-pad-7c7468"
    assert dataclasses.replace(padded, mean=(0.5, 0.5, 0.5)).pixel_key != padded.pixel_key


def test_spec_hash_ignores_name_and_batch_size_but_not_weights():
    a = ModelSpec(name="a", loader="torchreid", arch="osnet_x0_25", weights="w1", paradigm="supervised")
    assert a.spec_hash() == dataclasses.replace(a, name="b", batch_size=8).spec_hash()
    assert a.spec_hash() != dataclasses.replace(a, weights="w2").spec_hash()
    assert a.spec_hash() != dataclasses.replace(a, preprocess=Preprocess(size=(256, 128))).spec_hash()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"loader": "timm", "arch": "x", "paradigm": "zero-shot"}, "key 'paradigm' is 'zero-shot'; allowed: supervised"),
        ({"loader": "timm", "paradigm": "baseline"}, "missing key 'arch'"),
        ({"loader": "timm", "arch": "x", "paradigm": "baseline", "wieghts": "a"}, "unknown key 'wieghts'"),
        ({"loader": "timm", "arch": "x", "paradigm": "baseline", "batch_size": "big"}, "key 'batch_size' must be int"),
        ({"loader": "timm", "arch": "x", "paradigm": "baseline", "flip": "yes"}, "key 'flip' must be bool"),
    ],
)
def test_model_validation_names_file_and_key(fields, message):
    with pytest.raises(SpecError) as info:
        parse_model({"name": "m", **fields}, "models.yaml: model 'm'")
    assert message in str(info.value)
    assert str(info.value).startswith("models.yaml: model 'm'")


def test_preprocess_validation():
    with pytest.raises(SpecError, match="allowed: squash, shortest_crop, pad"):
        parse_preprocess({"size": [256, 128], "resize_mode": "crop"}, "x")
    with pytest.raises(SpecError, match=r"\[height, width\]"):
        parse_preprocess({"size": [256, 128, 3]}, "x")
    with pytest.raises(SpecError, match="list of 3 numbers"):
        parse_preprocess({"size": 224, "mean": [0.5]}, "x")


def test_matrix_names_and_inline_overrides(tmp_path):
    models = load_model_catalog(write(tmp_path, "models.yaml", MODELS))
    path = write(tmp_path, "m.yaml", """
        name: demo
        models:
          - osnet
          - {name: clip, preprocess: {resize_mode: pad, size: [224, 112]}}
          - {name: mine, loader: torchreid, arch: osnet_x0_25, weights: /p.pth, paradigm: supervised}
        datasets: [market1501, {name: market1501-copy, adapter: market1501, root: /data/m}]
        eval: {distance: cosine, max_rank: 10}
    """)
    matrix = load_matrix(str(path), models, DATASETS)
    assert [m.name for m in matrix.models] == ["osnet", "clip", "mine"]
    clip = matrix.models[1]
    assert clip.preprocess.resize_mode == "pad" and clip.preprocess.size == (224, 112)
    assert clip.preprocess.interpolation == "bicubic"  # kept from the catalog entry
    assert clip.weights == "openai"
    assert matrix.datasets[1].root == "/data/m"
    assert matrix.eval.distance == "cosine" and matrix.eval.max_rank == 10 and matrix.eval.normalize
    sub = matrix.select(models=["clip"], datasets=["market1501"])
    assert [m.name for m in sub.models] == ["clip"] and len(sub.datasets) == 1
    with pytest.raises(UnknownNameError, match="Did you mean 'osnet'"):
        matrix.select(models=["osnett"])


def test_matrix_unknown_model_suggests(tmp_path):
    models = load_model_catalog(write(tmp_path, "models.yaml", MODELS))
    path = write(tmp_path, "m.yaml", "models: [osnett]\ndatasets: [market1501]\n")
    with pytest.raises(UnknownNameError, match="Did you mean 'osnet'"):
        load_matrix(str(path), models, DATASETS)


def test_matrix_bad_eval_and_duplicates(tmp_path):
    models = load_model_catalog(write(tmp_path, "models.yaml", MODELS))
    bad = write(tmp_path, "bad.yaml", "models: [osnet]\ndatasets: [market1501]\neval: {distance: manhattan}\n")
    with pytest.raises(SpecError, match=r"bad.yaml: eval: key 'distance' is 'manhattan'; allowed: euclidean, cosine"):
        load_matrix(str(bad), models, DATASETS)
    dup = write(tmp_path, "dup.yaml", "models: [osnet, osnet]\ndatasets: [market1501]\n")
    with pytest.raises(SpecError, match="listed twice"):
        load_matrix(str(dup), models, DATASETS)


def test_eval_variants_override_the_matrix_eval_block(tmp_path):
    models = load_model_catalog(write(tmp_path, "models.yaml", MODELS))
    path = write(tmp_path, "v.yaml", """
        models: [osnet]
        datasets: [market1501]
        eval: {distance: euclidean, normalize: true, max_rank: 10}
        eval_variants:
          - {name: rerank, rerank: true}
          - {name: aqe, aqe: {k: 5, alpha: 3.0}}
          - {name: aqe-default, aqe: true, normalize: false}
          - {name: raw-cosine, distance: cosine, normalize: false, max_rank: 20}
    """)
    matrix = load_matrix(str(path), models, DATASETS)
    base = EvalSpec(max_rank=10)
    assert matrix.eval == base
    assert matrix.eval_variants == (
        EvalVariant("rerank", dataclasses.replace(base, rerank=True)),
        EvalVariant("aqe", dataclasses.replace(base, aqe_k=5, aqe_alpha=3.0, aqe_times=1)),
        EvalVariant("aqe-default", dataclasses.replace(base, aqe_k=5, aqe_alpha=3.0, aqe_times=1, normalize=False)),
        EvalVariant("raw-cosine", EvalSpec(distance="cosine", normalize=False, max_rank=20)),
    )
    assert matrix.select(models=["osnet"]).eval_variants == matrix.eval_variants
    assert load_matrix(str(write(tmp_path, "plain.yaml", "models: [osnet]\ndatasets: [market1501]\n")),
                       models, DATASETS).eval_variants == ()


@pytest.mark.parametrize("variants, message", [
    ("[{name: rr, rernk: true}]", r"eval_variants\[0\] 'rr': unknown key 'rernk' \(did you mean 'rerank'\?\)"),
    ("[{name: c, distance: manhattan}]", r"eval_variants\[0\] 'c': key 'distance' is 'manhattan'; allowed: euclidean, cosine"),
    ("[{name: q, aqe: {k: 5, alpah: 2}}]", r"eval_variants\[0\] 'q': aqe: unknown key 'alpah' \(did you mean 'alpha'\?\)"),
    ("[{name: q, aqe: {k: 0}}]", r"aqe: keys 'k' and 'times' must be at least 1"),
    ("[{name: q, aqe: {alpha: -1}}]", r"aqe: key 'alpha' must be a number >= 0"),
    ("[{name: q, aqe: 5}]", r"key 'aqe' must be dict or bool, got 5"),
    ("[{rerank: true}]", r"eval_variants\[0\]: expected a mapping with a 'name'"),
    ("[{name: 'my variant', rerank: true}]", r"name 'my variant' must be a word"),
    ("[{name: main, rerank: true}]", r"name 'main' must be a word .* \(not 'main', 't2i'\)"),
    ("[{name: a, rerank: true}, {name: a, distance: cosine}]", r"eval_variants\[1\]: variant name 'a' is listed twice"),
    ("[{name: same, max_rank: 10}]", r"eval_variants\[0\] 'same': scores exactly as the matrix's eval block"),
    ("[{name: a, rerank: true}, {name: b, rerank: true}]", r"eval_variants\[1\] 'b': scores exactly as variant 'a'"),
    ("{name: a, rerank: true}", r"key 'eval_variants' must be list"),
])
def test_eval_variant_errors_name_file_variant_and_key(tmp_path, variants, message):
    models = load_model_catalog(write(tmp_path, "models.yaml", MODELS))
    path = write(tmp_path, "bad.yaml", f"models: [osnet]\ndatasets: [market1501]\neval: {{max_rank: 10}}\n"
                                       f"eval_variants: {variants}\n")
    with pytest.raises(SpecError, match=message) as info:
        load_matrix(str(path), models, DATASETS)
    assert str(info.value).startswith(f"{path}: ")


def test_misspelt_keys_name_the_key_they_meant(tmp_path):
    with pytest.raises(SpecError, match=r"unknown key 'weigths' \(did you mean 'weights'\?\); allowed keys:"):
        parse_model({"name": "m", "loader": "timm", "arch": "x", "paradigm": "baseline", "weigths": "a"}, "m.yaml")
    typo = write(tmp_path, "typo.yaml", "model: [osnet]\ndatasets: [market1501]\n")
    with pytest.raises(SpecError, match=r"typo.yaml: missing key 'models' \(found 'model': a misspelling of 'models'\?\)"):
        load_matrix(str(typo), {}, DATASETS)


def test_matrix_file_errors(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_matrix(str(tmp_path / "nope.yaml"), {}, {})
    broken = write(tmp_path, "broken.yaml", "models: [a\n")
    with pytest.raises(SpecError, match="not valid YAML") as error:
        load_matrix(str(broken), {}, {})
    assert f'in "{broken}", line 2' in str(error.value) and "<unicode string>" not in str(error.value)
