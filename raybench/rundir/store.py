"""The run directory, on a local path or any pyarrow filesystem URI (file://, s3://, gs://, ...).

Its layout (file names, what each holds, the _SUCCESS marker, the result files and their
schema versions) is described in one place, docs/run-folder.md; the JSON files' contract is
rundir/records.py. This module is the one reader and writer of the folder.

Embeddings are written where they are computed: each batch's, by the embedding worker that
computed it, as a Parquet part in the folder of the stream's attempt at the cell
(``write_part``; pipeline/parts.py); where the workers cannot see the run directory, the
driver writes the same parts with the same function. A part holds ``row`` (the image's index
in the cell's unique images, or the caption's) and ``embedding``. The driver commits a cell
once all its rows have arrived (``commit_embeddings``): it writes the rows file, lists the
attempt folder and writes _SUCCESS naming the attempt and exactly the files that hold the cell,
with their sizes; then it deletes whatever else the cell's folder holds. The reader reads
those files and nothing else, and joins each manifest row to its embedding by ``row``: an image
listed by several trials is stored once.

Why it is safe to kill a run at any moment: a reader trusts a cell only when ``_SUCCESS`` is
there and carries the key it expects (the model's spec hash and the manifest's hash), and
reads only the files it names. Parts of an attempt that was never committed (a failed batch,
an interrupted run, the first write of a retried batch) are read by no one, and are deleted
when the cell is next committed. A stale cell (other weights, other images) is recomputed.
JSON files are written to a temporary name and moved, so they are either the old or the new
version, never a torn one; a directory committed whole (the pixel cache) is written under a
temporary name (``.tmp-*``) and moved into place before its _SUCCESS is written.

A cell's caption embeddings (a dataset with captions, a model with a text tower) are committed
under the same _SUCCESS (``text_rows``) and read with ``read_text_embeddings``
(``text_schema``). The embedding column is plain Arrow (``fixed_size_list<float32>[dim]``,
not Ray's tensor extension type), so the files are readable without Ray; ``read_embeddings``
returns the joined table (``embedding_schema``).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from raybench.datasets.manifest import manifest_schema
from raybench.errors import RaybenchError
from raybench.rundir.records import CellMarker, CellResult, RunFileError, RunRecord

SUCCESS = "_SUCCESS"
RUN_JSON = "run.json"
SPEC_JSON = "spec.json"
#: In a rows file: the row of each manifest row's (or caption's) embedding in the parts.
ROW_FIELD = pa.field("row", pa.int32(), nullable=False)


@dataclass(frozen=True)
class _Kind:
    """What a committed cell stores of one kind of query (images, or captions)."""

    rows: str  # the rows file: its declared rows, each with its ROW_FIELD
    prefix: str  # the parts' file names
    count: str  # the marker's field that counts the rows


IMAGES = _Kind("manifest.parquet", "part-", "rows")
TEXT = _Kind("captions.parquet", "text-", "text_rows")


def _embedding_field(dim: int) -> pa.Field:
    return pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False)


def embedding_schema(dim: int, columns: Iterable[str] = ()) -> pa.Schema:
    """The declared schema of a cell's embeddings, as ``read_embeddings`` returns them: the
    manifest's columns (``columns``: the optional ones it has, datasets.manifest.OPTIONAL_FIELDS)
    and the embedding."""
    return manifest_schema(columns).append(_embedding_field(dim))


def text_schema(dim: int) -> pa.Schema:
    """The declared schema of a cell's caption embeddings, as ``read_text_embeddings`` returns them."""
    from raybench.datasets.manifest import CAPTION_SCHEMA

    return CAPTION_SCHEMA.append(_embedding_field(dim))


def part_schema(dim: int) -> pa.Schema:
    """The declared schema of an embedding part (attempt-*/part-*.parquet, text-*.parquet)."""
    return pa.schema([ROW_FIELD, _embedding_field(dim)])


def _embedding_column(embeddings) -> tuple[pa.Array, int]:
    import numpy as np

    values = np.ascontiguousarray(embeddings, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1]), values.shape[1]


def part_table(rows, embeddings) -> pa.Table:
    """Rows (each one's index in its cell) + their embeddings (float32 [rows, dim]): a part."""
    column, dim = _embedding_column(embeddings)
    return pa.Table.from_arrays([pa.array(rows, pa.int32()), column], schema=part_schema(dim))


