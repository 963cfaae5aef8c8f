"""The peers' reference code, loaded as it ships.

torchreid's metric files (``reid/metrics/rank.py``, ``reid/metrics/distance.py``,
``reid/utils/rerank.py``) depend on numpy and torch only, but ``import torchreid`` first runs the
package's ``__init__``, which imports its whole data and model zoo (torchvision datasets, cv2,
tensorboard...): seconds on a quiet machine, over a minute on a busy one. Loading the files
directly gives the very same functions without that cost, for tests and benchmarks.

``rank.py`` tries ``from torchreid.reid.metrics.rank_cylib.rank_cy import evaluate_cy`` first,
which would run that package ``__init__`` anyway; the pip wheel has no such extension, so while
the file loads, that one name is marked absent (``sys.modules[name] = None``) and the import
fails at once. Callers pass ``use_cython=False``: the Python path is the reference.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def torchreid_module(relpath: str) -> ModuleType:
    """One of torchreid's files, e.g. ``"reid/metrics/rank.py"``, as a module (cached)."""
    name = "raybench_peer_torchreid_" + relpath.replace("/", "_").removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("torchreid")
    if spec is None or spec.origin is None:
        raise ImportError("torchreid is not installed (pip install torchreid)")
    path = Path(spec.origin).parent / relpath
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    absent = "torchreid.reid.metrics.rank_cylib.rank_cy"
    blocked = absent not in sys.modules
    if blocked:
        sys.modules[absent] = None
    try:
        module_spec.loader.exec_module(module)
    finally:
        if blocked:
            del sys.modules[absent]
    return module
