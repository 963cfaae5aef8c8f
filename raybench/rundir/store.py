"""The run directory, on a local path or any pyarrow filesystem URI (file://, s3://, gs://, ...).

Layout::

    run.json                                   resolved matrix, versions, git hash, timings
    embeddings/<dataset>/<model>/part-00000.parquet, [text-00000.parquet], spec.json, _SUCCESS
    results/<dataset>/<model>.json             one result per cell
    cache/pixels/<dataset>/<pixel_key>/part-*.parquet, _SUCCESS   decoded pixels, shared by models

Why it is safe to kill a run at any moment: a directory is written under a temporary name
(``.tmp-*``) and moved into place file by file, and only then is ``_SUCCESS`` written; a reader
trusts a directory only when ``_SUCCESS`` is there and carries the key it expects (the model's
spec hash and the manifest's hash). A half-written cell never looks finished, and a stale one
(other weights, other images) is recomputed. JSON files are written to a temporary name and
moved, so they are either the old or the new version, never a torn one.

A cell of a dataset with captions, for a model with a text tower, also holds the captions'
embeddings (``text-*.parquet``: caption, pid, path, split, embedding; ``text_schema``),
committed under the same _SUCCESS (whose ``text_rows`` counts them) and read with
``read_text_embeddings``.

The embedding Parquet is plain Arrow (``fixed_size_list<float32>[dim]``, not Ray's tensor
extension type), so pyarrow, pandas and duckdb read it without Ray.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from raybench.datasets.manifest import SCHEMA as MANIFEST_SCHEMA, TRIAL_FIELD
from raybench.errors import RaybenchError
from raybench.rundir.records import CellMarker, CellResult, RunFileError, RunRecord

SUCCESS = "_SUCCESS"
RUN_JSON = "run.json"


def embedding_schema(dim: int, trials: bool = False) -> pa.Schema:
    """The declared schema of embeddings/<dataset>/<model>/*.parquet."""
    schema = MANIFEST_SCHEMA.append(TRIAL_FIELD) if trials else MANIFEST_SCHEMA
    return schema.append(pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False))


def text_schema(dim: int) -> pa.Schema:
    """The declared schema of embeddings/<dataset>/<model>/text-*.parquet."""
    from raybench.datasets.manifest import CAPTION_SCHEMA

    return CAPTION_SCHEMA.append(pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False))


def text_table(captions: pa.Table, embeddings) -> pa.Table:
    """Caption rows (manifest.CAPTION_SCHEMA) + their embeddings as a table of ``text_schema``."""
    import numpy as np

    values = np.ascontiguousarray(embeddings, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
    schema = text_schema(values.shape[1])
    return pa.Table.from_arrays([captions.column(name) for name in schema.names[:-1]] + [column], schema=schema)


def embedding_table(manifest: pa.Table, embeddings) -> pa.Table:
    """Manifest rows + their embeddings (float32 [rows, dim]) as a table of the declared schema."""
    import numpy as np

    values = np.ascontiguousarray(embeddings, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
    schema = embedding_schema(values.shape[1], "trial" in manifest.column_names)
    columns = [manifest.column(name) for name in schema.names[:-1]] + [column]
    return pa.Table.from_arrays(columns, schema=schema)


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

    def cell_marker(self, dataset: str, model: str) -> CellMarker | None:
        """The _SUCCESS marker of a cell's embeddings; None when not committed. A marker that
        breaks its contract raises RunFileError (the caller treats the cell as not embedded)."""
        rel = f"{self.embeddings_dir(dataset, model)}/{SUCCESS}"
        data = self.load_json(rel)
        return None if data is None else CellMarker.from_json(data, self.path(rel))

    def write_embeddings(self, dataset: str, model: str, table: pa.Table, marker: CellMarker,
                         spec: dict | None = None, text: pa.Table | None = None) -> None:
        """Write one cell's embeddings atomically (see the module docstring); ``marker.rows``
        is the table's, ``marker.text_rows`` the caption table's (``text``, text_schema)."""
        import pyarrow.parquet as pq

        if (text is None) != (marker.text_rows is None) or (text is not None and text.num_rows != marker.text_rows):
            raise RaybenchError(f"{dataset} x {model}: the marker's text_rows ({marker.text_rows}) do not match "
                                f"the caption embeddings ({None if text is None else text.num_rows} rows)")
        rel = self.embeddings_dir(dataset, model)
        tmp = self.staging_dir(rel)
        pq.write_table(table, self.path(tmp, "part-00000.parquet"), filesystem=self.fs,
                       compression="zstd")
        if text is not None:
            pq.write_table(text, self.path(tmp, "text-00000.parquet"), filesystem=self.fs, compression="zstd")
        if spec is not None:
            with self.fs.open_output_stream(self.path(tmp, "spec.json")) as out:
                out.write(json.dumps(spec, indent=2, default=str).encode() + b"\n")
        self.commit(tmp, rel, marker.to_json())

    def check_embeddings(self, dataset: str, marker: CellMarker) -> None:
        """Cheaply (Parquet footers only) that a committed cell's files hold the rows its
        marker says: a truncated or missing part raises RunFileError naming it."""
        import pyarrow.parquet as pq

        rel = self.embeddings_dir(dataset, marker.model)
        for prefix, field_name, expected in (("part-", "rows", marker.rows), ("text-", "text_rows", marker.text_rows)):
            rows = 0
            for file in self.parquet_files(rel, prefix):
                try:
                    rows += pq.read_metadata(file, filesystem=self.fs).num_rows
                except (OSError, pa.ArrowException) as exc:
                    raise RunFileError(file, "<file>", f"unreadable Parquet ({exc})") from None
            if rows != (expected or 0):
                raise RunFileError(self.path(rel), field_name, f"{rows} rows stored, {expected or 0} committed")

    def read_embeddings(self, dataset: str, model: str) -> pa.Table:
        """A committed cell's embeddings: the one reader (scoring, rank lists, scripts).

        A folder without _SUCCESS, without Parquet parts, with an unreadable (truncated) part
        or with fewer rows than its marker says raises RunFileError naming the file.
        """
        return self._read_parts(dataset, model, "part-", lambda marker: marker.rows, "rows")

    def read_text_embeddings(self, dataset: str, model: str) -> pa.Table:
        """A committed cell's caption embeddings (text_schema), read as ``read_embeddings``
        reads the images'; a cell committed without captions raises RunFileError."""
        return self._read_parts(dataset, model, "text-", lambda marker: marker.text_rows, "text_rows")

    def _read_parts(self, dataset: str, model: str, prefix: str, expected, field_name: str) -> pa.Table:
        import pyarrow.parquet as pq

        rel = self.embeddings_dir(dataset, model)
        marker = self.cell_marker(dataset, model)
        if marker is None:
            raise RunFileError(self.path(rel), SUCCESS, "missing: these embeddings were never committed")
        rows = expected(marker)
        if rows is None:
            raise RunFileError(self.path(rel, SUCCESS), field_name, "absent: this cell was committed without captions")
        files = self.parquet_files(rel, prefix)
        if not files:
            raise RunFileError(self.path(rel), f"{prefix}*.parquet", "missing")
        tables = []
        for file in files:
            try:
                tables.append(pq.read_table(file, filesystem=self.fs))
            except (OSError, pa.ArrowException) as exc:
                raise RunFileError(file, "<file>", f"unreadable Parquet ({exc})") from None
        table = pa.concat_tables(tables)
        if table.num_rows != rows:
            raise RunFileError(self.path(rel), field_name, f"{table.num_rows} rows stored, {rows} committed")
        return table

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
