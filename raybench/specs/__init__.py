"""Frozen specs for models, datasets, matrices and their eval blocks, read from flat YAML.

A spec is data: it names registry keys and values, never code. Each spec is a dataclass whose
fields declare their file keys (schema.key: default, choices, checks), and one reader
(schema.read) turns YAML into it, so a new key is one field and a typo in a matrix is a
one-line error naming the file, the key and the allowed values. This package is the schema
only (it imports nothing of raybench but its errors): finding config files, reading the
catalogs and resolving a matrix's names is raybench.catalog's job; models defined by other
models (``trained:<run>``, ``loader: interpolate``) are raybench.derived's.

By concept: schema.py (the reader), model.py, dataset.py, evaluation.py (eval block and
variants), matrix.py (matrix and fusions), files.py (YAML files and catalogs).
"""

from __future__ import annotations

from raybench.specs.dataset import CLOTHES_RULES, SETTING_RULES, DatasetSpec, Protocol, Setting, parse_dataset
from raybench.specs.evaluation import (
    AQE_DEFAULTS,
    AQE_FIELDS,
    DISTANCES,
    POOLING_DEFAULTS,
    POOLS,
    RESERVED_VARIANT_NAMES,
    VARIANT_NAME,
    EvalSpec,
    EvalVariant,
    frames_count,
    parse_eval,
    parse_eval_variants,
)
from raybench.specs.files import load_yaml, parse_entries
from raybench.specs.matrix import BAD_IMAGE_POLICIES, FUSION, FusionSpec, MatrixSpec, parse_fusion
from raybench.specs.model import (
    CROP_OFFSETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATE,
    INTERPOLATIONS,
    PARADIGMS,
    POOLINGS,
    PRECISIONS,
    RESIZE_MODES,
    ModelSpec,
    Preprocess,
    parse_model,
    parse_preprocess,
)
from raybench.specs.schema import Fields

__all__ = [
    "AQE_DEFAULTS", "AQE_FIELDS", "BAD_IMAGE_POLICIES", "CLOTHES_RULES", "CROP_OFFSETS", "DISTANCES", "FUSION",
    "IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATE", "INTERPOLATIONS", "PARADIGMS", "POOLING_DEFAULTS", "POOLINGS", "POOLS",
    "PRECISIONS", "RESERVED_VARIANT_NAMES", "RESIZE_MODES", "SETTING_RULES", "VARIANT_NAME", "DatasetSpec", "EvalSpec",
    "EvalVariant", "Fields", "FusionSpec", "MatrixSpec", "ModelSpec", "Preprocess", "Protocol", "Setting", "frames_count",
    "load_yaml", "parse_dataset", "parse_entries", "parse_eval",
    "parse_eval_variants", "parse_fusion", "parse_model", "parse_preprocess",
]
