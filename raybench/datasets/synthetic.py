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

Clothes changes (``outfits`` > 1, the catalog's synth-cc): each test and train person owns
2..outfits outfits; body, skin and hair stay the person's (synthdraw.identity_params) while
the garments, their colours and patterns and the accessories are the outfit's
(synthdraw.outfit_params; outfit 1 is the identity's own, so ``outfits: 1`` draws exactly
what it always drew). A person's images go round its cameras in outfit 1, then round them
again in outfit 2, and so on, so each outfit is seen by several cameras; the queries are the
first image of each (camera, outfit) pair, as LTCC picks one query per camera and outfit.
Such a dataset is written in LTCC's layout ({train,query,test}/001_2_c3_000042.png:
pid, outfit, camera, frame) and read by LTCC's adapter, clothes column included.

Captions: captions.json beside the images holds one caption per image of a person (not of
distractors or junk), written from the attributes drawn for that identity (synthcaption.py;
with outfits, from what the person wears in that image),
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
from raybench.datasets.ltcc import FOLDERS as LTCC_FOLDERS
from raybench.errors import DatasetError, SpecError, UnknownNameError

LAYOUT = ("{bounding_box_train,query,bounding_box_test}/0001_c1s1_000000_00.jpg (with outfits: "
          "{train,query,test}/001_1_c1_000000.png) + synth.json + captions.json")
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
    outfits: int = 1  # > 1: each person owns 2..outfits outfits (clothes changes, LTCC's layout)

    def __post_init__(self):
        check_config("synthetic dataset", self, [
            (self.cams >= 2, "cams must be at least 2"),
            (self.images_per_id >= 4, "images-per-id must be at least 4 (queries need gallery matches)"),
            (self.outfits >= 1, "outfits must be at least 1"),
            (self.outfits == 1 or self.junk == 0, "junk needs outfits 1 (LTCC's layout has no junk images)")])

    @property
    def total(self) -> int:
        return self.ids * self.images_per_id + self.distractors + self.junk

    @property
    def folders(self) -> dict[str, str]:
        """split -> folder: Market-1501's, or LTCC's for a clothes-changing dataset."""
        return dict(LTCC_FOLDERS) if self.outfits > 1 else dict(MARKET_FOLDERS)

    def file_name(self, pid: int, cam: int, frame: int, outfit: int = 0) -> str:
        """Market-1501's naming, or LTCC's with outfits (001_2_c3_000042.png)."""
        if self.outfits > 1:
            return f"{max(pid, 0):03d}_{outfit + 1}_c{cam + 1}_{frame:06d}.png"
        return file_name(pid, cam, frame)


def check_config(what: str, cfg, checks: list[tuple[bool, str]]) -> None:
    """The rules of a synthetic config (this one, or synthvideo's VideoConfig): a known domain,
    the fields every config has, then ``checks`` ((holds, why not) pairs); a SpecError says
    which failed."""
    from raybench.datasets.synthdraw import DOMAINS

    if cfg.domain not in DOMAINS:
        raise UnknownNameError("synthetic domain", cfg.domain, DOMAINS)
    common = [(cfg.ids >= 2, "ids must be at least 2"),
              (cfg.distractors >= 0 and cfg.junk >= 0, "distractors and junk cannot be negative"),
              (16 <= cfg.height <= 1024 and 8 <= cfg.width <= 512, "height/width out of range"),
              (0 <= cfg.train_fraction < 1, "train_fraction must be in [0, 1)")]
    for ok, message in common + checks:
        if not ok:
            raise SpecError(f"{what}: {message}")


