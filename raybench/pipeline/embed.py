"""Ray Data stages: manifest rows -> pixels (CPU tasks) -> embeddings (an actor pool).

One stream per model, over the images of all its pending datasets, so the model is loaded once
per actor (in the actor's ``__init__``, never shipped from the driver: ray issue #34121):

    work blocks, in cell order: DECODE_ROWS image paths, or one pixel-cache file
      -> map_batches(load_block)              CPU tasks: read bytes, decode, resize per Preprocess
      -> map_batches(EmbedWorker_<run>_<model>, pool)  actors: the model's normalisation and forward,
                                              then each batch's embeddings written as Parquet parts (parts.py)
      -> the driver, which files the rows into cells (collect.py) and commits each finished cell

Captions travel the same stream, so a model with a text tower embeds a caption dataset's
text queries in the actors that hold it (loaded once): after a cell's image blocks come its
caption blocks (``_caption_blocks``: the ``caption`` column set, no path), which the decode
stage passes through with blank pixels, and ``EmbedWorker`` sends to ``embed_text``; the
``text`` column tells the driver which rows are captions (``row`` then indexes the cell's
captions). Blank pixels keep one batch format through the stream (a caption row costs the
model's H x W x 3 bytes of zeros in flight, never a forward pass).

Ray Data streams blocks through these operators with backpressure, so memory stays bounded by
a few blocks per operator, whatever the dataset's size; decoding overlaps the forward passes.
Unreadable images never fail a task: ``decode_batch`` returns zeros and names the path in the
``image_error`` column, and the cell decides (``on_bad_image``). An actor that dies is
restarted and its batch retried (Ray Data's defaults for actor pools).

Decoding once per (dataset, pixel_key), not once per model: the pixels a model sees depend only
on its Preprocess geometry (size, interpolation, resize mode; ``Preprocess.pixel_key``), mean
and std are applied inside the embedder. When two or more pending models of a run share a
dataset's pixel_key, ``write_pixel_cache`` decodes that dataset once into
``cache/pixels/<dataset>/<pixel_key>/`` of the run directory (Parquet of uint8 arrays,
committed with a _SUCCESS marker carrying the manifest hash), and every model with that
geometry, in this run or a later one, streams those pixels instead of decoding again (the
work blocks of ``pixel_stream`` then name cache files instead of image paths). A cache in
which some images could not be read serves only the run that wrote it: a later run decodes
again, so an image fixed or restored in between is read. A model alone
with its geometry decodes directly: writing and reading back a cache would cost more than the
one decode it saves. Person crops are small JPEGs, so on object storage the cache trades CPU
for bytes; ``--no-pixel-cache`` turns it off.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from raybench.pipeline.failure import BATCH, Failure, error_text, load_failure
from raybench.pipeline.parts import WRITES_WORKERS
from raybench.specs import ModelSpec, Preprocess

#: Rows per decode task: small enough to spread over every CPU and keep blocks a few MB.
DECODE_ROWS = 64
WORKER_MEMORY = 300 * 2**20


@dataclass(frozen=True)
class Pool:
    """The embedding actor pool: size, resources of each actor, and who writes the embeddings."""

    actors: int = 1
    gpus: float = 0  # 1 per actor where the cluster has GPUs
    cpus: float = 1
    threads: int | None = None  # torch intra-op threads of a CPU actor (None: Ray's default)
    writes: str = WRITES_WORKERS  # or WRITES_DRIVER: who writes the embeddings (parts.py)

    @property
    def device(self) -> str:
        return "cuda" if self.gpus else "cpu"


@dataclass(frozen=True)
class Source:
    """One cell's images as the stream sees them: decode ``paths``, or read a pixel cache."""

    cell: int
    paths: tuple[str, ...]
    cache_files: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()  # text queries to embed after the images (a text cell)


def _describe(exc: BaseException, path: str) -> str:
    from raybench.errors import ImageError

    if isinstance(exc, ImageError):
        return str(exc)
    return f"cannot read image {path}: {type(exc).__name__}: {exc}"


