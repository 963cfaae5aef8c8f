"""CUHK03, new protocol (767 train / 700 test identities), labeled or detected boxes.

References: Li et al. DeepReID: Deep Filter Pairing Neural Network for Person
Re-identification. CVPR 2014 (the data); Zhong et al. Re-ranking Person Re-identification
with k-reciprocal Encoding. CVPR 2017 (the new protocol).
URL: https://www.ee.cuhk.edu.hk/~xgwang/CUHK_identification.html and
https://github.com/zhunzhong07/person-re-ranking/tree/master/evaluation/data/CUHK03

Published statistics (``PUBLISHED``, one per variant): 14,097 boxes of 1,467 identities from
5 camera pairs. Scored with the Market-1501 metric (not the classic single-shot CUHK03 one:
the study's defect 5). Box sizes vary: the adapter's ``crop`` is a round typical value.

Layout: cuhk03/cuhk03_release/cuhk-03.mat (MATLAB v7.3, i.e. HDF5) and
cuhk03/cuhk03_new_protocol_config_{labeled,detected}.mat (MATLAB v5). cuhk-03.mat holds,
per variant, 5 camera pairs, each a [persons x 10] cell of images (columns 1-5 from the
first view, 6-10 from the second, empty cells where a person has fewer). The images are
written once to PNG files in the cache, named as the config files name them:
<pair>_<person:03d>_<view>_<image:02d>.png. The config holds filelist, labels and 1-based
train_idx / query_idx / gallery_idx. camid is the view (0 or 1) within the pair, as in
torchreid: a person lives in one pair, so same-pid-same-camid still means same camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.common import absolute, load_mat_v5, locate, rows_to_manifest
from raybench.errors import DatasetError

LAYOUT = ("cuhk03/{cuhk03_release/cuhk-03.mat, cuhk03_new_protocol_config_labeled.mat, "
          "cuhk03_new_protocol_config_detected.mat}")
NAMES = ("cuhk03", "CUHK03")
VARIANTS = ("labeled", "detected")
CONFIG_KEYS = ("filelist", "labels", "train_idx", "query_idx", "gallery_idx")
SPLIT_KEYS = {"train": "train_idx", "query": "query_idx", "gallery": "gallery_idx"}
_PROTOCOL = "Zhong et al. CVPR 2017, new protocol"
PUBLISHED = tuple(
    Published({"train": {"images": train, "ids": 767}, "query": {"images": 1400, "ids": 700},
               "gallery": {"images": gallery, "ids": 700}},
              source=f"{_PROTOCOL} (cuhk03_new_protocol_config_{variant}.mat)", options={"variant": variant})
    for variant, train, gallery in (("labeled", 7368, 5328), ("detected", 7365, 5332))
)


def parse(root: Path, variant: str = "labeled") -> pa.Table:
    if variant not in VARIANTS:
        raise DatasetError(f"cuhk03: variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    base = locate(root, ["cuhk03_release"], NAMES, "cuhk03", LAYOUT)
    config = _find(base, f"cuhk03_new_protocol_config_{variant}.mat")
    split = _load_config(config)
    images = _images_dir(base, variant)
    rows = []
    for role, key in SPLIT_KEYS.items():
        rows.extend(_rows(split, key, role, images, config))
    return rows_to_manifest(rows, f"cuhk03-{variant}", LAYOUT)


def _find(base: Path, name: str) -> Path:
    for folder in (base, base / "cuhk03_release"):
        if (folder / name).is_file():
            return folder / name
    raise DatasetError(f"cuhk03: {name} not found in {base}. Expected layout: {LAYOUT}")


def _load_config(path: Path) -> dict:
    data = load_mat_v5(path, "cuhk03", LAYOUT)
    missing = [k for k in CONFIG_KEYS if k not in data]
    if missing:
        raise DatasetError(f"cuhk03: {path.name} has no key {missing[0]!r}; expected keys: {', '.join(CONFIG_KEYS)}")
    return data


def _rows(split: dict, key: str, role: str, images: Path, config: Path) -> list[dict]:
    names = [str(np.asarray(entry).ravel()[0]) for entry in split["filelist"].ravel()]
    labels = split["labels"].ravel()
    indices = split[key].ravel().astype(np.int64) - 1
    if len(labels) != len(names) or indices.size and (indices.min() < 0 or indices.max() >= len(names)):
        raise DatasetError(f"cuhk03: {config.name}: {key} points outside filelist ({len(names)} entries)")
    rows = []
    for index in indices:
        name = names[index]
        path = images / name
        if not path.is_file():
            raise DatasetError(f"cuhk03: {config.name} lists {name}, which cuhk-03.mat does not hold ({images})")
        camid = int(name.split("_")[2]) - 1
        rows.append({"path": absolute(path), "pid": int(labels[index]), "camid": camid, "split": role})
    return rows


def _images_dir(base: Path, variant: str) -> Path:
    """The PNGs of one variant: extracted once into the cache (or torchreid's own extraction,
    images_<variant>/ beside the config files, when cuhk-03.mat is gone)."""
    raw = base / "cuhk03_release" / "cuhk-03.mat"
    if not raw.is_file():
        extracted = base / f"images_{variant}"
        if extracted.is_dir():
            return extracted
        raise DatasetError(f"cuhk03: {raw} not found. Expected layout: {LAYOUT}")
    from raybench.datasets.cache import build_once, params_hash
    from raybench.paths import cache_dir

    stat = raw.stat()
    key = params_hash([absolute(raw), stat.st_size, stat.st_mtime_ns])
    return build_once(cache_dir() / "cuhk03" / f"images_{variant}-{key}", lambda out: extract(raw, variant, out))


def extract(raw: Path, variant: str, out: Path) -> int:
    """Write every image of ``variant`` in cuhk-03.mat to ``out`` as PNG; returns the count."""
    import h5py
    from PIL import Image

    try:
        mat = h5py.File(raw, "r")
    except OSError as exc:
        raise DatasetError(f"cuhk03: cannot read {raw} as MATLAB v7.3 / HDF5 ({exc})") from None
    count = 0
    with mat:
        if variant not in mat:
            raise DatasetError(f"cuhk03: {raw.name} has no key {variant!r}; expected keys: labeled, detected")
        for name, image in _walk(mat, variant, raw):
            Image.fromarray(image).save(out / name)
            count += 1
    if count == 0:
        raise DatasetError(f"cuhk03: {raw.name} holds no {variant} images")
    return count


RAW_SHAPE = ("per variant a row of references to the camera pairs, each a [10 x persons] array of "
             "references to [3 x W x H] uint8 images (a 1-D placeholder where a person has fewer)")


def _walk(mat, variant: str, raw: Path):
    """(PNG name, [H, W, 3] uint8 image) for every image of ``variant``; a file whose references
    lead elsewhere than RAW_SHAPE says so (the errors of writing the PNGs are not caught here)."""
    try:
        for pair, pair_ref in enumerate(mat[variant][0]):
            cells = mat[pair_ref][()].T  # MATLAB is column-major: [persons, 10] after .T
            for person in range(cells.shape[0]):
                for column, ref in enumerate(cells[person]):
                    image = mat[ref][()].T  # [H, W, 3]; an empty cell is a 1-D placeholder
                    if image.ndim < 3 or image.size == 0:
                        continue
                    if image.ndim != 3 or image.shape[2] != 3:
                        raise ValueError(f"an image of shape {image.shape}")
                    view = 1 if column < 5 else 2
                    name = f"{pair + 1}_{person + 1:03d}_{view}_{column + 1:02d}.png"
                    yield name, np.ascontiguousarray(image, dtype=np.uint8)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OSError) as exc:
        raise DatasetError(
            f"cuhk03: {raw.name}['{variant}'] is not laid out as in the release ({type(exc).__name__}: {exc}); "
            f"expected {RAW_SHAPE}. Expected layout: {LAYOUT}"
        ) from None


# -- a tiny copy in the real layout --------------------------------------------------------

TINY_PAIRS = [[4, 4, 2], [4, 3]]  # images per person, per camera pair: 5 persons in 2 pairs


def write_raw(path: Path, pairs: list[list[int]], with_keys=VARIANTS) -> None:
    """cuhk-03.mat as MATLAB v7.3 writes it: per variant a 1xP row of references to
    [10, persons] reference arrays, each to a [3, W, H] uint8 image or an empty placeholder."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as mat:
        counter = iter(range(10**6))

        def put(data):
            name = f"#refs#/{next(counter)}"
            mat.create_dataset(name, data=data)
            return mat[name].ref

        for variant in with_keys:
            top = np.empty((1, len(pairs)), dtype=h5py.ref_dtype)
            for pair, images_per_person in enumerate(pairs):
                cells = np.empty((10, len(images_per_person)), dtype=h5py.ref_dtype)
                for person, count in enumerate(images_per_person):
                    for column in range(10):
                        if column in _columns(count):
                            cells[column, person] = put(rng.integers(0, 255, (3, 8, 16), dtype=np.uint8))
                        else:
                            cells[column, person] = put(np.zeros(2, dtype=np.uint64))
                top[0, pair] = put(cells)
            mat.create_dataset(variant, data=top)
        sets = np.empty((1, 1), dtype=h5py.ref_dtype)
        sets[0, 0] = put(np.array([[1, 1]], dtype=np.float64).T)  # classic test split: pair 1, person 1
        mat.create_dataset("testsets", data=sets)


