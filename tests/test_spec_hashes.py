"""Every spec hash and eval hash stays bit-identical across the schema reader's introduction.

A model's spec hash is in its cells' keys and an eval hash in every result: a change of either
makes a finished run re-embed or re-score. The values below were computed from the code BEFORE
the YAML reader became raybench.specs.schema (commit fc644df, specs.py's hand-listed
``Fields.take`` calls and train/config.py's ``_section``), by the same computations as the
tests below, run on that commit and printed.

A deliberate change of a catalog entry, matrix or training config changes its line here; any
other difference is a reader that reads a key differently (a default, a coercion, a merge).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from raybench.catalog import config_files, load_dataset_catalog, load_matrix, load_model_catalog, matrices_dir, \
    train_configs_dir
from raybench.pipeline.plan import eval_hash
from raybench.train.config import load_train_config

#: configs/models.yaml: name -> ModelSpec.spec_hash()
MODELS = {
    "clip-vit-b16": "d2e9661ec5f1af19",
    "clip-vit-b32": "b7f11b87bc93b15e",
    "clip-vit-l14": "f4cebf633282576c",
    "clipreid-vit-b16-market": "e887bf52ed908b71",
    "clipreid-vit-b16-msmt17": "b908101366d0e544",
    "color-hist": "88de030465ade2b5",
    "color-words": "d3fa6f47349a586b",
    "dinov2-b14": "8ce232658e8a0f42",
    "dinov2-b14-hf": "cce9a7883c6a993a",
    "dinov2-g14": "e1c45ea864ec6976",
    "dinov2-l14": "cb05a4657425260f",
    "dinov2-s14": "662c2317a1a7e088",
    "dummy": "03352be2988b3662",
    "osnet-x0_25-duke": "b69d013e8221368e",
    "osnet-x0_25-market": "899f1f0a5d1c36f5",
    "osnet-x0_25-msmt17": "5e590ad6d8a1a1df",
    "osnet-x0_5-duke": "88d92079b2538468",
    "osnet-x0_5-market": "16e7f0d243df5f5a",
    "osnet-x0_5-msmt17": "73830cd6ce0d2fc2",
    "osnet-x0_75-duke": "84bbd01754870ecb",
    "osnet-x0_75-market": "9af6e7d7c09ac4c6",
    "osnet-x0_75-msmt17": "a8a56603f62e2ac9",
    "osnet-x1_0-duke": "17f455e80c7424c8",
    "osnet-x1_0-market": "a0463e1a72ab9381",
    "osnet-x1_0-msmt17": "e420cee8b8c01d18",
    "pe-core-b16": "78e452ab31b791eb",
    "pe-core-g14-448": "b3556a767cc52f0a",
    "pe-core-l14-336": "4f2d04396ef79f2f",
    "pe-spatial-s16-512": "9dab646c53c98455",
    "siglip2-b16-256": "ade1382a1e1cc5a3",
    "siglip2-b16-256-hf": "f5ad0c991c96893b",
    "siglip2-b16-384": "fcff64a21e861e13",
    "siglip2-l16-256": "7fac856b258c6864",
    "siglip2-so400m16-256": "c6e9a4e857196dd2"
}

#: configs/matrices/NAME.yaml: its models' and fusions' spec hashes (interpolations and trained:<run>
#: references as the matrix resolves them, without reading a run), and per dataset the eval hash
#: of its eval block with its eval variants (eval) and without them (eval_main)
MATRICES = {
    "ablation": {
        "eval": {
            "celebreid": "443ffea6cdd21dbb",
            "cuhk03-detected": "d865186f40a690d9",
            "dukemtmcreid": "d865186f40a690d9",
            "grid": "2dea7e96e467e8d9",
            "iustreid": "d865186f40a690d9",
            "last-test": "443ffea6cdd21dbb",
            "market1501": "d865186f40a690d9",
            "msmt17": "d865186f40a690d9",
            "pku": "d865186f40a690d9"
        },
        "eval_main": {
            "celebreid": "443ffea6cdd21dbb",
            "cuhk03-detected": "d865186f40a690d9",
            "dukemtmcreid": "d865186f40a690d9",
            "grid": "2dea7e96e467e8d9",
            "iustreid": "d865186f40a690d9",
            "last-test": "443ffea6cdd21dbb",
            "market1501": "d865186f40a690d9",
            "msmt17": "d865186f40a690d9",
            "pku": "d865186f40a690d9"
        },
        "fusions": {
            "clipreid-released+siglip2": "68523719f44f5965",
            "clipreid-textfrozen+siglip2": "007fabe85f1ccf66",
            "clipreid-texttrained+siglip2": "d0fdf93d374f7046",
            "osnet-msmt17+siglip2": "202bf650b2d12485"
        },
        "models": {
            "clip-to-clipreid-wise@0": "01667e33adf86aae",
            "clip-to-clipreid-wise@0.25": "a9d45b3bc2c52f32",
            "clip-to-clipreid-wise@0.5": "49dae1aa6e71e4aa",
            "clip-to-clipreid-wise@0.75": "f23adac369b17278",
            "clip-to-clipreid-wise@1": "b91243db7defa837",
            "clip-vit-b16": "110df2ab2fd9fe31",
            "clipreid-vit-b16-msmt17": "b908101366d0e544",
            "clipreid-vit-b16-msmt17-raybench-textfrozen": "dd8b6d9673d419b0",
            "clipreid-vit-b16-msmt17-raybench-texttrained": "6b93613c3e1fbbfe",
            "dinov2-b14": "974dd0b0ded0fa8f",
            "osnet-x1_0-market": "a0463e1a72ab9381",
            "osnet-x1_0-market-raybench": "e235eed6e21cb848",
            "osnet-x1_0-msmt17": "e420cee8b8c01d18",
            "osnet-x1_0-msmt17-raybench": "fd582670aca8fc79",
            "pe-core-l14-336": "5960402acc18a1e8",
            "siglip2-b16-256": "5d574f99d62bd766"
        }
    },
    "ablation_smoke": {
        "eval": {
            "synth-a": "3d5d58b5351c0f02",
            "synth-b": "3d5d58b5351c0f02"
        },
        "eval_main": {
            "synth-a": "3d5d58b5351c0f02",
            "synth-b": "3d5d58b5351c0f02"
        },
        "fusions": {
            "osnet+clipreid-textfrozen": "78cd7dd85caa9048"
        },
        "models": {
            "clipreid-tiny-synth-a-textfrozen": "456c60a5ce9de678",
            "clipreid-tiny-synth-a-texttrained": "4f8006c387582961",
            "clipreid-tiny-textfrozen-wise@0.5": "9939af4fbba7a84c",
            "clipreid-tiny-untrained": "95a105809abe8b26",
            "color-hist": "88de030465ade2b5",
            "osnet-x0_25-smoke-wise@0.25": "5b8f8428e12155f0",
            "osnet-x0_25-smoke-wise@0.5": "05f8b58301914209",
            "osnet-x0_25-smoke-wise@0.75": "7cefcc9e0fc100e2",
            "osnet-x0_25-synth-a-smoke": "359d863dd3b144b5",
            "osnet-x0_25-untrained": "56606a0c52298c0b"
        }
    },
    "clothes": {
        "eval": {
            "celebreid": "443ffea6cdd21dbb",
            "celebreid-official": "ad3c213a1677fa07",
            "deepchange": "345235d51777b859",
            "ltcc": "ab3ce391bddd3d65",
            "prcc": "a715c8cb44c5876e",
            "vcclothes": "fab3047f0e0d38cc"
        },
        "eval_main": {
            "celebreid": "443ffea6cdd21dbb",
            "celebreid-official": "ad3c213a1677fa07",
            "deepchange": "345235d51777b859",
            "ltcc": "ab3ce391bddd3d65",
            "prcc": "a715c8cb44c5876e",
            "vcclothes": "fab3047f0e0d38cc"
        },
        "fusions": {},
        "models": {
            "clip-vit-b16": "110df2ab2fd9fe31",
            "clip-vit-b32": "b3e26840a6c609ad",
            "clip-vit-l14": "d31dfdcef62ecef0",
            "clipreid-vit-b16-msmt17": "b908101366d0e544",
            "dinov2-b14": "974dd0b0ded0fa8f",
            "dinov2-l14": "86dbb1b3417e0c99",
            "osnet-x1_0-market": "a0463e1a72ab9381",
            "pe-core-l14-336": "5960402acc18a1e8",
            "pe-spatial-s16-512": "8fc199f4e338d334",
            "siglip2-b16-256": "5d574f99d62bd766",
            "siglip2-b16-384": "224ef21ee02e8f15"
        }
    },
    "clothes_smoke": {
        "eval": {
            "synth-cc": "9b91cb860f577786"
        },
        "eval_main": {
            "synth-cc": "9b91cb860f577786"
        },
        "fusions": {},
        "models": {
            "color-hist": "88de030465ade2b5",
            "osnet-x0_25-untrained": "964438cf5af25290"
        }
    },
    "full": {
        "eval": {
            "celebreid": "443ffea6cdd21dbb",
            "cuhk03-detected": "d865186f40a690d9",
            "cuhk03-labeled": "d865186f40a690d9",
            "deepchange": "345235d51777b859",
            "dukemtmcreid": "d865186f40a690d9",
            "grid": "2dea7e96e467e8d9",
            "iustreid": "d865186f40a690d9",
            "last-test": "443ffea6cdd21dbb",
            "ltcc": "ab3ce391bddd3d65",
            "market1501": "d865186f40a690d9",
            "msmt17": "d865186f40a690d9",
            "pku": "d865186f40a690d9",
            "mars": "d865186f40a690d9",
            "ilidsvid": "2dea7e96e467e8d9",
            "prid2011": "2dea7e96e467e8d9",
            "dukemtmc-videoreid": "d865186f40a690d9",
            "prcc": "a715c8cb44c5876e",
            "vcclothes": "fab3047f0e0d38cc"
        },
        "eval_main": {
            "celebreid": "443ffea6cdd21dbb",
            "cuhk03-detected": "d865186f40a690d9",
            "cuhk03-labeled": "d865186f40a690d9",
            "deepchange": "345235d51777b859",
            "dukemtmcreid": "d865186f40a690d9",
            "grid": "2dea7e96e467e8d9",
            "iustreid": "d865186f40a690d9",
            "last-test": "443ffea6cdd21dbb",
            "ltcc": "ab3ce391bddd3d65",
            "market1501": "d865186f40a690d9",
            "msmt17": "d865186f40a690d9",
            "pku": "d865186f40a690d9",
            "mars": "d865186f40a690d9",
            "ilidsvid": "2dea7e96e467e8d9",
            "prid2011": "2dea7e96e467e8d9",
            "dukemtmc-videoreid": "d865186f40a690d9",
            "prcc": "a715c8cb44c5876e",
            "vcclothes": "fab3047f0e0d38cc"
        },
        "fusions": {},
        "models": {
            "clip-vit-b16": "110df2ab2fd9fe31",
            "clip-vit-b32": "b3e26840a6c609ad",
            "clip-vit-l14": "d31dfdcef62ecef0",
            "clipreid-vit-b16-market": "e887bf52ed908b71",
            "clipreid-vit-b16-msmt17": "b908101366d0e544",
            "color-hist": "88de030465ade2b5",
            "dinov2-b14": "974dd0b0ded0fa8f",
            "dinov2-b14-hf": "bf696d731ce5bbde",
            "dinov2-g14": "07798936f3bd7ced",
            "dinov2-l14": "86dbb1b3417e0c99",
            "dinov2-s14": "679ce25acaff6cff",
            "osnet-x0_25-duke": "b69d013e8221368e",
            "osnet-x0_25-market": "899f1f0a5d1c36f5",
            "osnet-x0_25-msmt17": "5e590ad6d8a1a1df",
            "osnet-x0_5-duke": "88d92079b2538468",
            "osnet-x0_5-market": "16e7f0d243df5f5a",
            "osnet-x0_5-msmt17": "73830cd6ce0d2fc2",
            "osnet-x0_75-duke": "84bbd01754870ecb",
            "osnet-x0_75-market": "9af6e7d7c09ac4c6",
            "osnet-x0_75-msmt17": "a8a56603f62e2ac9",
            "osnet-x1_0-duke": "17f455e80c7424c8",
            "osnet-x1_0-market": "a0463e1a72ab9381",
            "osnet-x1_0-msmt17": "e420cee8b8c01d18",
            "pe-core-b16": "7bd598c152d08e35",
            "pe-core-g14-448": "eb8659f3d0bed590",
            "pe-core-l14-336": "5960402acc18a1e8",
            "pe-spatial-s16-512": "8fc199f4e338d334",
            "siglip2-b16-256": "5d574f99d62bd766",
            "siglip2-b16-256-hf": "4f77be66a98c605f",
            "siglip2-b16-384": "224ef21ee02e8f15",
            "siglip2-l16-256": "a34ca2a6e047cfb2",
            "siglip2-so400m16-256": "a4a16d6a8609a879"
        }
    },
    "paper": {
        "eval": {
            "celebreid": "443ffea6cdd21dbb",
            "cuhk03-detected": "d865186f40a690d9",
            "dukemtmcreid": "d865186f40a690d9",
            "grid": "2dea7e96e467e8d9",
            "iustreid": "d865186f40a690d9",
            "last-test": "443ffea6cdd21dbb",
            "market1501": "d865186f40a690d9",
            "msmt17": "d865186f40a690d9",
            "pku": "d865186f40a690d9"
        },
        "eval_main": {
            "celebreid": "443ffea6cdd21dbb",
            "cuhk03-detected": "d865186f40a690d9",
            "dukemtmcreid": "d865186f40a690d9",
            "grid": "2dea7e96e467e8d9",
            "iustreid": "d865186f40a690d9",
            "last-test": "443ffea6cdd21dbb",
            "market1501": "d865186f40a690d9",
            "msmt17": "d865186f40a690d9",
            "pku": "d865186f40a690d9"
        },
        "fusions": {},
        "models": {
            "clip-vit-b16": "110df2ab2fd9fe31",
            "clip-vit-b32": "b3e26840a6c609ad",
            "clip-vit-l14": "d31dfdcef62ecef0",
            "clipreid-vit-b16-msmt17": "b908101366d0e544",
            "dinov2-b14": "974dd0b0ded0fa8f",
            "dinov2-l14": "86dbb1b3417e0c99",
            "osnet-x1_0-market": "a0463e1a72ab9381",
            "pe-core-l14-336": "5960402acc18a1e8",
            "pe-spatial-s16-512": "8fc199f4e338d334",
            "siglip2-b16-256": "5d574f99d62bd766",
            "siglip2-b16-384": "224ef21ee02e8f15"
        }
    },
    "smoke": {
        "eval": {
            "synth-a": "3d5d58b5351c0f02",
            "synth-b": "3d5d58b5351c0f02"
        },
        "eval_main": {
            "synth-a": "3d5d58b5351c0f02",
            "synth-b": "3d5d58b5351c0f02"
        },
        "fusions": {},
        "models": {
            "color-hist": "88de030465ade2b5",
            "osnet-x0_25-untrained": "964438cf5af25290"
        }
    },
    "text": {
        "eval": {
            "cuhk-pedes": "9e9c68791cd6dc35",
            "icfg-pedes": "9e9c68791cd6dc35",
            "rstpreid": "9e9c68791cd6dc35"
        },
        "eval_main": {
            "cuhk-pedes": "9e9c68791cd6dc35",
            "icfg-pedes": "9e9c68791cd6dc35",
            "rstpreid": "9e9c68791cd6dc35"
        },
        "fusions": {},
        "models": {
            "clip-vit-b16": "d2e9661ec5f1af19",
            "clip-vit-l14": "f4cebf633282576c",
            "pe-core-l14-336": "4f2d04396ef79f2f",
            "siglip2-b16-256": "ade1382a1e1cc5a3",
            "siglip2-b16-384": "fcff64a21e861e13"
        }
    },
    "text_smoke": {
        "eval": {
            "synth-a": "3825aafd7371ca2a",
            "synth-b": "3825aafd7371ca2a"
        },
        "eval_main": {
            "synth-a": "3825aafd7371ca2a",
            "synth-b": "3825aafd7371ca2a"
        },
        "fusions": {},
        "models": {
            "clip-tiny-untrained": "3fbb426aedb5cfe0",
            "color-hist": "88de030465ade2b5",
            "color-words": "d3fa6f47349a586b"
        }
    },
    "video": {
        "eval": {
            "dukemtmc-videoreid": "bb62eb2a1f874340",
            "ilidsvid": "345436971bb991dc",
            "mars": "bb62eb2a1f874340",
            "prid2011": "345436971bb991dc"
        },
        "eval_main": {
            "dukemtmc-videoreid": "d865186f40a690d9",
            "ilidsvid": "2dea7e96e467e8d9",
            "mars": "d865186f40a690d9",
            "prid2011": "2dea7e96e467e8d9"
        },
        "fusions": {},
        "models": {
            "clip-vit-b16": "110df2ab2fd9fe31",
            "clip-vit-b32": "b3e26840a6c609ad",
            "clip-vit-l14": "d31dfdcef62ecef0",
            "clipreid-vit-b16-msmt17": "b908101366d0e544",
            "dinov2-b14": "974dd0b0ded0fa8f",
            "dinov2-l14": "86dbb1b3417e0c99",
            "osnet-x1_0-market": "a0463e1a72ab9381",
            "pe-core-l14-336": "5960402acc18a1e8",
            "pe-spatial-s16-512": "8fc199f4e338d334",
            "siglip2-b16-256": "5d574f99d62bd766",
            "siglip2-b16-384": "224ef21ee02e8f15"
        }
    },
    "video_smoke": {
        "eval": {"synth-video": "3cb294065205b5e3"},
        "eval_main": {"synth-video": "3d5d58b5351c0f02"},
        "fusions": {},
        "models": {"color-hist": "88de030465ade2b5", "osnet-x0_25-untrained": "964438cf5af25290"}
    }
}

#: configs/datasets.yaml: name -> sha256 of the DatasetSpec as a dict, its protocol as its
#: hash_fields (no file reads it; it pins what the reader makes of each entry)
DATASETS = {
    "mars": "69d83d8ca6f882ac",
    "mars-official": "b551a8d5f858764e",
    "ilidsvid": "f9989a6a5ca23804",
    "prid2011": "1252571c7460020d",
    "dukemtmc-videoreid": "919b2326ae794232",
    "synth-video": "dd7d3ca8f456f277",
    "celebreid": "c6c8f67e69fd90fa",
    "celebreid-official": "7c8c7fa09ce5fe83",
    "cuhk-pedes": "6497466fec30fa61",
    "cuhk03-detected": "0e5450400f7ba4c9",
    "cuhk03-labeled": "8ca16813ed87d812",
    "deepchange": "1a3748dce1eb9402",
    "dukemtmcreid": "da6d11da0acc1460",
    "grid": "9508b953da887edf",
    "icfg-pedes": "6297ce321a9e56dd",
    "iustreid": "afa218a5caae9b0a",
    "last-test": "471c1b16b5db882c",
    "last-val": "7c4d35ad307adec1",
    "ltcc": "3337f29ed698d78d",
    "market1501": "09ac2d787df6f085",
    "msmt17": "c62174d15a9fc793",
    "pku": "60f9f8ed9d3a6691",
    "prcc": "df62d9113f4e4a82",
    "rstpreid": "f31252af156d9ee5",
    "synth-a": "ec1ef55f6aa1cd9a",
    "synth-b": "c6b152baab915dec",
    "synth-cc": "48c50e81bc48ff54",
    "vcclothes": "49f3bedc6a3f16a6"
}

#: configs/train/NAME.yaml: sha256 of TrainConfig.to_dict() without 'source' (the file's path)
TRAIN = {
    "clipreid_smoke_stage1": "c03de9d51ba1ce2a",
    "clipreid_smoke_stage2_textfrozen": "d913dc7e27213287",
    "clipreid_smoke_stage2_texttrained": "478c3a501bc4ad44",
    "clipreid_vit_b16_msmt17_stage1": "16d16aeabf44d969",
    "clipreid_vit_b16_msmt17_stage2_textfrozen": "6756cfd75d58f49e",
    "clipreid_vit_b16_msmt17_stage2_texttrained": "1f50a68ce15b2859",
    "osnet_smoke": "9a617d07a975dd70",
    "osnet_x1_0_market1501": "ed965ce21b4d88b1",
    "osnet_x1_0_msmt17": "b4cacfb914754311"
}



#: DatasetSpec fields added after the pins, and their defaults: an entry that leaves one at its
#: default reads as before (the pins hold the dicts as they were), one that sets it shows here.
DATASET_FIELDS_ADDED = {"embed_frames": "all", "distractors": None}


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def as_pinned(dataset: dict) -> dict:
    """A DatasetSpec's dict without the fields added since the pins, where they are defaults."""
    return {k: v for k, v in dataset.items() if DATASET_FIELDS_ADDED.get(k, object()) != v}