def decode_batch(batch: dict[str, Any], preprocess: Preprocess) -> dict[str, Any]:
    """Decode and resize a batch of paths into uint8 [N, H, W, 3]; bad images are named, not raised."""
    from raybench.models.images import load_pixels

    paths = batch["path"]
    height, width = preprocess.size
    pixels = np.zeros((len(paths), height, width, 3), dtype=np.uint8)
    errors = np.full(len(paths), "", dtype=object)
    for i, path in enumerate(paths):
        try:
            pixels[i] = load_pixels(str(path), preprocess)
        except Exception as exc:  # noqa: BLE001 - the cell, not the task, decides what a bad image means
            errors[i] = _describe(exc, str(path))
    return {"cell": batch["cell"], "row": batch["row"], "pixels": pixels, "image_error": errors}


def _path_blocks(paths: tuple[str, ...], cell: int, rows: int = DECODE_ROWS) -> list:
    """(cell, row, path) tables of ``rows`` rows: one decode task each."""
    return _row_blocks(paths, cell, "path", rows)


def _caption_blocks(captions: tuple[str, ...], cell: int, rows: int = DECODE_ROWS) -> list:
    """(cell, row, caption) tables of ``rows`` captions; ``row`` indexes the captions."""
    return _row_blocks(captions, cell, "caption", rows)


def _row_blocks(values: tuple[str, ...], cell: int, column: str, rows: int = DECODE_ROWS) -> list:
    """Work tables of ``rows`` rows with ``values`` in ``column`` and the other string columns
    (path, cache, caption) blank."""
    import pyarrow as pa

    blocks = []
    for start in range(0, len(values), rows):
        chunk = values[start:start + rows]
        blank = pa.array([""] * len(chunk), pa.string())
        blocks.append(pa.table({
            "cell": pa.array(np.full(len(chunk), cell, dtype=np.int16)),
            "row": pa.array(np.arange(start, start + len(chunk), dtype=np.int32)),
            **{name: pa.array(chunk, pa.string()) if name == column else blank for name in ("path", "cache", "caption")},
        }))
    return blocks


def _cache_blocks(files: tuple[str, ...], cell: int) -> list:
    """One single-row table per pixel-cache file: one read task each."""
    import pyarrow as pa

    return [pa.table({"cell": pa.array([cell], pa.int16()), "row": pa.array([-1], pa.int32()),
                      "path": pa.array([""]), "cache": pa.array([f]), "caption": pa.array([""])}) for f in files]


def load_block(batch: dict[str, Any], preprocess: Preprocess, fs=None) -> dict[str, Any]:
    """Work rows -> decoded pixels: decode the image paths, read the pixel-cache files named.

    Ray Data may bundle several small blocks into one batch, so every kind can arrive together.
    Caption rows pass through with blank pixels (``text`` true; see the module docstring).
    """
    import pyarrow.parquet as pq

    captions = batch.get("caption", np.full(len(batch["row"]), "", dtype=object))
    is_text = np.array([bool(c) for c in captions], dtype=bool)
    is_cache = np.array([bool(c) for c in batch["cache"]], dtype=bool)
    parts = []
    images = ~is_cache & ~is_text
    if images.any():
        parts.append(decode_batch({k: v[images] for k, v in batch.items()}, preprocess))
    for file, cell in zip(batch["cache"][is_cache], batch["cell"][is_cache]):
        parts.append(unpack_pixels(pq.read_table(str(file), filesystem=fs), preprocess.size, int(cell)))
    for part in parts:
        part["caption"] = np.full(len(part["row"]), "", dtype=object)
        part["text"] = np.zeros(len(part["row"]), dtype=bool)
    if is_text.any():
        count = int(is_text.sum())
        parts.append({"cell": batch["cell"][is_text], "row": batch["row"][is_text],
                      "pixels": np.zeros((count, *preprocess.size, 3), dtype=np.uint8),
                      "image_error": np.full(count, "", dtype=object),
                      "caption": np.asarray(captions[is_text], dtype=object), "text": np.ones(count, dtype=bool)})
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def pixel_stream(sources: list["Source"], preprocess: Preprocess, store=None, rows: int = DECODE_ROWS):
    """Decoded pixels of every source, in source order (so cells finish one after another);
    ``rows``: images per decode task."""
    import ray.data

    blocks = []
    for source in sources:
        blocks += _cache_blocks(source.cache_files, source.cell) if source.cache_files \
            else _path_blocks(source.paths, source.cell, rows)
        blocks += _caption_blocks(source.captions, source.cell, rows)
    return ray.data.from_arrow(blocks).map_batches(
        load_block, fn_kwargs={"preprocess": preprocess, "fs": store.fs if store else None},
        batch_size=None, num_cpus=1, memory=decode_memory(preprocess),
    )