def _columns(count: int) -> list[int]:
    """Which of the 10 columns hold a person's ``count`` images: first views first, then second."""
    return [0, 5, 1, 6, 2, 7, 3, 8, 4, 9][:count]


def image_names(pairs: list[list[int]]) -> list[str]:
    """The PNG names of ``write_raw``'s images, as the config files name them."""
    names = []
    for pair, persons in enumerate(pairs):
        for person, count in enumerate(persons):
            for column in sorted(_columns(count)):
                names.append(f"{pair + 1}_{person + 1:03d}_{1 if column < 5 else 2}_{column + 1:02d}.png")
    return names


def write_config(path: Path, names: list[str], drop: str | None = None) -> dict:
    """cuhk03_new_protocol_config_*.mat (without key ``drop``): filelist, labels, 1-based
    train/query/gallery indices; persons 1-2 train, persons 3-5 test with one query per view.
    Returns the number of images per split."""
    from scipy.io import savemat

    labels = np.zeros(len(names))
    person_ids = {}
    for i, name in enumerate(names):
        person_ids.setdefault(name[:5], len(person_ids) + 1)
        labels[i] = person_ids[name[:5]]
    train = [i for i, lab in enumerate(labels) if lab <= 2]
    query, seen = [], set()
    for i, (name, lab) in enumerate(zip(names, labels)):
        view = name.split("_")[2]
        if lab > 2 and (lab, view) not in seen:
            seen.add((lab, view))
            query.append(i)
    gallery = [i for i, lab in enumerate(labels) if lab > 2 and i not in query]
    filelist = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        filelist[i, 0] = name
    data = {"filelist": filelist, "labels": labels[:, None], "train_idx": np.array(train)[:, None] + 1,
            "query_idx": np.array(query)[:, None] + 1, "gallery_idx": np.array(gallery)[:, None] + 1,
            "camId": np.array([int(n.split("_")[2]) for n in names])[:, None]}
    if drop:
        data.pop(drop)
    savemat(str(path), data)
    return {"train": len(train), "query": len(query), "gallery": len(gallery)}