def test_every_catalog_model_keeps_its_spec_hash():
    catalog = load_model_catalog()
    assert {name: catalog[name].spec_hash() for name in MODELS} == MODELS


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_every_matrix_keeps_its_models_and_eval_hashes(name):
    matrix = load_matrix(name)
    assert {
        "models": {m.name: m.spec_hash() for m in matrix.models},
        "fusions": {f.name: f.as_model().spec_hash() for f in matrix.fusions},
        "eval": {d.name: eval_hash(d, matrix.eval, matrix.eval_variants) for d in matrix.datasets},
        "eval_main": {d.name: eval_hash(d, matrix.eval) for d in matrix.datasets},
    } == MATRICES[name]


def test_the_pins_cover_every_matrix_and_training_config():
    assert set(config_files(matrices_dir())) == set(MATRICES)
    assert set(config_files(train_configs_dir())) == set(TRAIN)


def _pinned(spec) -> dict:
    """A dataset entry's fields as the pins read them: its published statistics, which the
    catalog held when they were written, are what its adapter declares now
    (raybench.datasets.published_stats); its protocol as its hash_fields (the later keys, such
    as settings, only where an entry sets them); the fields added since, where they are defaults."""
    from raybench.datasets import published_stats

    fields = {**dataclasses.asdict(spec), "stats": dict(published_stats(spec) or {}),
              "protocol": spec.protocol.hash_fields()}
    return as_pinned(fields)


def test_every_dataset_entry_reads_as_before():
    catalog = load_dataset_catalog()
    assert {name: digest(_pinned(catalog[name])) for name in DATASETS} == DATASETS


@pytest.mark.parametrize("name", sorted(TRAIN))
def test_every_training_config_reads_as_before(name):
    config = load_train_config(name)
    fields = {**config.to_dict(), "dataset": _pinned(config.dataset)}
    fields.pop("source")
    assert digest(fields) == TRAIN[name]