def plan(cfg: SynthConfig) -> dict[str, np.ndarray]:
    """One row per image: kind, key (who), index (which of their images), pid, cam, split,
    outfit (0 for everyone without outfits)."""
    from raybench.datasets.synthdraw import DOMAINS

    code = DOMAINS[cfg.domain].code
    pids = np.arange(1, cfg.ids + 1)
    test = set(np.random.default_rng([cfg.seed, code, 5]).permutation(pids)[round(cfg.ids * cfg.train_fraction):])
    rows = []
    for pid in pids.tolist():
        rng = np.random.default_rng([cfg.seed, code, 6, pid])
        seen_by = rng.permutation(cfg.cams)[: rng.integers(2, cfg.cams + 1)]
        index = np.arange(cfg.images_per_id)
        cams = seen_by[index % len(seen_by)]
        # round the cameras once per outfit (a stream of its own: outfits 1 draws what it always drew)
        owned = 1 if cfg.outfits == 1 else int(np.random.default_rng([cfg.seed, code, 9, pid]).integers(2, cfg.outfits + 1))
        outfits = (index // len(seen_by)) % owned
        pairs = list(dict.fromkeys(zip(cams.tolist(), outfits.tolist())))
        query_keys = set(pairs[: cfg.images_per_id // 2]) if pid in test else set()
        for i, (cam, outfit) in enumerate(zip(cams.tolist(), outfits.tolist())):
            split = "train" if pid not in test else "query" if (cam, outfit) in query_keys else "gallery"
            if split == "query":
                query_keys.remove((cam, outfit))  # one query per camera and outfit: the pair's first image
            rows.append((KINDS["person"], pid, i, pid, cam, split, outfit))
    rng = np.random.default_rng([cfg.seed, code, 7])
    for j, cam in enumerate(rng.integers(0, cfg.cams, cfg.distractors).tolist()):
        rows.append((KINDS["distractor"], 1_000_000 + j, 0, 0, cam, "gallery", 0))
    for j, cam in enumerate(rng.integers(0, cfg.cams, cfg.junk).tolist()):
        rows.append((KINDS["junk"], 2_000_000 + j, 0, -1, cam, "gallery", 0))
    columns = list(zip(*rows))
    names = ("kind", "key", "index", "pid", "cam", "split", "outfit")
    return {name: np.asarray(col) for name, col in zip(names, columns)}


def file_name(pid: int, cam: int, frame: int) -> str:
    """Market-1501 naming: 0001_c1s1_000151_00.jpg (junk: -1_c1s1_...)."""
    person = "-1" if pid < 0 else f"{pid:04d}"
    return f"{person}_c{cam + 1}s{1 + frame % 6}_{frame:06d}_00.jpg"


def render_rows(cfg: SynthConfig, rows: dict[str, np.ndarray]) -> np.ndarray:
    """The images of some planned rows, uint8 [N, H, W, 3]."""
    from raybench.datasets import synthdraw as draw

    domain = draw.DOMAINS[cfg.domain]
    poses, pose_rows = {}, []
    for kind, key, index in zip(rows["kind"].tolist(), rows["key"].tolist(), rows["index"].tolist()):
        if key not in poses:
            count = cfg.images_per_id if kind == KINDS["person"] else 1
            poses[key] = draw.pose_params(cfg.seed, domain, key, count)
        pose_rows.append({k: v[index] for k, v in poses[key].items()})
    return render_people(cfg, rows["key"], rows["cam"], pose_rows, rows["kind"] != KINDS["junk"], rows["outfit"])


def render_people(cfg, keys: np.ndarray, cams: np.ndarray, pose_rows: list[dict], person: np.ndarray,
                  outfits: np.ndarray | None = None) -> np.ndarray:
    """Crops of the identities ``keys`` in cameras ``cams``, each in its pose (a dict of
    synthdraw.pose_params' keys, one value each) and outfit (``outfits``; None: each person's
    own, outfit 0); ``person``: which crops show a person (junk is background only). ``cfg``:
    any config with seed, domain, height and width. uint8 [N, H, W, 3]."""
    from raybench.datasets import synthdraw as draw

    domain = draw.DOMAINS[cfg.domain]
    outfits = np.zeros(len(keys), int) if outfits is None else outfits
    idents, cameras, ident_rows, cam_index = {}, {}, [], []
    for key, cam, outfit in zip(np.asarray(keys).tolist(), np.asarray(cams).tolist(), np.asarray(outfits).tolist()):
        if (key, outfit) not in idents:
            idents[key, outfit] = draw.dressed(cfg.seed, domain, key, outfit)
        if cam not in cameras:
            cameras[cam] = (len(cameras), draw.camera_params(cfg.seed, domain, cam))
        ident_rows.append(idents[key, outfit])
        cam_index.append(cameras[cam][0])
    bank = draw.noise_bank(cfg.seed, domain, cfg.height, cfg.width)
    return draw.render(draw.stack(ident_rows), [params for _, params in cameras.values()], np.asarray(cam_index),
                       draw.stack(pose_rows), cfg.height, cfg.width, np.asarray(person), bank)


def _write_chunk(args) -> int:
    cfg, rows, out = args
    from PIL import Image

    from raybench.datasets import synthdraw as draw

    images = render_rows(cfg, rows)
    domain = draw.DOMAINS[cfg.domain]
    quality = {cam: int(draw.camera_params(cfg.seed, domain, cam)["quality"]) for cam in set(rows["cam"].tolist())}
    for image, pid, cam, split, frame, outfit in zip(images, *(rows[k].tolist() for k in
                                                               ("pid", "cam", "split", "frame", "outfit"))):
        path = Path(out) / cfg.folders[split] / cfg.file_name(pid, cam, frame, outfit)
        Image.fromarray(image).save(path, quality=quality[cam])
    return len(images)


def write_dataset(cfg: SynthConfig, out: Path, workers: int | None = None) -> dict:
    """Render and write the whole dataset into ``out`` (an existing, empty folder)."""
    rows = plan(cfg)
    rows["frame"] = np.arange(len(rows["kind"]))
    for folder in cfg.folders.values():
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
    summary = {"params": _params(cfg), "draw_version": DRAW_VERSION, "images": written,
               "splits": {s: int((rows["split"] == s).sum()) for s in cfg.folders}}
    (out / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / CAPTIONS_FILE).write_text(json.dumps(caption_records(cfg, rows), indent=1) + "\n")
    return summary


def caption_records(cfg: SynthConfig, rows: dict[str, np.ndarray]) -> list[dict]:
    """One record per image of a person: its file (relative to the root), pid, split, caption."""
    from raybench.datasets import synthcaption, synthdraw

    domain = synthdraw.DOMAINS[cfg.domain]
    idents: dict[tuple[int, int], dict] = {}
    records = []
    for kind, key, pid, cam, split, frame, outfit in zip(*(rows[k].tolist() for k in
                                                          ("kind", "key", "pid", "cam", "split", "frame", "outfit"))):
        if kind != KINDS["person"]:
            continue
        if (key, outfit) not in idents:
            idents[key, outfit] = synthdraw.dressed(cfg.seed, domain, key, outfit)
        caption = synthcaption.describe(idents[key, outfit], synthcaption.caption_rng(cfg.seed, domain.code, frame))
        records.append({"file_path": f"{cfg.folders[split]}/{cfg.file_name(pid, cam, frame, outfit)}", "id": pid,
                        "split": split, "captions": [caption]})
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


def config(params: dict, cls: type = SynthConfig, what: str = "synthetic dataset"):
    """A synthetic config (``cls``) from a catalog entry's options; an unknown option says which exist."""
    try:
        return cls(**params)
    except TypeError as exc:
        fields = ", ".join(f.name for f in dataclasses.fields(cls))
        raise SpecError(f"{what}: {exc}; allowed options: {fields}") from None


def materialize(spec) -> Path:
    """The cache folder of a catalog entry such as synth-a, generated on first use."""
    cfg = config(dict(spec.options))
    return cached(spec, cfg, {"draw_version": DRAW_VERSION, "captions_version": CAPTIONS_VERSION}, write_dataset,
                  _params(cfg))


def cached(spec, cfg, versions: dict, write, params: dict | None = None) -> Path:
    """The cache folder of a generated catalog entry: named after the entry and a hash of its
    config (``params``: the config as its generator states it, default every field) and the
    generator's ``versions``, written by ``write(cfg, folder)`` on first use."""
    from raybench.datasets.cache import build_once, params_hash
    from raybench.paths import cache_dir

    key = params_hash({**(dataclasses.asdict(cfg) if params is None else params), **versions})
    return build_once(cache_dir() / "synth" / f"{spec.name}-{key}", lambda tmp: write(cfg, tmp))


def _params(cfg: SynthConfig) -> dict:
    """The parameters as synth.json and the cache key state them: ``outfits`` only where it is
    set, so every dataset generated before outfits existed keeps its folder and its synth.json."""
    params = dataclasses.asdict(cfg)
    if params["outfits"] == 1:
        params.pop("outfits")
    return params


def parse(root: Path, **params) -> pa.Table:
    """A generated dataset; with ``params`` (a catalog entry's options), synth.json must agree.
    A dataset with outfits is in LTCC's layout and parsed by LTCC's adapter (clothes column)."""
    cfg = config(params) if params else config(_written_params(Path(root)))
    if params:
        check_written(Path(root), cfg)
    if cfg.outfits > 1:
        from raybench.datasets import ltcc

        return ltcc.parse(root)
    return market_style(root, dataset="synthetic", layout=LAYOUT, names=(), pattern=PATTERN,
                        example="0001_c1s1_000000_00.jpg")


def _written_params(root: Path) -> dict:
    meta = root / "synth.json"
    return json.loads(meta.read_text()).get("params", {}) if meta.is_file() else {}


def captions(root: Path, **params) -> pa.Table:
    """The caption table of a generated dataset (see the module docstring)."""
    from raybench.datasets.common import absolute, read_text
    from raybench.datasets.manifest import make_captions

    if params:
        check_written(Path(root), config(params))
    path = Path(root) / CAPTIONS_FILE
    if not path.is_file():
        raise DatasetError(f"synthetic dataset at {root} has no {CAPTIONS_FILE} (generated by an older raybench): "
                           f"generate it again into a new folder")
    return make_captions({"caption": caption, "pid": r["id"], "path": absolute(Path(root) / r["file_path"]),
                          "split": "train" if r["split"] == "train" else "query"}
                         for r in json.loads(read_text(path, "synthetic", LAYOUT)) for caption in r["captions"])


def check_written(root: Path, cfg, what: str = "synthetic dataset") -> None:
    """A generated copy's synth.json, where there is one, must hold ``cfg``'s parameters (a
    parameter it does not state, written before the parameter existed, had its default)."""
    meta = root / "synth.json"
    if not meta.is_file():
        return
    defaults = {f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
    written = {**defaults, **json.loads(meta.read_text()).get("params", {})}
    expected = dataclasses.asdict(cfg)
    different = sorted(k for k in expected if written.get(k) != expected[k])
    if different:
        key = different[0]
        raise DatasetError(f"{what} at {root} was generated with {key}={written.get(key)!r}, "
                           f"the spec asks for {key}={expected[key]!r}")


def tiny_copy(folder: Path) -> TinyCopy:
    """A small generated copy (its counts are the generator's, not fixed here)."""
    params = {"ids": 6, "cams": 3, "images_per_id": 4, "domain": "b", "seed": 5, "distractors": 2, "junk": 3}
    generate(folder / "synth", workers=1, **params)
    return TinyCopy(folder / "synth", params)


def tiny_copy_outfits(folder: Path) -> TinyCopy:
    """A small clothes-changing copy, in LTCC's layout."""
    params = {"ids": 4, "cams": 3, "images_per_id": 6, "domain": "a", "seed": 2, "outfits": 3}
    generate(folder / "synth-cc", workers=1, **params)
    return TinyCopy(folder / "synth-cc", params)


ADAPTER = Adapter(parse=parse, layout=LAYOUT, synthesize=materialize, captions=captions,
                  tiny_copies=(tiny_copy, tiny_copy_outfits), naming=PATTERN)