def row_table(table: pa.Table, rows) -> pa.Table:
    """Declared rows (a manifest, or captions) + the row of each one's embedding in the parts:
    a rows file."""
    return table.append_column(ROW_FIELD, pa.array(rows, pa.int32()))


def text_table(captions: pa.Table, embeddings) -> pa.Table:
    """Caption rows (manifest.CAPTION_SCHEMA) + their embeddings as a table of ``text_schema``."""
    column, dim = _embedding_column(embeddings)
    schema = text_schema(dim)
    return pa.Table.from_arrays([captions.column(name) for name in schema.names[:-1]] + [column], schema=schema)


def embedding_table(manifest: pa.Table, embeddings) -> pa.Table:
    """Manifest rows + their embeddings (float32 [rows, dim]) as a table of the declared schema."""
    column, dim = _embedding_column(embeddings)
    schema = embedding_schema(dim, manifest.column_names)
    columns = [manifest.column(name) for name in schema.names[:-1]] + [column]
    return pa.Table.from_arrays(columns, schema=schema)


def _join(rows: pa.Table, parts: pa.Table, where: str) -> pa.Table:
    """The rows of a rows file, in its order, each with its embedding from ``parts`` (matched on
    ``row``; a row stored twice, by a retried batch, holds the same embedding twice)."""
    import numpy as np

    have, want = parts.column("row").to_numpy(), rows.column("row").to_numpy()
    position = np.full(int(max(have.max(initial=-1), want.max(initial=-1))) + 1, -1, dtype=np.int64)
    position[have] = np.arange(len(have))
    take = position[want]
    lost = int((take < 0).sum())
    if lost:
        raise RunFileError(where, "row", f"{lost} of {len(want)} rows have no embedding in the committed parts")
    embedding = parts.column("embedding").take(pa.array(take))
    return rows.drop_columns([ROW_FIELD.name]).append_column(parts.schema.field("embedding"), embedding)


def _may_hold(metadata, lo: int, hi: int) -> bool:
    """Whether a part's footer allows rows in [lo, hi] (no statistics: it may)."""
    for g in range(metadata.num_row_groups):
        stats = metadata.row_group(g).column(0).statistics
        if stats is None or not stats.has_min_max or (stats.min <= hi and stats.max >= lo):
            return True
    return False