def decode_memory(preprocess: Preprocess) -> int:
    """Bytes a decode task's worker holds: the Python worker itself (~250 MB with PIL and
    pyarrow), its output block and PIL's intermediates. A scheduling hint, which also keeps Ray
    Data from fusing the decode tasks into the embedding actors (operators with different
    resources never fuse)."""
    height, width = preprocess.size
    return WORKER_MEMORY + 4 * DECODE_ROWS * height * width * 3


# -- the pixel cache ----------------------------------------------------------------------


def pack_pixels(batch: dict[str, Any]):
    """Decoded batch -> Arrow table with pixels as plain fixed_size_list<uint8> (cache rows)."""
    import pyarrow as pa

    pixels = np.ascontiguousarray(batch["pixels"])
    flat = pa.FixedSizeListArray.from_arrays(pa.array(pixels.reshape(-1)), int(np.prod(pixels.shape[1:])))
    return pa.table({"row": pa.array(batch["row"], pa.int32()), "pixels": flat,
                     "image_error": pa.array(list(batch["image_error"]), pa.string())})


def unpack_pixels(table, size: tuple[int, int], cell: int) -> dict[str, Any]:
    """Cache rows -> the decoded batch format (the inverse of pack_pixels), tagged with a cell."""
    height, width = size
    count = table.num_rows
    flat = table.column("pixels").combine_chunks().flatten().to_numpy()
    return {
        "row": table.column("row").to_numpy(),
        "pixels": flat.reshape(count, height, width, 3),
        "image_error": np.array(table.column("image_error").to_pylist(), dtype=object),
        "cell": np.full(count, cell, dtype=np.int16),
    }


class PixelCaches:
    """The pixel-cache policy of one run: which cells stream a dataset's decoded pixels.

    ``files(data, preprocess)`` gives the Parquet files of the dataset's decoded pixels, or ()
    to decode in the stream. A committed cache is used when it matches the manifest, unless
    --force, or it recorded unreadable images (they may have been fixed since; a cache built by
    this run is always used). One is built first when two or more pending models of this run
    share the dataset and pixel geometry (``sharing[(dataset, pixel_key)]``, see the module
    docstring).
    """

    def __init__(self, store, enabled: bool, force: bool, echo, sharing: dict[tuple[str, str], int]):
        self.store, self.enabled, self.force, self.echo, self.sharing = store, enabled, force, echo, sharing
        self.built: set[str] = set()

    def files(self, data, preprocess: Preprocess) -> tuple[str, ...]:
        import logging

        if not self.enabled:
            return ()
        rel = self.store.pixel_cache_dir(data.name, preprocess.pixel_key)
        marker = self.store.marker(rel) or {}
        current = marker.get("key") == data.hash and (
            rel in self.built or not (self.force or marker.get("bad_images")))
        if not current:
            sharing = self.sharing.get((data.name, preprocess.pixel_key), 0)
            if sharing < 2:
                return ()
            try:
                self.echo(f"decoding {data.name} once for {sharing} models ({preprocess.pixel_key})")
                from raybench.rundir.provenance import now

                write_pixel_cache(self.store, rel, data.paths, preprocess,
                                  {"key": data.hash, "pixel_key": preprocess.pixel_key, "written": now()})
                self.built.add(rel)
            except Exception as exc:  # noqa: BLE001 - the cache is an optimisation: decode instead
                logging.getLogger(__name__).warning("pixel cache %s not written (%s); decoding per model", rel, exc)
                return ()
        return tuple(self.store.parquet_files(rel))