def tiny_copy(folder: Path, variant: str = "labeled") -> TinyCopy:
    """Both variants' boxes and configs (the same here), ``variant`` read."""
    base = folder / "cuhk03"
    (base / "cuhk03_release").mkdir(parents=True)
    write_raw(base / "cuhk03_release" / "cuhk-03.mat", TINY_PAIRS)
    names = image_names(TINY_PAIRS)
    counts = {}
    for v in VARIANTS:
        counts = write_config(base / f"cuhk03_new_protocol_config_{v}.mat", names)
    # persons 3 (2 images: views 1, 2), 4 (4), 5 (3): 3 test ids, queries one per view
    splits = {"train": (counts["train"], 2, 2), "query": (counts["query"], 3, 2), "gallery": (counts["gallery"], 2, 2)}
    return TinyCopy(folder, {"variant": variant}, splits=splits,
                    rows={("query", "2_001_1_01.png"): (4, 0), ("gallery", "2_001_2_07.png"): (4, 1)})


def tiny_copy_detected(folder: Path) -> TinyCopy:
    return tiny_copy(folder, "detected")


ADAPTER = Adapter(parse=parse, layout=LAYOUT, published=PUBLISHED, crop=(256, 96),
                  tiny_copies=(tiny_copy, tiny_copy_detected))
