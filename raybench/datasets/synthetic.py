"""Synthetic persons in the Market-1501 layout: for tests, the demo and scale benchmarks.

No download, no licence, any size: `raybench datasets synth --out DIR --ids N --cams C
--images-per-id K --domain a --seed S` writes bounding_box_train/, query/ and
bounding_box_test/ of 128x64 JPEG crops named NNNN_cCsS_FFFFFF_00.jpg, plus synth.json with
the parameters. Output depends only on the parameters (not on the number of worker
processes). The catalog entries synth-a and synth-b are generated into the cache on first
use (raybench.datasets.cache.build_once: a temp folder renamed into place under a lock).

The split follows Market-1501: identities are split (seeded) into train and test; each
person appears in 2..C cameras; for a test person, one image in each of up to K/2 of its
cameras is a query and the rest are gallery images. ``distractors`` adds gallery images of
people seen once (pid 0) and ``junk`` adds background-only crops (pid -1, dropped by the
parser, as Market's junk is). What the images look like: raybench/datasets/synthdraw.py.

Captions: captions.json beside the images holds one caption per image of a person (not of
distractors or junk), written from the attributes drawn for that identity (synthcaption.py),
in the shape of the text-to-person datasets' JSON: [{"file_path": "query/0001_c1s1_...jpg",
"id": 1, "split": "query", "captions": ["a person in ..."]}]. The adapter's caption table
makes the captions of test images (query and gallery) the text queries, split ``query``, and
those of training images split ``train``: text-to-image retrieval ranks every test image.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from raybench.datasets import Adapter, TinyCopy
from raybench.datasets.common import MARKET_FOLDERS, market_style
from raybench.errors import DatasetError, SpecError, UnknownNameError

LAYOUT = "{bounding_box_train,query,bounding_box_test}/0001_c1s1_000000_00.jpg + synth.json + captions.json"
PATTERN = re.compile(r"^([-\d]+)_c(\d+)")
KINDS = {"person": 0, "distractor": 1, "junk": 2}
CHUNK = 256
#: Bump whenever the drawing changes what a seed produces: it is part of the cache folder's
#: name, so a cached copy drawn by older code is never mistaken for the current one.
DRAW_VERSION = 2
#: Bump whenever captions.json changes (it is part of the cache folder's name too).
CAPTIONS_VERSION = 1
CAPTIONS_FILE = "captions.json"


@dataclass(frozen=True)
class SynthConfig:
    ids: int = 50
    cams: int = 6
    images_per_id: int = 8
    domain: str = "a"
    seed: int = 0
    distractors: int = 0
    junk: int = 0
    height: int = 128
    width: int = 64
    train_fraction: float = 0.5

    def __post_init__(self):
        from raybench.datasets.synthdraw import DOMAINS

        if self.domain not in DOMAINS:
            raise UnknownNameError("synthetic domain", self.domain, DOMAINS)
        checks = [(self.ids >= 2, "ids must be at least 2"), (self.cams >= 2, "cams must be at least 2"),
                  (self.images_per_id >= 4, "images-per-id must be at least 4 (queries need gallery matches)"),
                  (self.distractors >= 0 and self.junk >= 0, "distractors and junk cannot be negative"),
                  (16 <= self.height <= 1024 and 8 <= self.width <= 512, "height/width out of range"),
                  (0 <= self.train_fraction < 1, "train_fraction must be in [0, 1)")]
        for ok, message in checks:
            if not ok:
                raise SpecError(f"synthetic dataset: {message}")

    @property
    def total(self) -> int:
        return self.ids * self.images_per_id + self.distractors + self.junk


def plan(cfg: SynthConfig) -> dict[str, np.ndarray]:
    """One row per image: kind, key (who), index (which of their images), pid, cam, split."""
    from raybench.datasets.synthdraw import DOMAINS

    code = DOMAINS[cfg.domain].code
    pids = np.arange(1, cfg.ids + 1)
    test = set(np.random.default_rng([cfg.seed, code, 5]).permutation(pids)[round(cfg.ids * cfg.train_fraction):])
    rows = []
    for pid in pids.tolist():
        rng = np.random.default_rng([cfg.seed, code, 6, pid])
        seen_by = rng.permutation(cfg.cams)[: rng.integers(2, cfg.cams + 1)]
        cams = seen_by[np.arange(cfg.images_per_id) % len(seen_by)]
        query_cams = set(seen_by[: cfg.images_per_id // 2].tolist()) if pid in test else set()
        for index, cam in enumerate(cams.tolist()):
            split = "train" if pid not in test else "query" if cam in query_cams else "gallery"
            if split == "query":
                query_cams.remove(cam)  # one query per camera: the camera's first image
            rows.append((KINDS["person"], pid, index, pid, cam, split))
    rng = np.random.default_rng([cfg.seed, code, 7])
    for j, cam in enumerate(rng.integers(0, cfg.cams, cfg.distractors).tolist()):
        rows.append((KINDS["distractor"], 1_000_000 + j, 0, 0, cam, "gallery"))
    for j, cam in enumerate(rng.integers(0, cfg.cams, cfg.junk).tolist()):
        rows.append((KINDS["junk"], 2_000_000 + j, 0, -1, cam, "gallery"))
    columns = list(zip(*rows))
    names = ("kind", "key", "index", "pid", "cam", "split")
    return {name: np.asarray(col) for name, col in zip(names, columns)}


def file_name(pid: int, cam: int, frame: int) -> str:
    """Market-1501 naming: 0001_c1s1_000151_00.jpg (junk: -1_c1s1_...)."""
    person = "-1" if pid < 0 else f"{pid:04d}"
    return f"{person}_c{cam + 1}s{1 + frame % 6}_{frame:06d}_00.jpg"


def render_rows(cfg: SynthConfig, rows: dict[str, np.ndarray]) -> np.ndarray:
    """The images of some planned rows, uint8 [N, H, W, 3]."""
    from raybench.datasets import synthdraw as draw

    domain = draw.DOMAINS[cfg.domain]
    idents, poses, cameras = {}, {}, {}
    ident_rows, pose_rows, cam_index = [], [], []
    for kind, key, index, cam in zip(rows["kind"].tolist(), rows["key"].tolist(), rows["index"].tolist(),
                                     rows["cam"].tolist()):
        if key not in idents:
            idents[key] = draw.identity_params(cfg.seed, domain, key)
            count = cfg.images_per_id if kind == KINDS["person"] else 1
            poses[key] = draw.pose_params(cfg.seed, domain, key, count)
        if cam not in cameras:
            cameras[cam] = (len(cameras), draw.camera_params(cfg.seed, domain, cam))
        ident_rows.append(idents[key])
        pose_rows.append({k: v[index] for k, v in poses[key].items()})
        cam_index.append(cameras[cam][0])
    person = rows["kind"] != KINDS["junk"]
    bank = draw.noise_bank(cfg.seed, domain, cfg.height, cfg.width)
    return draw.render(draw.stack(ident_rows), [params for _, params in cameras.values()], np.asarray(cam_index),
                       draw.stack(pose_rows), cfg.height, cfg.width, person, bank)


def _write_chunk(args) -> int:
    cfg, rows, out = args
    from PIL import Image

    from raybench.datasets import synthdraw as draw

    images = render_rows(cfg, rows)
    domain = draw.DOMAINS[cfg.domain]
    quality = {cam: int(draw.camera_params(cfg.seed, domain, cam)["quality"]) for cam in set(rows["cam"].tolist())}
    for image, pid, cam, split, frame in zip(images, rows["pid"].tolist(), rows["cam"].tolist(),
                                             rows["split"].tolist(), rows["frame"].tolist()):
        path = Path(out) / MARKET_FOLDERS[split] / file_name(pid, cam, frame)
        Image.fromarray(image).save(path, quality=quality[cam])
    return len(images)


def write_dataset(cfg: SynthConfig, out: Path, workers: int | None = None) -> dict:
    """Render and write the whole dataset into ``out`` (an existing, empty folder)."""
    rows = plan(cfg)
    rows["frame"] = np.arange(len(rows["kind"]))
    for folder in MARKET_FOLDERS.values():
        (out / folder).mkdir(parents=True, exist_ok=True)
    chunks = [(cfg, {k: v[i:i + CHUNK] for k, v in rows.items()}, str(out))
              for i in range(0, len(rows["kind"]), CHUNK)]
    workers = workers or (1 if cfg.total < 4 * CHUNK else min(os.cpu_count() or 1, 8))
    if workers <= 1:
        written = sum(map(_write_chunk, chunks))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the parent may hold Ray or torch state that a fork would copy badly
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            written = sum(pool.map(_write_chunk, chunks))
    summary = {"params": dataclasses.asdict(cfg), "draw_version": DRAW_VERSION, "images": written,
               "splits": {s: int((rows["split"] == s).sum()) for s in MARKET_FOLDERS}}
    (out / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / CAPTIONS_FILE).write_text(json.dumps(caption_records(cfg, rows), indent=1) + "\n")
    return summary


def caption_records(cfg: SynthConfig, rows: dict[str, np.ndarray]) -> list[dict]:
    """One record per image of a person: its file (relative to the root), pid, split, caption."""
    from raybench.datasets import synthcaption, synthdraw

    domain = synthdraw.DOMAINS[cfg.domain]
    idents: dict[int, dict] = {}
    records = []
    for kind, key, pid, cam, split, frame in zip(*(rows[k].tolist() for k in ("kind", "key", "pid", "cam", "split", "frame"))):
        if kind != KINDS["person"]:
            continue
        ident = idents.setdefault(key, synthdraw.identity_params(cfg.seed, domain, key))
        caption = synthcaption.describe(ident, synthcaption.caption_rng(cfg.seed, domain.code, frame))
        records.append({"file_path": f"{MARKET_FOLDERS[split]}/{file_name(pid, cam, frame)}", "id": pid, "split": split,
                        "captions": [caption]})
    return records


def generate(out: Path, workers: int | None = None, **params) -> Path:
    """Write a dataset to ``out`` atomically (``out`` must not exist, or be empty)."""
    from raybench.datasets.cache import build_once

    cfg = config(params)
    out = Path(out).expanduser()
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise DatasetError(f"synthetic dataset: {out} exists and is not an empty folder; choose a new --out")
        out.rmdir()
    return build_once(out, lambda tmp: write_dataset(cfg, tmp, workers))


def config(params: dict) -> SynthConfig:
    try:
        return SynthConfig(**params)
    except TypeError as exc:
        fields = ", ".join(f.name for f in dataclasses.fields(SynthConfig))
        raise SpecError(f"synthetic dataset: {exc}; allowed options: {fields}") from None


def materialize(spec) -> Path:
    """The cache folder of a catalog entry such as synth-a, generated on first use."""
    from raybench.datasets.cache import build_once, params_hash
    from raybench.paths import cache_dir

    cfg = config(dict(spec.options))
    key = params_hash({**dataclasses.asdict(cfg), "draw_version": DRAW_VERSION, "captions_version": CAPTIONS_VERSION})
    final = cache_dir() / "synth" / f"{spec.name}-{key}"
    return build_once(final, lambda tmp: write_dataset(cfg, tmp))


def parse(root: Path, **params) -> pa.Table:
    """A generated dataset; with ``params`` (a catalog entry's options), synth.json must agree."""
    if params:
        _check_params(Path(root), config(params))
    return market_style(root, dataset="synthetic", layout=LAYOUT, names=(), pattern=PATTERN,
                        example="0001_c1s1_000000_00.jpg")


def captions(root: Path, **params) -> pa.Table:
    """The caption table of a generated dataset (see the module docstring)."""
    from raybench.datasets.common import absolute, read_text
    from raybench.datasets.manifest import make_captions

    if params:
        _check_params(Path(root), config(params))
    path = Path(root) / CAPTIONS_FILE
    if not path.is_file():
        raise DatasetError(f"synthetic dataset at {root} has no {CAPTIONS_FILE} (generated by an older raybench): "
                           f"generate it again into a new folder")
    return make_captions({"caption": caption, "pid": r["id"], "path": absolute(Path(root) / r["file_path"]),
                          "split": "train" if r["split"] == "train" else "query"}
                         for r in json.loads(read_text(path, "synthetic", LAYOUT)) for caption in r["captions"])


def _check_params(root: Path, cfg: SynthConfig) -> None:
    meta = root / "synth.json"
    if not meta.is_file():
        return
    written = json.loads(meta.read_text()).get("params", {})
    expected = dataclasses.asdict(cfg)
    different = sorted(k for k in expected if written.get(k) != expected[k])
    if different:
        key = different[0]
        raise DatasetError(f"synthetic dataset at {root} was generated with {key}={written.get(key)!r}, "
                           f"the spec asks for {key}={expected[key]!r}")


def tiny_copy(folder: Path) -> TinyCopy:
    """A small generated copy (its counts are the generator's, not fixed here)."""
    params = {"ids": 6, "cams": 3, "images_per_id": 4, "domain": "b", "seed": 5, "distractors": 2, "junk": 3}
    generate(folder / "synth", workers=1, **params)
    return TinyCopy(folder / "synth", params)


ADAPTER = Adapter(parse=parse, layout=LAYOUT, synthesize=materialize, captions=captions, tiny_copies=(tiny_copy,),
                  naming=PATTERN)