def write_pixel_cache(store, rel_dir: str, paths: tuple[str, ...], preprocess: Preprocess,
                      marker: dict) -> None:
    """Decode a dataset once for ``preprocess.pixel_key`` and commit it under ``rel_dir``.

    The marker counts the images that could not be read (``bad_images``): such a cache serves
    the run that wrote it only (see the driver), since the user may fix or restore those files.
    """
    tmp = store.staging_dir(rel_dir)
    (pixel_stream([Source(0, paths)], preprocess)
     .map_batches(pack_pixels, batch_size=None, batch_format="numpy", num_cpus=1)
     .write_parquet(store.path(tmp), filesystem=store.fs))
    store.commit(tmp, rel_dir, {**marker, "bad_images": _count_bad(store, tmp)})


def _count_bad(store, rel_dir: str) -> int:
    """Rows of a pixel cache whose image could not be read (only the error column is read)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    bad = 0
    for file in store.parquet_files(rel_dir):
        errors = pq.read_table(file, columns=["image_error"], filesystem=store.fs).column("image_error")
        bad += int(pc.sum(pc.not_equal(errors, "")).as_py() or 0)
    return bad


# -- the embedding actors -----------------------------------------------------------------


class EmbedWorker:
    """An actor holding one model; ``__call__`` maps a pixel batch to embeddings.

    What it holds (``spec``, ``preprocess``, ``device``, ``threads``) are class attributes of
    the per-model subclass that ``worker_class`` makes, so the actor is constructed without
    arguments: nothing goes through the object store for its constructor, and the model is
    built here, never shipped from the driver. ``preprocess`` is the one the driver resolved.

    A model that fails to load, or a batch that fails to embed, does not crash the stream: the
    failure travels in the ``embed_error`` and ``error_kind`` columns and fails only the cells
    it touches (see failure.py). A process that dies (segfault, OOM kill, os._exit) is
    restarted by Ray and the batch retried. With ``parts``, the embeddings are written here,
    as Parquet parts in the run directory, and only the batch's small rows leave the actor.
    """

    spec: ModelSpec
    preprocess: Preprocess
    device: str = "cpu"
    threads: int | None = None
    pretrained: bool = True  # False: --random-weights (the architecture, seeded random weights)
    parts: Any = None  # parts.Parts: write the embeddings there and return rows without them
    #: Wall clock of the ``embedded_at`` and ``forward_seconds`` columns (a test injects one).
    clock = staticmethod(time.time)

    def __init__(self):
        import os
        import socket

        spec = self.spec
        self.failure, self.embedder = None, None
        self.actor = f"{socket.gethostname()}:{os.getpid()}"  # a restarted actor is another process
        try:
            import sys
            import warnings

            # torchreid warns on import that its Cython metrics are missing: not used here.
            warnings.filterwarnings("ignore", message="Cython evaluation")
            from raybench.models import build_embedder, numpy_only

            # a numpy-only family's actors skip torch's seconds-long import
            if (spec.weights is None or not self.pretrained) and not numpy_only(spec):
                import torch

                torch.manual_seed(0)  # random weights: the same model in every actor and every run
            self.embedder = build_embedder(spec, device=self.device, preprocess=self.preprocess,
                                           pretrained=self.pretrained)
            if self.threads and "torch" in sys.modules:  # numpy-only models never import torch
                sys.modules["torch"].set_num_threads(self.threads)
        except Exception as exc:  # noqa: BLE001 - reported per cell, see the class docstring
            self.failure = load_failure(spec.name, error_text(exc))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        count = len(batch["row"])
        image_error = batch["image_error"]
        text = batch["text"] if "text" in batch else np.zeros(count, dtype=bool)
        failure = self.failure
        dim = self.embedder.dim if self.embedder is not None else 1
        embedding = np.zeros((count, dim), dtype=np.float32)
        good = np.array([not e for e in image_error], dtype=bool) & ~text
        started = self.clock()
        if self.embedder is not None and (good.any() or text.any()):
            try:
                if good.any():
                    pixels = np.ascontiguousarray(batch["pixels"][good])  # read-only zero-copy batch
                    embedding[good] = self.embedder.embed(pixels)
                if text.any():
                    embedding[text] = self.embedder.embed_text([str(c) for c in batch["caption"][text]])
            except Exception as exc:  # noqa: BLE001 - fails this batch's cells, not the run
                failure = Failure(BATCH, f"model {self.spec.name} failed to embed: {error_text(exc)}")
        done = self.clock()
        params = getattr(self.embedder, "num_params", None)
        params = -1 if params is None else int(params)  # -1: unknown
        out = {
            "cell": batch["cell"],
            "row": batch["row"],
            "embedding": embedding,
            "text": text,
            "image_error": image_error,
            "embed_error": np.full(count, failure.message if failure else "", dtype=object),
            "error_kind": np.full(count, failure.kind if failure else "", dtype=object),
            "num_params": np.full(count, params, dtype=np.int64),
            # when this batch's embeddings were done (wall clock), how long the model took, and
            # which actor process: throughput figures taken from the actors' own pace, not from
            # the batches' arrival at the driver (`raybench rehearse`: bench/rehearse.py)
            "embedded_at": np.full(count, done),
            "forward_seconds": np.full(count, done - started),
            "actor": np.full(count, self.actor, dtype=object),
        }
        if self.parts is None:
            return out
        from raybench.pipeline.parts import write_parts

        return write_parts(out, self.parts)


def worker_class(name: str, spec: ModelSpec, preprocess: Preprocess, pool: "Pool", pretrained: bool = True,
                 parts=None) -> type:
    """EmbedWorker for one model, under a class name that carries ``name`` (run and model).

    Ray Data names a pool's actors after the class it maps with: ``MapWorker(MapBatches(
    EmbedWorker_smoke_color_hist))`` rather than the same generic name for every run and model,
    on the dashboard, in ``ray list actors`` and in the metrics' tags. The subclass is created
    here, so cloudpickle ships it by value, with the model's spec and preprocessing as class
    attributes, to the actors; with ``parts`` (parts.Parts) the actors write their embeddings.
    """
    slug = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")
    return type(f"EmbedWorker_{slug}", (EmbedWorker,), {
        "__doc__": EmbedWorker.__doc__, "spec": spec, "preprocess": preprocess,
        "device": pool.device, "threads": pool.threads, "pretrained": pretrained, "parts": parts,
    })


def embedding_stream(spec: ModelSpec, preprocess: Preprocess, sources: list[Source], store,
                     pool: Pool, name: str = "", pretrained: bool = True, decode_rows: int = DECODE_ROWS,
                     parts=None):
    """The Ray Dataset of one model's embeddings over ``sources`` (one per pending cell);
    ``name`` (run:model) names the stream and its actors; ``pretrained=False`` builds the
    models with seeded random weights (--random-weights); ``decode_rows``: images per decode
    task (`raybench rehearse` uses the batch size, so that a few batches arrive one by one);
    ``parts`` (parts.Parts): the actors write the embeddings there, and the stream carries
    their rows without them (``parts.write_parts``)."""
    import ray.data

    stream = pixel_stream(sources, preprocess, store, decode_rows)
    resources: dict[str, Any] = {"num_cpus": pool.cpus}
    if pool.gpus:
        resources["num_gpus"] = pool.gpus
    stream = stream.map_batches(
        worker_class(name or spec.name, spec, preprocess, pool, pretrained, parts),
        batch_size=spec.batch_size,
        batch_format="numpy",
        # Ray Data's actor pools restart dead actors and retry their batches (max_restarts=-1,
        # max_task_retries=-1 are its defaults).
        compute=ray.data.ActorPoolStrategy(size=pool.actors),
        **resources,
    )
    if name:
        stream.set_name(name)
    return stream