def _matching(held, ordered):
    """(positions in ``held``, positions in the sorted ``ordered``) of every wanted row a part
    holds, a row wanted twice given twice."""
    import numpy as np

    left, right = np.searchsorted(ordered, held, "left"), np.searchsorted(ordered, held, "right")
    counts = right - left
    hit = np.flatnonzero(counts)
    counts = counts[hit]
    take = np.repeat(hit, counts)
    put = np.repeat(left[hit] - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    return take, put


def text_gallery(table: pa.Table) -> pa.Table:
    """The images a caption is ranked against: every evaluated (non-train) image of an
    embedding table once (its first row), in table order."""
    import numpy as np
    import pyarrow.compute as pc

    table = table.filter(pc.not_equal(table.column("split"), "train"))
    _, first = np.unique(np.asarray(table.column("path").to_pylist(), dtype=object), return_index=True)
    return table.take(pa.array(np.sort(first)))


def embedding_matrix(table: pa.Table, where: str = "embeddings"):
    """The ``embedding`` column as a float32 [rows, dim] array (zero-copy where Arrow allows).

    The one decoder of the stored format, for the scorer, the rank lists and users' scripts;
    a list column of equal lengths (an older or hand-made file) is accepted too.
    """
    import numpy as np

    if "embedding" not in table.column_names:
        raise RunFileError(where, "embedding", f"no such column (columns: {', '.join(table.column_names)})")
    col = table.column("embedding").combine_chunks()
    if col.null_count:
        raise RunFileError(where, "embedding", f"{col.null_count} rows have no embedding")
    if pa.types.is_fixed_size_list(col.type):
        dim = col.type.list_size
    else:
        lengths = np.unique(col.value_lengths().to_numpy())
        if len(lengths) > 1:
            raise RunFileError(where, "embedding", f"rows have different lengths: {lengths.tolist()[:5]}")
        dim = int(lengths[0]) if len(lengths) else 0
    values = col.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(len(col), dim)


def embedding_columns(table: pa.Table, where: str = "embeddings") -> dict:
    """A cell's embedding table as the scorer takes it (raybench.eval.protocol.score): each
    column a numpy array, the embeddings as ``embedding_matrix`` gives them."""
    cols = {name: table.column(name).to_numpy() for name in table.column_names if name != "embedding"}
    return {**cols, "embedding": embedding_matrix(table, where)}


@dataclass(frozen=True)
class RunStore:
    """A run directory: ``fs`` is any pyarrow filesystem, ``root`` the directory inside it."""

    fs: Any  # pyarrow.fs.FileSystem (picklable, so actors get the store as is)
    root: str
    uri: str = ""

    @classmethod
    def open(cls, out: str | Path) -> "RunStore":
        """A local path (relative or absolute) or a URI such as file:///x, s3://bucket/x."""
        from pyarrow import fs as pafs

        text = str(out)
        if "://" in text:
            try:
                filesystem, root = pafs.FileSystem.from_uri(text)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
                raise RaybenchError(f"--out {text}: not a usable filesystem URI ({exc})") from None
            return cls(filesystem, root.rstrip("/"), text)
        local = Path(text).expanduser().resolve()
        return cls(pafs.LocalFileSystem(), local.as_posix(), local.as_posix())

    @property
    def is_local(self) -> bool:
        """True when the run directory is a node-local path (not object storage)."""
        from pyarrow import fs as pafs

        return isinstance(self.fs, pafs.LocalFileSystem)

    def check_writable(self) -> None:
        """An --out that cannot be written is one clear error here, before any work starts."""
        reason = self.unwritable_reason()
        if reason:
            raise RaybenchError(f"--out {self.uri} cannot be written ({reason}); choose another --out")

    def unwritable_reason(self) -> str | None:
        """Why the directory cannot be written (read-only, permission denied, full disk, a file
        in the way), found by creating it and writing then deleting a probe file; None if it can."""
        probe = f".write-test-{uuid.uuid4().hex[:8]}"
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(self.path(probe)) as out:
                out.write(b"raybench")
            self.fs.delete_file(self.path(probe))
        except OSError as exc:
            return exc.strerror or str(exc).splitlines()[0]
        return None

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if self.root else "/".join(parts)

    def exists(self, rel: str) -> bool:
        from pyarrow import fs as pafs

        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    # -- JSON -----------------------------------------------------------------------------

    def write_json(self, rel: str, obj: Any) -> None:
        """Write JSON atomically: a temporary name in the same directory, then a move."""
        final = self.path(rel)
        parent = final.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}.json"
        with self.fs.open_output_stream(tmp) as out:
            out.write(json.dumps(obj, indent=2, default=str).encode() + b"\n")
        self.fs.move(tmp, final)

    def read_json(self, rel: str) -> Any | None:
        """The parsed file, or None when it is absent or torn (treated as never written)."""
        try:
            return self.load_json(rel)
        except RunFileError:
            return None

    def load_json(self, rel: str) -> Any | None:
        """The parsed file, None when it is absent; a file that is not JSON raises RunFileError."""
        try:
            with self.fs.open_input_stream(self.path(rel)) as src:
                raw = src.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if "not found" in str(exc).lower() or "no such file" in str(exc).lower():
                return None
            raise
        try:
            return json.loads(raw.decode())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunFileError(self.path(rel), "<file>", f"not valid JSON ({exc})") from None

    def list_files(self, rel_dir: str, suffix: str = "") -> list[str]:
        """Paths relative to the run directory of the files under ``rel_dir`` (recursive,
        sorted), leaving out the store's temporary files (``.tmp-*``, mid-write)."""
        from pyarrow import fs as pafs

        if not self.exists(rel_dir):
            return []
        selector = pafs.FileSelector(self.path(rel_dir), recursive=True)
        base = len(self.path("")) if self.root else 0
        found = []
        for info in self.fs.get_file_info(selector):
            rel = info.path[base:].lstrip("/")
            if info.type == pafs.FileType.File and rel.endswith(suffix) \
                    and not any(part.startswith(".") for part in rel.split("/")):
                found.append(rel)
        return sorted(found)

    # -- directories committed with a _SUCCESS marker -------------------------------------

    def marker(self, rel_dir: str) -> dict | None:
        """The _SUCCESS marker of a committed directory, or None when it is not finished."""
        return self.read_json(f"{rel_dir}/{SUCCESS}")

    def is_finished(self, rel_dir: str, key: str) -> bool:
        marker = self.marker(rel_dir)
        return bool(marker) and marker.get("key") == key

    def staging_dir(self, rel_dir: str) -> str:
        """A fresh temporary directory beside ``rel_dir`` (relative path), to commit later."""
        parent, _, name = rel_dir.rpartition("/")
        tmp = f"{parent}/.tmp-{name}-{uuid.uuid4().hex[:12]}" if parent else f".tmp-{name}-{uuid.uuid4().hex[:12]}"
        self.fs.create_dir(self.path(tmp), recursive=True)
        return tmp

    def commit(self, tmp_dir: str, rel_dir: str, marker: dict) -> None:
        """Move every file of ``tmp_dir`` into ``rel_dir`` (replacing it), then write _SUCCESS.

        The old marker goes first, so a crash anywhere in between leaves an unfinished
        directory, never a mix that looks finished. Moves are per file: object stores have no
        directory rename.
        """
        from pyarrow import fs as pafs

        final = self.path(rel_dir)
        if self.exists(rel_dir):
            if self.exists(f"{rel_dir}/{SUCCESS}"):
                self.fs.delete_file(f"{final}/{SUCCESS}")
            self.fs.delete_dir(final)  # our own cell directory, stale or forced
        self.fs.create_dir(final, recursive=True)
        for info in self.fs.get_file_info(pafs.FileSelector(self.path(tmp_dir))):
            self.fs.move(info.path, f"{final}/{info.base_name}")
        self.fs.delete_dir(self.path(tmp_dir))
        self.write_json(f"{rel_dir}/{SUCCESS}", marker)

    def parquet_files(self, rel_dir: str, prefix: str = "") -> list[str]:
        """Full paths (inside ``fs``) of the Parquet parts of a directory (those whose name
        starts with ``prefix``), sorted."""
        from pyarrow import fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.path(rel_dir)))
        return sorted(i.path for i in infos if i.base_name.endswith(".parquet") and i.base_name.startswith(prefix))

    # -- embeddings -----------------------------------------------------------------------

    @staticmethod
    def embeddings_dir(dataset: str, model: str) -> str:
        return f"embeddings/{dataset}/{model}"

    @staticmethod
    def new_attempt() -> str:
        """A fresh attempt's folder name (one per stream; see the module docstring)."""
        return f"attempt-{uuid.uuid4().hex[:12]}"

    def attempt_dir(self, dataset: str, model: str, attempt: str) -> str:
        """The folder (relative path) where ``attempt``'s parts of a cell are written, created."""
        rel = f"{self.embeddings_dir(dataset, model)}/{attempt}"
        self.fs.create_dir(self.path(rel), recursive=True)
        return rel

    def write_part(self, rel_dir: str, prefix: str, rows, embeddings) -> str:
        """Write ``embeddings`` (float32 [rows, dim]) of ``rows`` as one Parquet part in
        ``rel_dir`` (an attempt folder); returns its file name. The one writer of embeddings,
        run by the embedding workers or by the driver (pipeline/parts.py). Without dictionary
        encoding, which floats never benefit from: measured here on d=1024 rows, zstd, one core,
        it halves the write rate (34,000 rows/s vs 65,000) and makes the file 16% larger."""
        import pyarrow.parquet as pq

        name = f"{prefix}{uuid.uuid4().hex[:16]}.parquet"
        pq.write_table(part_table(rows, embeddings), self.path(rel_dir, name), filesystem=self.fs,
                       compression="zstd", use_dictionary=False)
        return name

    def cell_marker(self, dataset: str, model: str) -> CellMarker | None:
        """The _SUCCESS marker of a cell's embeddings; None when not committed. A marker that
        breaks its contract raises RunFileError (the caller treats the cell as not embedded)."""
        rel = f"{self.embeddings_dir(dataset, model)}/{SUCCESS}"
        data = self.load_json(rel)
        return None if data is None else CellMarker.from_json(data, self.path(rel))

    def commit_embeddings(self, marker: CellMarker, attempt: str, rows: pa.Table, parts: Iterable[str],
                          spec: dict | None = None, captions: pa.Table | None = None,
                          text_parts: Iterable[str] = ()) -> CellMarker:
        """Commit one cell from ``attempt``'s ``parts`` (see the module docstring): ``rows``
        (``row_table``) are the manifest rows stored, ``marker.rows`` of them; ``captions`` and
        ``text_parts`` a text cell's captions, ``marker.text_rows`` of them. Returns the marker
        written. A part that is not in the attempt folder (a worker that wrote it on a disk
        this process does not see) raises RaybenchError, and the cell stays as it was."""
        import pyarrow.parquet as pq
        from pyarrow import fs as pafs

        if (captions is None) != (marker.text_rows is None) or (captions is not None and captions.num_rows != marker.text_rows):
            raise RaybenchError(f"{marker.dataset} x {marker.model}: the marker's text_rows ({marker.text_rows}) do not "
                                f"match the captions ({None if captions is None else captions.num_rows} rows)")
        rel = self.embeddings_dir(marker.dataset, marker.model)
        folder = f"{rel}/{attempt}"
        names = [IMAGES.rows, *parts]
        pq.write_table(rows, self.path(folder, IMAGES.rows), filesystem=self.fs, compression="zstd")
        if captions is not None:
            pq.write_table(captions, self.path(folder, TEXT.rows), filesystem=self.fs, compression="zstd")
            names += [TEXT.rows, *text_parts]
        if spec is not None:
            with self.fs.open_output_stream(self.path(folder, SPEC_JSON)) as out:
                out.write(json.dumps(spec, indent=2, default=str).encode() + b"\n")
            names.append(SPEC_JSON)
        sizes = {i.base_name: i.size for i in self.fs.get_file_info(pafs.FileSelector(self.path(folder)))}
        missing = [name for name in names if name not in sizes]
        if missing:
            raise RaybenchError(f"{self.path(folder)}: {len(missing)} file(s) written by the embedding workers are not "
                                f"there ({missing[0]}, ...): the workers do not see --out {self.uri} as the driver does")
        marker = dataclasses.replace(marker, attempt=attempt, files={name: sizes[name] for name in names})
        self.write_json(f"{rel}/{SUCCESS}", marker.to_json())  # replaces the previous marker in one move
        self.drop_uncommitted(marker.dataset, marker.model, marker)
        return marker

    def drop_uncommitted(self, dataset: str, model: str, marker: CellMarker | None = None) -> None:
        """Delete what the cell's marker (``marker``, else the one in the store) does not name:
        other attempts (a failed batch's, an interrupted or stale run's, the previous commit's),
        and the attempt's unnamed parts (the first write of a batch that was retried). A cell
        without a marker loses every attempt; one whose marker cannot be read is left alone."""
        from pyarrow import fs as pafs

        rel = self.embeddings_dir(dataset, model)
        if marker is None:
            try:
                marker = self.cell_marker(dataset, model)
            except RunFileError:
                return
        keep = (SUCCESS, marker.attempt) if marker else (SUCCESS,)
        for info in self.fs.get_file_info(pafs.FileSelector(self.path(rel), allow_not_found=True)):
            if info.base_name in keep:
                continue
            if info.type == pafs.FileType.Directory:
                self.fs.delete_dir(info.path)
            else:
                self.fs.delete_file(info.path)
        if marker and marker.attempt:
            for info in self.fs.get_file_info(pafs.FileSelector(self.path(rel, marker.attempt))):
                if info.base_name not in marker.files:
                    self.fs.delete_file(info.path)

    def write_embeddings(self, dataset: str, model: str, table: pa.Table, marker: CellMarker,
                         spec: dict | None = None, text: pa.Table | None = None) -> CellMarker:
        """Commit one cell from whole tables (``embedding_table``, and ``text_table`` for its
        captions), each written as one part: what a run does batch by batch, at once."""
        import numpy as np

        attempt = self.new_attempt()
        folder = self.attempt_dir(dataset, model, attempt)

        def stored(whole: pa.Table, prefix: str) -> tuple[pa.Table, list[str]]:
            index = np.arange(whole.num_rows)
            return (row_table(whole.drop_columns(["embedding"]), index),
                    [self.write_part(folder, prefix, index, embedding_matrix(whole))])

        rows, parts = stored(table, IMAGES.prefix)
        captions, text_parts = stored(text, TEXT.prefix) if text is not None else (None, [])
        return self.commit_embeddings(marker, attempt, rows, parts, spec, captions, text_parts)

    def check_embeddings(self, dataset: str, marker: CellMarker) -> None:
        """Cheaply (one listing) that a committed cell's files are there with the sizes its
        marker says: a missing, truncated or replaced file raises RunFileError naming it."""
        from pyarrow import fs as pafs

        rel = self.embeddings_dir(dataset, marker.model)
        if not marker.files:
            return self._check_whole_tables(rel, marker)
        folder = self.path(rel, marker.attempt)
        sizes = {i.base_name: i.size for i in self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))}
        for name, size in sorted(marker.files.items()):
            if name not in sizes:
                raise RunFileError(f"{folder}/{name}", "<file>", "missing")
            if sizes[name] != size:
                raise RunFileError(f"{folder}/{name}", "<file>", f"{sizes[name]} bytes, {size} committed")

    def _check_whole_tables(self, rel: str, marker: CellMarker) -> None:
        """check_embeddings of a version-1 cell (raybench before parts: each kind one whole
        table, ``part-*`` and ``text-*``, beside _SUCCESS): the Parquet footers hold its rows."""
        import pyarrow.parquet as pq

        for kind in (IMAGES, TEXT):
            expected, rows = getattr(marker, kind.count) or 0, 0
            for file in self.parquet_files(rel, kind.prefix):
                try:
                    rows += pq.read_metadata(file, filesystem=self.fs).num_rows
                except (OSError, pa.ArrowException) as exc:
                    raise RunFileError(file, "<file>", f"unreadable Parquet ({exc})") from None
            if rows != expected:
                raise RunFileError(self.path(rel), kind.count, f"{rows} rows stored, {expected} committed")

    def read_embeddings(self, dataset: str, model: str) -> pa.Table:
        """A committed cell's embeddings (``embedding_schema``, the manifest's rows in its
        order): the one reader (scoring, rank lists, scripts).

        A folder without _SUCCESS, a file it names that is missing or unreadable (truncated), a
        row without its embedding, or fewer rows than the marker says raises RunFileError
        naming the file.
        """
        return self._read(dataset, model, IMAGES)

    def read_text_embeddings(self, dataset: str, model: str) -> pa.Table:
        """A committed cell's caption embeddings (text_schema), read as ``read_embeddings``
        reads the images'; a cell committed without captions raises RunFileError."""
        return self._read(dataset, model, TEXT)

    def read_rows(self, dataset: str, model: str) -> pa.Table:
        """A committed cell's manifest rows without their embeddings, each with the ``row`` of
        its embedding in the parts (``ROW_FIELD``): what a scorer that reads the embeddings a
        shard at a time needs first (``read_embedding_rows``)."""
        import numpy as np

        marker = self._marker(dataset, model)
        if not marker.files:  # version 1: whole tables; their rows are their own order
            table = self._read(dataset, model, IMAGES).drop_columns(["embedding"])
            return row_table(table, np.arange(table.num_rows))
        rel = self.embeddings_dir(dataset, model)
        table = self._read_parquet([self.path(rel, marker.attempt, IMAGES.rows)])
        if table.num_rows != marker.rows:
            raise RunFileError(self.path(rel), IMAGES.count, f"{table.num_rows} rows stored, {marker.rows} committed")
        return table

    def read_embedding_rows(self, dataset: str, model: str, rows, out=None) -> "np.ndarray":
        """float32 [len(rows), dim]: the embeddings of the parts' ``rows`` (``read_rows``'s
        ``row`` column), in that order, read part by part: a part whose rows (its footer's
        statistics) miss them is not read, and no more than one part's embeddings is held
        beside the result (``out``, when given: an array to fill). A row without an embedding
        raises RunFileError."""
        import numpy as np
        import pyarrow.parquet as pq

        marker = self._marker(dataset, model)
        want = np.asarray(rows, np.int64)
        out = np.empty((len(want), marker.dim), np.float32) if out is None else out
        if not marker.files:  # version 1: one whole table
            out[:] = embedding_matrix(self._read(dataset, model, IMAGES))[want]
            return out
        folder = self.path(self.embeddings_dir(dataset, model), marker.attempt)
        filled = np.zeros(len(want), bool)
        order = np.argsort(want, kind="stable")
        ordered = want[order]
        for name in sorted(n for n in marker.files if n.startswith(IMAGES.prefix)):
            path = f"{folder}/{name}"
            try:
                part = pq.ParquetFile(path, filesystem=self.fs)
                if not len(want) or not _may_hold(part.metadata, int(ordered[0]), int(ordered[-1])):
                    continue
                held = part.read(columns=[ROW_FIELD.name]).column(0).to_numpy()
                take, put = _matching(held, ordered)
                if len(take):
                    out[order[put]] = embedding_matrix(part.read(columns=["embedding"]), path)[take]
                    filled[order[put]] = True
            except (OSError, pa.ArrowException) as exc:
                raise RunFileError(path, "<file>", f"unreadable Parquet ({exc})") from None
        if not filled.all():
            raise RunFileError(folder, "row", f"{int((~filled).sum())} of {len(want)} rows have no embedding "
                                              "in the committed parts")
        return out

    def _marker(self, dataset: str, model: str) -> CellMarker:
        marker = self.cell_marker(dataset, model)
        if marker is None:
            raise RunFileError(self.path(self.embeddings_dir(dataset, model)), SUCCESS,
                               "missing: these embeddings were never committed")
        return marker

    def _read(self, dataset: str, model: str, kind: _Kind) -> pa.Table:
        rel = self.embeddings_dir(dataset, model)
        marker = self._marker(dataset, model)
        expected = getattr(marker, kind.count)
        if expected is None:
            raise RunFileError(self.path(rel, SUCCESS), kind.count, "absent: this cell was committed without captions")
        if not marker.files:  # version 1: whole tables beside _SUCCESS
            table = self._read_parquet(self.parquet_files(rel, kind.prefix) or [self.path(rel, f"{kind.prefix}*")])
            if table.num_rows != expected:
                raise RunFileError(self.path(rel), kind.count, f"{table.num_rows} rows stored, {expected} committed")
            return table
        folder = f"{rel}/{marker.attempt}"
        parts = [self.path(folder, name) for name in sorted(marker.files) if name.startswith(kind.prefix)]
        rows = self._read_parquet([self.path(folder, kind.rows)])
        embeddings = self._read_parquet(parts) if parts else part_schema(marker.dim).empty_table()
        table = _join(rows, embeddings, self.path(folder))
        if table.num_rows != expected:
            raise RunFileError(self.path(rel), kind.count, f"{table.num_rows} rows stored, {expected} committed")
        return table

    def _read_parquet(self, files: list[str]) -> pa.Table:
        """The files' rows (read in parallel); an unreadable file raises RunFileError naming it."""
        import pyarrow.parquet as pq

        try:
            return pq.ParquetDataset(files, filesystem=self.fs, partitioning=None).read(use_threads=True)
        except (OSError, pa.ArrowException) as exc:
            for file in files:  # which one
                try:
                    pq.read_metadata(file, filesystem=self.fs)
                except (OSError, pa.ArrowException) as error:
                    raise RunFileError(file, "<file>", f"unreadable Parquet ({error})") from None
            raise RunFileError(files[0], "<file>", f"unreadable Parquet ({exc})") from None

    # -- results --------------------------------------------------------------------------

    @staticmethod
    def result_path(dataset: str, model: str) -> str:
        return f"results/{dataset}/{model}.json"

    def write_result(self, result: CellResult) -> None:
        self.write_json(self.result_path(result.dataset, result.model), result.to_json())

    def read_result(self, dataset: str, model: str) -> CellResult | None:
        """A cell's result; None when absent. One that is not JSON or breaks the contract
        raises RunFileError naming the file and the field."""
        rel = self.result_path(dataset, model)
        data = self.load_json(rel)
        return None if data is None else CellResult.from_json(data, self.path(rel))

    def result_files(self) -> list[str]:
        """results/<dataset>/<model>.json of every cell with a result (relative paths)."""
        return [f for f in self.list_files("results", ".json") if f.count("/") == 2]

    # -- run.json -------------------------------------------------------------------------

    def write_record(self, record: RunRecord) -> None:
        self.write_json(RUN_JSON, record.to_json())

    def read_record(self) -> RunRecord | None:
        """run.json; None when absent; RunFileError when it breaks the contract."""
        data = self.load_json(RUN_JSON)
        return None if data is None else RunRecord.from_json(data, self.path(RUN_JSON))

    # -- pixel cache ----------------------------------------------------------------------

    @staticmethod
    def pixel_cache_dir(dataset: str, pixel_key: str) -> str:
        return f"cache/pixels/{dataset}/{pixel_key}"
