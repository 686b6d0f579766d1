"""Restartable, incremental, out-of-core batch export: :func:`to_files`.

An export cuts a (Dask) table into batches by cumulative weight and writes one file per
``batches_per_file`` batches into an output folder (local or any fsspec URL)::

    part-00000000.parquet   part-00000001.parquet   ...
    _rejects.parquet        rows left out by invalid="skip", with a ``reason`` column
    _open.parquet           CSV/JSONL exports only: the last file's rows, for --append
    _manifest.json          every batch (id, rows, total, file, bytes, sha256), the options,
                            the consumed inputs and the batching state at the end
    _SUCCESS                written last

How it works (see docs/export.md):

* One pass reads the data for the partition summaries and the scan (``graph.plan_partitions``).
* One task per input partition then re-reads its partition, computes its final batch ids and
  writes the file groups that lie wholly inside it; the (at most two) groups at its edges are
  written as Arrow fragments into ``_cumbatch_work/``, and a second, small step joins the
  fragments of each edge group into its file. Nothing is persisted: memory is O(partition).
* Every file is written under a temporary name and renamed into place; each task records what
  it wrote in ``_cumbatch_work/``. A re-run of the same command after a crash skips the work
  already recorded and rewrites only what is missing; the bytes are deterministic, so the final
  folder is identical to an uninterrupted run.
* ``append=True`` reads only inputs not consumed yet and continues from the stored state: the
  last file is rewritten (atomically) when new rows continue its batches, every earlier file
  stays byte-identical, and N appends give the folder one export of all inputs gives.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import sys
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .options import BatchOptions

__all__ = [
    "to_files",
    "ExportResult",
    "ExportError",
    "folder_status",
    "list_inputs",
    "read_inputs",
    "MANIFEST",
    "SUCCESS",
    "REJECTS",
]

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
REJECTS = "_rejects.parquet"
OPEN = "_open.parquet"
WORK = "_cumbatch_work"
RUN = WORK + "/run.json"
FORMATS = ("parquet", "csv", "jsonl")
MANIFEST_KIND = "dask-cumbatch export"
MANIFEST_VERSION = 1
_FILE_RE = re.compile(r"^part-([0-9]{8,})\.(parquet|csv|jsonl)$")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
_OUR_NAMES = (MANIFEST, SUCCESS, REJECTS, OPEN, WORK)


class ExportError(RuntimeError):
    """An export that cannot go on; the message is one line that says what to do.

    >>> import tempfile, pandas as pd
    >>> out = tempfile.mkdtemp()
    >>> open(f"{out}/notes.txt", "w").write("mine")
    4
    >>> to_files(pd.DataFrame({"w": [1, 2]}), out, "w", 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dask_cumbatch.export.ExportError: output folder ... is not empty and holds no finished cumbatch export ...
    """


@dataclass
class ExportResult:
    """What :func:`to_files` did.

    ``batches``/``rows``/``files`` describe the whole folder after the run; ``files_written``
    and ``files_skipped`` this run's work (skipped: already complete from an earlier, interrupted
    or finished run); ``rejects`` the rows left out (``invalid="skip"``) in the whole folder,
    ``new_rows`` the rows this run added.

    >>> ExportResult("out", batches=2, rows=10, files=2, files_written=2).summary()
    '2 batches, 10 rows, 2 files in out (2 file(s) written, 0 kept; 0 rejected; 0.0 s)'
    """

    path: str
    batches: int = 0
    rows: int = 0
    files: int = 0
    files_written: int = 0
    files_skipped: int = 0
    rejects: int = 0
    new_rows: int = 0
    seconds: float = 0.0
    appended: bool = False
    resumed: bool = False
    up_to_date: bool = False

    def summary(self) -> str:
        """A one-line description, e.g. for logs.

        >>> ExportResult("out", up_to_date=True).summary()
        '0 batches, 0 rows, 0 files in out (up to date; 0 rejected; 0.0 s)'
        """
        what = "up to date" if self.up_to_date else (
            f"{self.files_written} file(s) written, {self.files_skipped} kept")
        return (f"{self.batches:,} batches, {self.rows:,} rows, {self.files:,} files in {self.path} "
                f"({what}; {self.rejects:,} rejected; {self.seconds:.1f} s)")


# ============================================================================ folders and files


class _Folder:
    """An output folder on any fsspec filesystem, with atomic writes."""

    def __init__(self, path, storage_options=None):
        import fsspec

        path = os.fspath(path)
        self.fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
        self.local = _is_local(self.fs)
        if self.local:
            root = os.path.abspath(root)
        self.root = root.rstrip("/") or "/"
        self.url = path

    def p(self, name: str) -> str:
        return posixpath.join(self.root, name)

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.p(name))

    def read(self, name: str) -> bytes:
        return self.fs.cat_file(self.p(name))

    def listing(self) -> dict:
        """Entries directly in the folder: ``{name: info}`` ({} when the folder is missing)."""
        try:
            if not self.fs.isdir(self.root):
                if self.fs.exists(self.root):
                    raise ExportError(f"output path {self.url} is a file, not a folder")
                return {}
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for info in entries:
            name = posixpath.basename(info["name"].rstrip("/"))
            if name:
                out[name] = info
        return out

    def makedirs(self, *names):
        self.fs.makedirs(self.root, exist_ok=True)
        for name in names:
            self.fs.makedirs(self.p(name), exist_ok=True)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write ``data`` to ``name``: a temporary name in the work folder, then a rename."""
        tmp = self.p(f"{WORK}/tmp/{posixpath.basename(name)}.{uuid.uuid4().hex}.tmp")
        if self.local:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.p(name))
            return
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, self.p(name))

    def touch(self, name: str) -> None:
        """Create an empty file (a marker such as _SUCCESS: no temporary name needed)."""
        with self.fs.open(self.p(name), "wb"):
            pass

    def remove(self, name: str) -> None:
        try:
            self.fs.rm(self.p(name), recursive=True)
        except FileNotFoundError:
            pass


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_name(group: int, fmt: str) -> str:
    """The file of file group ``group`` (``batch // batches_per_file``).

    >>> file_name(3, "parquet")
    'part-00000003.parquet'
    """
    return f"part-{group:08d}.{fmt}"


# ============================================================================ inputs


def list_inputs(spec, storage_options=None):
    """Expand an input spec (file, folder, glob, or a list of them) into data files, in order.

    Returns ``(kind, files)``: ``kind`` is ``"parquet"`` or ``"csv"`` (by extension), ``files``
    a list of ``{"path", "size", "mtime"}`` fingerprints. Folders are searched recursively;
    names starting with ``_`` or ``.`` are ignored. Files are in natural name order (as Dask
    reads them), each spec's files after the previous spec's.

    >>> import os, tempfile, pandas as pd
    >>> d = tempfile.mkdtemp()
    >>> for i in (1, 2, 10):
    ...     pd.DataFrame({"w": [i]}).to_parquet(os.path.join(d, f"part.{i}.parquet"))
    >>> kind, files = list_inputs(d)
    >>> kind, [os.path.basename(f["path"]) for f in files]
    ('parquet', ['part.1.parquet', 'part.2.parquet', 'part.10.parquet'])
    >>> sorted(files[0])
    ['mtime', 'path', 'size']
    """
    import fsspec
    from dask.utils import natural_sort_key

    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not specs:
        raise ExportError("no input given")
    files = []
    for s in specs:
        s = os.fspath(s)
        fs, root = fsspec.core.url_to_fs(s, **(storage_options or {}))
        if _is_local(fs):
            root = os.path.abspath(root)
        if any(ch in root for ch in "*?["):
            found = [p for p in fs.glob(root) if fs.isfile(p)]
        elif fs.isdir(root):
            found = [
                p for p in fs.find(root)
                if not any(part.startswith(("_", ".")) for part in posixpath.relpath(p, root).split("/"))
                and p.lower().endswith(_PARQUET_SUFFIXES + _CSV_SUFFIXES)
            ]
        elif fs.isfile(root):
            found = [root]
        else:
            raise ExportError(f"input not found: {s}")
        if not found:
            raise ExportError(f"no Parquet or CSV files found in {s}")
        for p in sorted(found, key=natural_sort_key):
            info = fs.info(p)
            files.append({"path": _url(fs, p), "size": int(info.get("size") or 0), "mtime": _mtime(fs, p, info)})
    kinds = {"csv" if f["path"].lower().endswith(_CSV_SUFFIXES) else "parquet" for f in files}
    if len(kinds) > 1:
        raise ExportError("the input mixes CSV and Parquet files; export them separately")
    return kinds.pop(), files


def _url(fs, path: str) -> str:
    return path if _is_local(fs) else fs.unstrip_protocol(path)


def _mtime(fs, path, info):
    if _is_local(fs):
        return os.stat(path).st_mtime_ns
    for key in ("mtime", "LastModified", "last_modified", "updated", "ETag", "etag", "md5Hash"):
        if info.get(key) is not None:
            return str(info[key])
    try:
        return str(fs.modified(path))
    except Exception:
        return None


def read_inputs(kind: str, paths: list, storage_options=None):
    """A Dask DataFrame over the given data files, in order (one or more partitions per file).

    >>> import os, tempfile, pandas as pd
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> pd.DataFrame({"w": [1, 2, 3]}).to_csv(path, index=False)
    >>> read_inputs("csv", [path]).w.sum().compute()
    np.int64(6)
    """
    import dask.dataframe as dd

    try:
        if kind == "csv":
            return dd.read_csv(list(paths), storage_options=storage_options)
        return dd.read_parquet(list(paths), storage_options=storage_options)
    except Exception as exc:
        raise ExportError(f"cannot read the input ({type(exc).__name__}): {_one_line(exc)}") from exc


def _one_line(exc) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(text.split())
    return text[:500] or type(exc).__name__


class _Source:
    """Where rows come from: input files (read per run, only new ones on append) or a frame."""

    def __init__(self, source, inputs=None, storage_options=None):
        import dask.dataframe as dd

        self.storage_options = storage_options
        self.frame = None
        self.kind = None
        if isinstance(source, (str, os.PathLike)) or (
            isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source)
        ):
            self.kind, self.files = list_inputs(source, storage_options)
            return
        if isinstance(source, pd.DataFrame):
            source = dd.from_pandas(source, npartitions=1, sort=False)
        if not isinstance(source, dd.DataFrame):
            raise TypeError(
                f"to_files needs a Dask or pandas DataFrame or input path(s), not {type(source).__name__}"
            )
        self.frame = source
        from dask.base import tokenize

        paths = inputs if inputs is not None else _frame_paths(source)
        if paths:  # file-backed: the files' sizes and times tell whether the input changed
            entry = {"dataframe": tokenize(source._meta, source.npartitions),
                     "files": list_inputs(paths, storage_options)[1]}
        else:  # in-memory data: Dask's deterministic token of the data
            entry = {"dataframe": tokenize(source)}
        self.files = [entry]

    def ddf(self, entries):
        if self.frame is not None:
            return self.frame
        return read_inputs(self.kind, [e["path"] for e in entries], self.storage_options)


def _frame_paths(ddf):
    """Input paths of the read_parquet/read_csv expressions under ``ddf`` (for the fingerprint)."""
    paths = []
    try:
        for node in ddf.expr.walk():
            if "path" in getattr(node, "_parameters", ()):
                value = node.operand("path")
                paths.extend([value] if isinstance(value, str) else list(value))
    except Exception:
        return []
    return [p for p in paths if isinstance(p, str)]


# ============================================================================ settings & manifest


def _settings(opts: BatchOptions, fmt: str, bpf: int) -> dict:
    limit = opts.limit
    if isinstance(limit, float) and limit.is_integer() and abs(limit) < 2**53:
        limit = int(limit)
    return {
        "weight": opts.weight,
        "limit": limit,
        "mode": opts.mode,
        "max_rows": opts.max_rows,
        "by": list(opts.by),
        "cost": opts.cost,
        "oversize": opts.oversize,
        "invalid": opts.invalid,
        "name": opts.name,
        "multiple": opts.multiple,
        "sort_window": opts.sort_window,
        "format": fmt,
        "batches_per_file": bpf,
    }


_OPTION_FLAGS = {
    "weight": "--weight", "limit": "--limit", "mode": "--mode", "max_rows": "--max-rows", "by": "--by",
    "cost": "--cost", "oversize": "--oversize", "invalid": "--invalid", "name": "--name",
    "multiple": "--multiple", "sort_window": "--sort-window", "format": "--format",
    "batches_per_file": "--batches-per-file",
}


def _settings_diff(old: dict, new: dict) -> str | None:
    for key in _OPTION_FLAGS:
        if old.get(key) != new.get(key):
            return f"{key}={old.get(key)!r} there, {new.get(key)!r} now"
    return None


def _dumps(obj) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _check_plain_name(name, what="file") -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or "\x00" in name or name != name.strip() or os.path.isabs(name):
        raise ExportError(f"manifest lists an unsafe {what} name {name!r}; not touching the folder")
    return name


def validate_manifest(m, folder: _Folder | None = None, listing=None) -> dict:
    """Check a manifest read from disk: structure, plain file names inside the folder, sizes.

    A manifest is data, not instructions: any problem raises :class:`ExportError` before
    anything is written.
    """
    def bad(why):
        raise ExportError(f"{MANIFEST} is not a valid dask-cumbatch manifest ({why}); not touching the folder")

    if not isinstance(m, dict) or m.get("kind") != MANIFEST_KIND:
        bad("wrong kind")
    if m.get("version") != MANIFEST_VERSION:
        bad(f"version {m.get('version')!r}, expected {MANIFEST_VERSION}")
    for key, typ in (("settings", dict), ("inputs", list), ("state", dict), ("batches", list), ("columns", list)):
        if not isinstance(m.get(key), typ):
            bad(f"{key} missing or not a {typ.__name__}")
    s = m["settings"]
    fmt, bpf = s.get("format"), s.get("batches_per_file")
    if fmt not in FORMATS or not isinstance(bpf, int) or bpf < 1:
        bad("bad format or batches_per_file")
    for i, b in enumerate(m["batches"]):
        if not isinstance(b, dict) or b.get("batch") != i:
            bad(f"batch entry {i} is not batch {i}")
        if not all(isinstance(b.get(k), int) and b[k] >= 0 for k in ("rows", "bytes")):
            bad(f"batch {i} has bad rows/bytes")
        if not isinstance(b.get("total"), (int, float)) or not isinstance(b.get("sha256"), str):
            bad(f"batch {i} has bad total/sha256")
        name = _check_plain_name(b.get("file"))
        if name != file_name(i // bpf, fmt):
            bad(f"batch {i} names file {name!r}, expected {file_name(i // bpf, fmt)!r}")
    for key in ("rejects", "open"):
        extra = m.get(key)
        if extra is not None:
            if not isinstance(extra, dict) or extra.get("file") not in (REJECTS, OPEN):
                bad(f"bad {key} entry")
            _check_plain_name(extra["file"])
    try:
        from .engine import Carry

        Carry.from_json(json.dumps(m["state"]))
    except Exception as exc:
        bad(f"bad state: {_one_line(exc)}")
    if folder is not None:
        listing = folder.listing() if listing is None else listing
        for name, size in _manifest_files(m).items():
            info = listing.get(name)
            if info is None:
                raise ExportError(f"{name} is listed in {MANIFEST} but missing from {folder.url}")
            if info.get("islink") or info.get("type") not in ("file", None):
                raise ExportError(f"{name} in {folder.url} is not a plain file (a link?); not touching the folder")
            if int(info.get("size") or 0) != size:
                raise ExportError(
                    f"{name} in {folder.url} has {info.get('size')} bytes, the manifest says {size}: "
                    "the folder was changed after the export; re-export with --overwrite"
                )
    return m


def _manifest_files(m, field: str = "bytes") -> dict:
    """``{file: entry[field]}`` over every file the manifest lists (batches, rejects, open)."""
    files = {b["file"]: b[field] for b in m["batches"]}
    for key in ("rejects", "open"):
        if m.get(key):
            files[m[key]["file"]] = m[key][field]
    return files


def verify_files(folder: _Folder, m, names=None) -> None:
    """Compare the sha256 of the named files (default: every file) with the manifest."""
    shas = _manifest_files(m, "sha256")
    for name in (names if names is not None else sorted(shas)):
        if _sha256(folder.read(name)) != shas[name]:
            raise ExportError(
                f"{name} in {folder.url} does not match its checksum in {MANIFEST}; "
                "the folder was changed after the export: re-export with --overwrite"
            )


def _load_json(folder: _Folder, name: str, what: str):
    try:
        return json.loads(folder.read(name).decode())
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise ExportError(f"cannot read {what} {name} in {folder.url}: {_one_line(exc)}") from exc


# ============================================================================ Arrow and encoders


@dataclass
class _Ctx:
    """Everything a write task needs (pickled to workers)."""

    folder: _Folder
    opts: BatchOptions
    is_float: bool
    fmt: str
    bpf: int
    schema: object  # pyarrow.Schema of the output files (id column included)
    keep_index: bool
    reason_column: str
    resuming: bool
    first_group: int  # groups below were written by earlier runs


def _output_schema(meta: pd.DataFrame, opts: BatchOptions, keep_index: bool):
    import pyarrow as pa

    if keep_index:
        meta = meta.reset_index()
    meta = meta.assign(**{opts.name: np.array([], dtype=np.int64)})
    return pa.Schema.from_pandas(meta, preserve_index=False)


def _conform(table, schema):
    """Cast ``table`` to ``schema`` (types of columns the schema knows) with its metadata."""
    import pyarrow as pa

    if table.schema.names != schema.names:
        table = table.select(schema.names)
    fields = []
    for got, want in zip(table.schema, schema):
        unknown = pa.types.is_dictionary(want.type) or "null" in str(want.type)  # e.g. categories, all-None
        fields.append(got if unknown or got.type == want.type else want)
    target = pa.schema(fields, metadata=schema.metadata)
    if not table.schema.equals(target, check_metadata=False):
        table = table.cast(target)
    return table.replace_schema_metadata(schema.metadata)


def _to_table(rows: pd.DataFrame, ids, ctx: _Ctx):
    import pyarrow as pa

    if ctx.keep_index:
        rows = rows.reset_index()
    table = pa.Table.from_pandas(rows, preserve_index=False, nthreads=1)
    col = pa.array(np.asarray(ids, dtype=np.int64), type=pa.int64())
    if ctx.opts.name in table.column_names:
        table = table.set_column(table.column_names.index(ctx.opts.name), ctx.opts.name, col)
    else:
        table = table.append_column(ctx.opts.name, col)
    return _conform(table, ctx.schema)


def encode(table, fmt: str, dictionary: tuple = ()) -> bytes:
    """The bytes of one output file (deterministic: same table, same bytes).

    Parquet dictionary-encodes text columns and the columns named in ``dictionary`` (the batch
    id, constant within a batch).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = table.combine_chunks()
    if fmt == "parquet":
        buf = pa.BufferOutputStream()
        pq.write_table(
            table, buf, compression="snappy", version="2.6", data_page_version="1.0",
            use_dictionary=_dictionary_columns(table.schema, dictionary), write_statistics=True, store_schema=True,
            write_page_index=False, row_group_size=1 << 20,
        )
        return buf.getvalue().to_pybytes()
    df = table.to_pandas()
    if fmt == "csv":
        return df.to_csv(index=False, lineterminator="\n").encode()
    if not len(df):
        return b""
    text = df.to_json(orient="records", lines=True, double_precision=15, date_format="iso",
                      date_unit="ns", force_ascii=False)
    return (text if text.endswith("\n") else text + "\n").encode()


def _dictionary_columns(schema, also=()) -> list:
    """Columns worth dictionary-encoding: text, binary, categoricals and ``also``.

    Other numbers are left plain: building a dictionary per column per file cost a third of the
    encoding time for the benchmark's small batch files, and for unique ids it is wasted. The
    batch id column, constant within a batch, encodes faster and smaller with one.
    """
    import pyarrow.types as pt

    wanted = (pt.is_string, pt.is_large_string, pt.is_binary, pt.is_large_binary, pt.is_dictionary)
    return [f.name for f in schema if f.name in also or any(test(f.type) for test in wanted)]


def _ipc_bytes(table) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _ipc_read(data: bytes):
    import pyarrow as pa

    return pa.ipc.open_file(pa.BufferReader(data)).read_all()


def _parquet_read(data: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data))


def _concat(tables, schema=None):
    import pyarrow as pa

    tables = [t for t in tables if t is not None]
    if schema is not None:
        tables = [t.replace_schema_metadata(schema.metadata) for t in tables]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def _number(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v
    return int(v)


def _batch_stats(ids, w, is_float) -> list:
    """``[[batch, rows, total], ...]`` for sorted ids (totals summed in row order)."""
    from . import engine as kernels

    w = np.ascontiguousarray(w, dtype=np.float64 if is_float else np.int64)
    batch, rows, total, _, _, _ = kernels.batch_stats(
        np.ascontiguousarray(ids, dtype=np.int64), w, np.zeros(len(ids), np.int64)
    )
    return [[int(b), int(r), _number(t)] for b, r, t in zip(batch, rows, total)]


def _group_stats(table, ctx: _Ctx) -> list:
    """Batch stats of a file group's rows, from its table."""
    from .engine import weight_values as _weights

    w = _weights(table.column(ctx.opts.weight).to_pandas())[0]
    return _batch_stats(table.column(ctx.opts.name).to_numpy(), w, ctx.is_float)


def _write_group(ctx: _Ctx, group: int, table, may_exist: bool, stats=None) -> dict:
    """Write one file group; with ``may_exist`` an existing file (from an interrupted run) is kept."""
    name = file_name(group, ctx.fmt)
    data = None
    kept = False
    if may_exist and ctx.resuming:
        try:
            data = ctx.folder.read(name)
            kept = True
        except FileNotFoundError:
            data = None
    if data is None:
        data = encode(table, ctx.fmt, (ctx.opts.name,))
        ctx.folder.write_atomic(name, data)
    return {"group": int(group), "file": name, "bytes": len(data), "sha256": _sha256(data),
            "batches": stats if stats is not None else _group_stats(table, ctx), "kept": kept}


def _reasons(col: pd.Series) -> np.ndarray:
    na = col.isna().to_numpy(dtype=bool)
    out = np.full(len(col), "invalid", dtype=object)
    if pd.api.types.is_bool_dtype(col.dtype):
        out[na] = "missing"
        return out
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        out[values < 0] = "negative"
        out[np.isinf(values)] = "infinite"
    out[na] = "NaN" if col.dtype.kind == "f" else "missing"
    return out


# ============================================================================ tasks


def _export_partition(df: pd.DataFrame, k: int, entry, ctx: _Ctx) -> dict:
    """Write one input partition's batches (the task for partition ``k``); returns its record."""
    import pyarrow as pa

    from . import engine as sc

    opts = ctx.opts
    out = {"part": k, "groups": [], "frags": [], "rejects": 0, "rows": 0}
    ids, prep = sc.batch_ids(df, opts, ctx.is_float, entry)
    if prep.invalid is not None and prep.invalid.any():
        bad = df.iloc[np.flatnonzero(prep.invalid)]
        reasons = _reasons(bad[opts.weight])
        if ctx.keep_index:
            bad = bad.reset_index()
        rej = pa.Table.from_pandas(bad, preserve_index=False)
        rej = rej.append_column(ctx.reason_column, pa.array(reasons, type=pa.string()))
        ctx.folder.write_atomic(f"{WORK}/rej/p{k:08d}.arrow", _ipc_bytes(rej))
        out["rejects"] = int(len(bad))
    n = len(ids)
    out["rows"] = int(n)
    if n:
        rows = df if prep.keep is None else df.iloc[prep.keep]
        whole = _to_table(rows, ids, ctx)  # one conversion per partition, then zero-copy slices
        del rows
        stats = _batch_stats(ids, prep.w, ctx.is_float)
        groups = ids // ctx.bpf
        cuts = np.flatnonzero(groups[1:] != groups[:-1]) + 1
        bounds = np.concatenate([[0], cuts, [n]])
        last = len(bounds) - 2
        first_batch = int(ids[0])
        for s, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
            g = int(groups[a])
            table = whole.slice(a, b - a)
            if s == 0 or s == last:
                name = f"{WORK}/frag/g{g:010d}-p{k:08d}.arrow"
                ctx.folder.write_atomic(name, _ipc_bytes(table))
                out["frags"].append([g, k, name])
            else:
                lo, hi = int(ids[a]) - first_batch, int(ids[b - 1]) - first_batch + 1
                out["groups"].append(_write_group(ctx, g, table, may_exist=True, stats=stats[lo:hi]))
    ctx.folder.write_atomic(f"{WORK}/parts/p{k:08d}.json", _dumps(out))
    return out


def _combine_group(group: int, frags: list, ctx: _Ctx, is_last: bool) -> dict:
    """Join the fragments of a file group that spans partitions (or a partition edge) into its file."""
    tables = [_ipc_read(ctx.folder.read(name)) for name in frags]
    table = _concat(tables, ctx.schema)
    rec = _write_group(ctx, group, table, may_exist=False)
    if is_last and ctx.fmt != "parquet":
        data = encode(table, "parquet", (ctx.opts.name,))
        ctx.folder.write_atomic(OPEN, data)
        rec["open"] = {"file": OPEN, "rows": int(table.num_rows), "bytes": len(data), "sha256": _sha256(data)}
    ctx.folder.write_atomic(f"{WORK}/groups/g{group:010d}.json", _dumps(rec))
    return rec


# ============================================================================ scheduling & progress


@contextlib.contextmanager
def _scheduler(scheduler):
    """Use ``scheduler``: None (Dask's default / an active client), a local scheduler name, or
    a ``dask.distributed`` scheduler address (a client is opened and closed around the export)."""
    import dask

    from . import graph

    if scheduler is None:
        yield graph.active_client()
        return
    if not isinstance(scheduler, str):  # a distributed Client
        yield scheduler
        return
    if scheduler in ("threads", "threading", "processes", "multiprocessing", "sync", "synchronous",
                     "single-threaded"):
        with dask.config.set(scheduler=scheduler):
            yield None
        return
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is a test dependency
        raise ExportError("--scheduler ADDRESS needs dask.distributed: pip install distributed") from exc
    try:
        client = Client(scheduler, timeout="20s")
    except Exception as exc:
        raise ExportError(f"cannot connect to the Dask scheduler at {scheduler}: {_one_line(exc)}") from exc
    try:
        with client.as_current():
            yield client
    finally:
        client.close()


def _compute(tasks, progress: bool, client):
    """Compute ``tasks`` (a list of delayed objects) with a progress bar if asked."""
    import dask

    if not tasks:
        return []
    if client is not None:
        futures = client.compute(tasks)
        if progress:
            from distributed import progress as dprogress

            with contextlib.redirect_stdout(sys.stderr):
                dprogress(futures)
                print(file=sys.stderr)
        return client.gather(futures)
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr, minimum=1.0):
            return list(dask.compute(*tasks))
    return list(dask.compute(*tasks))


@contextlib.contextmanager
def _maybe_progress(progress: bool, client):
    if progress and client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr, minimum=1.0):
            yield
    else:
        yield


# ============================================================================ the export


def to_files(
    ddf,
    path,
    weight,
    limit,
    *,
    format: str = "parquet",
    batches_per_file: int = 1,
    resume: bool = True,
    max_skips: int | None = 0,
    progress: bool = True,
    append: bool = False,
    overwrite: bool = False,
    verify: bool = False,
    storage_options: dict | None = None,
    input_storage_options: dict | None = None,
    scheduler=None,
    inputs=None,
    **opts,
) -> ExportResult:
    """Cut ``ddf`` into batches by cumulative ``weight`` and write them to files in ``path``.

    ``ddf`` is a Dask (or pandas) DataFrame, or input path(s): a Parquet/CSV file, folder, glob
    or fsspec URL (then a re-run checks the inputs' sizes and modification times, and an append
    reads only new files). ``weight`` must be a column name; ``limit`` and ``**opts`` are the
    batching options of ``ddf.cumbatch.repartition`` (``mode``, ``max_rows``, ``by``, ``cost``,
    ``oversize``, ``invalid``, ``name``, ``multiple``, ``sort_window``).

    Files: one per ``batches_per_file`` consecutive batches, ``format`` ``"parquet"``, ``"csv"``
    or ``"jsonl"``, plus ``_manifest.json``, ``_rejects.parquet`` and ``_SUCCESS`` (see
    docs/export.md). ``resume`` continues an interrupted run of the same export (``False``:
    refuse instead); ``overwrite`` replaces whatever the folder holds; ``append`` adds inputs not
    exported yet, continuing the last batch. ``max_skips`` aborts (before writing files) when a
    run would leave out more than that many invalid rows with ``invalid="skip"``. The default 0
    makes skipping explicit, as a batch framework's skip limit does; ``None`` means no limit.
    ``verify`` checks every file's checksum before an append (default: the files it rewrites).
    ``scheduler`` is a ``dask.distributed`` address, a ``Client``, or a local scheduler name.
    The progress bar shows only when ``progress`` and stderr is a terminal.

    >>> import json, os, tempfile, pandas as pd
    >>> out = os.path.join(tempfile.mkdtemp(), "batches")
    >>> df = pd.DataFrame({"w": [3, 3, 3, 3, 5], "v": list("abcde")})
    >>> result = to_files(df, out, "w", 6)
    >>> result.batches, result.files_written
    (3, 3)
    >>> sorted(os.listdir(out))  # doctest: +NORMALIZE_WHITESPACE
    ['_SUCCESS', '_manifest.json', 'part-00000000.parquet', 'part-00000001.parquet',
     'part-00000002.parquet']
    >>> pd.read_parquet(os.path.join(out, "part-00000001.parquet"))
       w  v  batch
    0  3  c      1
    1  3  d      1
    >>> [(b["batch"], b["rows"], b["total"]) for b in json.load(open(os.path.join(out, "_manifest.json")))["batches"]]
    [(0, 2, 6), (1, 2, 6), (2, 1, 5)]
    >>> to_files(df, out, "w", 6).up_to_date  # the same export again: nothing to do
    True
    """
    t0 = time.perf_counter()
    if not isinstance(weight, str):
        raise TypeError(f"to_files needs the weight as a column name, not {type(weight).__name__}")
    options = BatchOptions.make(weight, limit, **opts)
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {', '.join(map(repr, FORMATS))}")
    if isinstance(batches_per_file, bool) or not isinstance(batches_per_file, (int, np.integer)) or batches_per_file < 1:
        raise ValueError(f"batches_per_file must be a whole number >= 1, got {batches_per_file!r}")
    if max_skips is not None and (isinstance(max_skips, bool) or not isinstance(max_skips, (int, np.integer)) or max_skips < 0):
        raise ValueError(f"max_skips must be a whole number >= 0 or None, got {max_skips!r}")
    if options.name == options.weight or options.name in options.by:
        raise ValueError(f"name={options.name!r} would overwrite the weight or by= column; pick another id column name")
    source = _Source(ddf, inputs, input_storage_options or storage_options)
    folder = _Folder(path, storage_options)
    job = _Job(
        folder=folder, source=source, options=options,
        settings=_settings(options, format, int(batches_per_file)),
        max_skips=max_skips, progress=bool(progress) and _isatty(sys.stderr),
        verify=verify,
    )
    with _scheduler(scheduler) as client:
        job.client = client
        result = job.run(append=append, overwrite=overwrite, resume=resume)
    result.seconds = time.perf_counter() - t0
    return result


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except Exception:
        return False


@dataclass
class _Job:
    folder: _Folder
    source: _Source
    options: BatchOptions
    settings: dict
    max_skips: int | None
    progress: bool
    verify: bool
    client: object = None
    result: ExportResult = None
    executed: bool = False

    # ---------------------------------------------------------------- top level
    def run(self, append: bool, overwrite: bool, resume: bool) -> ExportResult:
        folder = self.folder
        self.result = ExportResult(path=folder.url)
        current = self.source.files
        listing = folder.listing()
        if overwrite and listing:
            self._clear(listing)
            listing = {}
        for _ in range(4):
            run = _load_json(folder, RUN, "the run record") if WORK in listing else None
            if run is None and WORK in listing:  # a run that stopped before it started writing
                folder.remove(WORK)
                listing.pop(WORK)
            manifest = _load_json(folder, MANIFEST, "the manifest") if MANIFEST in listing else None
            if run is not None:
                self._check_run(run, self._current(run.get("inputs"), append), append, resume)
                self.result.resumed = True
                self._execute(run, fresh=False)
            elif manifest is not None:
                validate_manifest(manifest, folder, listing)
                diff = _settings_diff(manifest["settings"], self.settings)
                if diff:
                    raise ExportError(
                        f"{folder.url} holds an export made with other options ({diff}); "
                        "use the same options, or --overwrite to replace it"
                    )
                current = self._current(manifest["inputs"], append)
                if manifest["inputs"] == current:
                    if SUCCESS not in listing:
                        folder.touch(SUCCESS)
                    return self._finish_result(manifest, up_to_date=not self.executed)
                if not append:
                    raise ExportError(
                        f"{folder.url} holds an export of other inputs ({_inputs_diff(manifest['inputs'], current)}); "
                        "pass --append to add new inputs, or --overwrite to replace it"
                    )
                first_new = self._consumed_prefix(manifest["inputs"], current)
                run = {"kind": "append", "settings": self.settings, "inputs": current,
                       "first_new": first_new, "base": manifest}
                self._execute(run, fresh=True)
            elif listing:
                names = ", ".join(sorted(listing)[:5])
                raise ExportError(
                    f"output folder {folder.url} is not empty and holds no finished cumbatch export "
                    f"(found {names}); choose an empty folder or pass --overwrite"
                )
            else:
                run = {"kind": "export", "settings": self.settings, "inputs": current,
                       "first_new": 0, "base": None}
                self._execute(run, fresh=True)
            listing = folder.listing()
        raise ExportError("internal error: the export did not settle")  # pragma: no cover

    def _current(self, consumed, append) -> list:
        """The inputs after this run: listed files, or for a DataFrame source on append the
        consumed ones plus this frame (unless it is the last one consumed)."""
        current = self.source.files
        if self.source.frame is None or not append or not isinstance(consumed, list):
            return current
        if consumed and consumed[-1] == current[0]:
            return consumed
        return consumed + current

    def _finish_result(self, manifest, up_to_date) -> ExportResult:
        r = self.result
        r.batches = len(manifest["batches"])
        r.rows = int(manifest.get("rows", 0))
        r.files = len({b["file"] for b in manifest["batches"]})
        r.rejects = int(manifest.get("skipped", 0))
        r.up_to_date = up_to_date
        if up_to_date and not r.files_skipped:
            r.files_skipped = r.files
        return r

    def _clear(self, listing):
        folder = self.folder
        for f in self.source.files:
            for path in [f.get("path")] + [g["path"] for g in f.get("files", [])]:
                if path and folder.local and os.path.abspath(path).startswith(folder.root.rstrip("/") + "/"):
                    raise ExportError(f"--overwrite would delete the input {path}: choose another output folder")
        for name in listing:
            folder.remove(name)

    def _check_run(self, run, current, append, resume):
        if not isinstance(run, dict) or run.get("kind") not in ("export", "append") \
                or not isinstance(run.get("inputs"), list) or not isinstance(run.get("settings"), dict) \
                or not isinstance(run.get("first_new"), int):
            raise ExportError(f"{WORK}/run.json in {self.folder.url} is damaged; re-export with --overwrite")
        if run.get("base") is not None:
            validate_manifest(run["base"])
        url = self.folder.url
        if not resume:
            raise ExportError(f"{url} holds an interrupted export; resume it, or pass --overwrite to start over")
        diff = _settings_diff(run["settings"], self.settings)
        if diff:
            raise ExportError(
                f"{url} holds an interrupted export made with other options ({diff}); "
                "re-run it with the same options, or --overwrite to start over"
            )
        recorded = run["inputs"]
        if run["kind"] == "append" and not append:
            raise ExportError(f"an append run into {url} was interrupted; repeat it with --append (or --overwrite)")
        if recorded == current:
            return
        if append and current[: len(recorded)] == recorded:
            return  # finish the interrupted run, then append the rest
        raise ExportError(
            f"{url} holds an interrupted export of other inputs ({_inputs_diff(recorded, current)}); "
            "re-run it with the same inputs, or --overwrite to start over"
        )

    def _consumed_prefix(self, consumed, current) -> int:
        if self.source.frame is not None:
            return len(consumed)
        paths = {f["path"]: f for f in current}
        for k, old in enumerate(consumed):
            now = paths.get(old.get("path"))
            if now is None:
                raise ExportError(f"input {old.get('path')} was exported before but is missing now; "
                                  "restore it or re-export with --overwrite")
            if now != old:
                raise ExportError(f"input {old.get('path')} changed since it was exported (size or modification "
                                  "time differ); re-export with --overwrite")
            if k >= len(current) or current[k]["path"] != old["path"]:
                new = current[k]["path"] if k < len(current) else "?"
                raise ExportError(f"new input {new} sorts before the already exported {old['path']}; "
                                  "appended inputs must come after the exported ones in name order")
        return len(consumed)

    # ---------------------------------------------------------------- one run
    def _execute(self, run: dict, fresh: bool) -> None:
        from . import graph
        from .engine import Carry
        import pyarrow as pa

        folder, opts, settings = self.folder, self.options, self.settings
        fmt, bpf = settings["format"], settings["batches_per_file"]
        base = run.get("base")
        start = Carry.from_json(json.dumps(base["state"])) if base else None
        new_entries = run["inputs"][run["first_new"]:]
        ddf = self.source.ddf(new_entries)
        prep = graph.prepare_frame(ddf, opts.weight, opts)
        meta = prep.ddf._meta
        keep_index = any(n is not None for n in meta.index.names)
        schema = _output_schema(meta, opts, keep_index)
        columns = [[f.name, str(f.type)] for f in schema]
        if base is not None and base["columns"] != columns and base["batches"]:
            raise ExportError(f"the new input's columns differ from the exported ones ({_columns_diff(base['columns'], columns)})")
        reason = "reason" if "reason" not in schema.names else "_cumbatch_reason"
        n_old = len(base["batches"]) if base else 0
        g_open = (n_old - 1) // bpf if n_old else None
        saved = self._read_base(base, g_open, fmt) if fresh and base is not None else {}

        with _maybe_progress(self.progress, self.client):
            plan = graph.plan_partitions(prep, start)
        if self.max_skips is not None and plan.skipped > self.max_skips:
            raise ExportError(
                f"{plan.skipped} row(s) have invalid weights in column {opts.weight!r}, more than "
                f"--max-skips {self.max_skips}; nothing was exported"
                + ("" if self.max_skips else " (set --max-skips / max_skips= to allow skipping)")
            )

        # the open file group of the previous run (rewritten when new rows continue it)
        first_group = g_open if g_open is not None else 0
        folder.makedirs(WORK, f"{WORK}/tmp", f"{WORK}/frag", f"{WORK}/parts", f"{WORK}/groups", f"{WORK}/rej")
        if fresh:
            for name, data in saved.items():  # before anything changes: what an append rewrites
                folder.write_atomic(f"{WORK}/{name}", data)
            folder.write_atomic(RUN, _dumps(run))
            folder.remove(SUCCESS)

        ctx = _Ctx(folder=folder, opts=prep.opts, is_float=prep.is_float, fmt=fmt, bpf=bpf, schema=schema,
                   keep_index=keep_index, reason_column=reason, resuming=not fresh, first_group=first_group)

        # ---- pass 2: one task per partition
        from dask import delayed

        # the partitions the summary pass saw (Dask may fuse projected reads: use the same expression)
        parts = graph.as_mapped(prep.ddf).to_delayed(optimize_graph=True)
        if len(parts) != len(plan.entries):  # pragma: no cover - a change in Dask or the core
            raise ExportError(f"internal error: {len(parts)} partitions to write, {len(plan.entries)} planned")
        records, todo = {}, []
        for k in range(len(parts)):
            rec = None if fresh else _load_json(folder, f"{WORK}/parts/p{k:08d}.json", "a task record")
            if rec is not None:  # done by an interrupted run
                for grec in rec["groups"]:
                    grec["kept"] = True
                records[k] = rec
            else:
                todo.append(k)
        tasks = [delayed(_export_partition, pure=False)(parts[k], k, plan.entries[k], ctx) for k in todo]
        for rec in _compute(tasks, self.progress, self.client):
            records[rec["part"]] = rec

        # ---- the open group of the previous run, as a fragment in front of the new rows
        frags: dict[int, list] = {}
        backdated = int(plan.backdated_prior or 0)
        if base is not None and g_open is not None:
            prev = _ipc_read(folder.read(f"{WORK}/base_open.arrow"))
            if backdated:
                ids = prev.column(opts.name).to_numpy().copy()
                ids[len(ids) - backdated:] = start.batches
                col = pa.array(ids, type=pa.int64())
                prev = prev.set_column(prev.column_names.index(opts.name), opts.name, col)
            gids = prev.column(opts.name).to_numpy() // bpf
            for g in np.unique(gids).tolist():
                piece = prev.filter(pa.array(gids == g))
                name = f"{WORK}/frag/g{g:010d}-base.arrow"
                if fresh or not folder.exists(name):
                    folder.write_atomic(name, _ipc_bytes(piece))
                frags.setdefault(int(g), []).append((-1, name))
        for k in sorted(records):
            for g, part, name in records[k]["frags"]:
                frags.setdefault(int(g), []).append((int(part), name))

        end_batches = plan.end_state.batches
        last_group = (end_batches - 1) // bpf if end_batches else None
        group_recs: dict[int, dict] = {}
        for k in sorted(records):
            for rec in records[k]["groups"]:
                group_recs[rec["group"]] = rec
        unchanged_open = (
            g_open is not None and not backdated and len(frags.get(g_open, [])) == 1
        )
        if unchanged_open:  # nothing new in the previous run's last file: keep it as it is
            frags.pop(g_open)
        combine, done = [], {}
        for g, items in sorted(frags.items()):
            rec = None if fresh else _load_json(folder, f"{WORK}/groups/g{g:010d}.json", "a task record")
            if rec is not None:  # done by an interrupted run
                rec["kept"] = True
                done[g] = rec
                continue
            names = [name for _, name in sorted(items)]
            combine.append(delayed(_combine_group, pure=False)(g, names, ctx, g == last_group))
        for rec in list(done.values()) + _compute(combine, self.progress and len(combine) > 50, self.client):
            group_recs[rec["group"]] = rec

        # ---- rejects
        rej_tables = []
        if base is not None and folder.exists(f"{WORK}/base_rejects.arrow"):
            rej_tables.append(_ipc_read(folder.read(f"{WORK}/base_rejects.arrow")))
        new_rejects = 0
        for k in sorted(records):
            if records[k]["rejects"]:
                new_rejects += records[k]["rejects"]
                rej_tables.append(_ipc_read(folder.read(f"{WORK}/rej/p{k:08d}.arrow")))
        rejects_entry = base.get("rejects") if base else None
        if new_rejects:
            table = _concat(rej_tables)
            data = encode(table, "parquet")
            folder.write_atomic(REJECTS, data)
            rejects_entry = {"file": REJECTS, "rows": int(table.num_rows), "bytes": len(data), "sha256": _sha256(data)}

        # ---- the manifest
        batches = [b for b in base["batches"] if b["batch"] // bpf < first_group] if base else []
        open_entry = base.get("open") if base else None
        for g in sorted(group_recs):
            rec = group_recs[g]
            if rec.get("kept"):
                self.result.files_skipped += 1
            else:
                self.result.files_written += 1
            if rec.get("open"):
                open_entry = rec["open"]
            for b, r, t in rec["batches"]:
                batches.append({"batch": b, "rows": r, "total": t, "file": rec["file"],
                                "bytes": rec["bytes"], "sha256": rec["sha256"]})
        if unchanged_open:
            batches.extend(b for b in base["batches"] if b["batch"] // bpf == g_open)
        batches.sort(key=lambda b: b["batch"])
        n_rows = (base["rows"] if base else 0) + plan.n_rows
        skipped = (base["skipped"] if base else 0) + plan.skipped
        if [b["batch"] for b in batches] != list(range(end_batches)) or sum(b["rows"] for b in batches) != n_rows:
            raise ExportError(
                "internal error: the written batches do not match the plan "
                f"({len(batches)} batches / {sum(b['rows'] for b in batches)} rows written, "
                f"{end_batches} / {n_rows} planned); please report this"
            )
        manifest = {
            "kind": MANIFEST_KIND,
            "version": MANIFEST_VERSION,
            "settings": settings,
            "columns": columns,
            "inputs": run["inputs"],
            "state": json.loads(plan.end_state.to_json()),
            "n_batches": end_batches,
            "rows": n_rows,
            "skipped": skipped,
            "files": len({b["file"] for b in batches}),
            "rejects": rejects_entry,
            "open": open_entry if fmt != "parquet" else None,
            "batches": batches,
        }
        folder.write_atomic(MANIFEST, _dumps(manifest))
        folder.touch(SUCCESS)
        folder.remove(WORK)
        self.executed = True
        self.result.new_rows += plan.n_rows
        self.result.appended = self.result.appended or base is not None

    def _read_base(self, base, g_open, fmt) -> dict:
        """Check and read what an append rewrites: the previous run's open rows and rejects.

        Returns ``{work file name: bytes}`` to keep in the work folder before anything changes.
        """
        folder = self.folder
        saved = {}
        if g_open is not None:
            name = OPEN if fmt != "parquet" else file_name(g_open, fmt)
            if fmt != "parquet" and not base.get("open"):
                raise ExportError(f"{MANIFEST} lists no {OPEN}: cannot append to this {fmt} export; re-export with --overwrite")
            data = folder.read(_check_plain_name(name))
            if _sha256(data) != _manifest_files(base, "sha256")[name]:
                raise ExportError(f"{name} in {folder.url} does not match its checksum in {MANIFEST}; "
                                  "re-export with --overwrite")
            if self.verify:
                verify_files(folder, base)
            saved["base_open.arrow"] = _ipc_bytes(_parquet_read(data))
        elif self.verify:
            verify_files(folder, base)
        if base.get("rejects"):
            data = folder.read(REJECTS)
            if _sha256(data) != base["rejects"]["sha256"]:
                raise ExportError(f"{REJECTS} in {folder.url} does not match its checksum in {MANIFEST}")
            saved["base_rejects.arrow"] = _ipc_bytes(_parquet_read(data))
        return saved


def _inputs_diff(old: list, new: list) -> str:
    if len(old) != len(new):
        return f"{len(old)} input(s) there, {len(new)} now"
    for a, b in zip(old, new):
        if a != b:
            return f"{a.get('path', 'a DataFrame')} differs"
    return "they differ"


def _columns_diff(old, new) -> str:
    for a, b in zip(old, new):
        if a != b:
            return f"column {a[0]!r} {a[1]} there, {b[0]!r} {b[1]} now"
    return f"{len(old)} columns there, {len(new)} now"


# ============================================================================ status


def folder_status(path, storage_options=None, verify: bool = False) -> dict:
    """What an output folder holds: state, batches, rows, files, inputs, open batch.

    ``state`` is ``"complete"``, ``"interrupted export"``, ``"interrupted append"``,
    ``"empty"`` or ``"not an export"``. With ``verify`` every file's checksum is checked.

    >>> import tempfile, pandas as pd
    >>> out = tempfile.mkdtemp()
    >>> folder_status(out)["state"]
    'empty'
    >>> _ = to_files(pd.DataFrame({"w": [1, 2, 3]}), out, "w", 3)
    >>> st = folder_status(out, verify=True)
    >>> st["state"], st["batches"], st["rows"], st["open_batch"]["rows"]
    ('complete', 2, 3, 1)
    """
    folder = _Folder(path, storage_options)
    listing = folder.listing()
    out = {"path": folder.url, "state": "empty", "complete": False}
    if not listing:
        return out
    run = _load_json(folder, RUN, "the run record") if WORK in listing else None
    manifest = _load_json(folder, MANIFEST, "the manifest") if MANIFEST in listing else None
    if manifest is None and run is None:
        out["state"] = "not an export"
        return out
    if manifest is not None:
        validate_manifest(manifest, folder if run is None else None, listing)
        if verify and run is None:
            verify_files(folder, manifest)
            out["verified"] = True
    if run is not None:
        out["state"] = f"interrupted {run.get('kind', 'export')}"
        out["interrupted_inputs"] = len(run.get("inputs", [])) - int(run.get("first_new", 0))
        if run.get("kind") == "append" and run.get("base"):
            manifest = run["base"]
    else:
        out["state"] = "complete" if SUCCESS in listing else "incomplete (no _SUCCESS)"
        out["complete"] = SUCCESS in listing
    if manifest is not None:
        b = manifest["batches"]
        out.update({
            "settings": manifest["settings"],
            "batches": len(b),
            "rows": manifest.get("rows", 0),
            "skipped": manifest.get("skipped", 0),
            "files": len({x["file"] for x in b}),
            "bytes": sum({x["file"]: x["bytes"] for x in b}.values()),
            "inputs": manifest["inputs"],
        })
        if b:
            last = b[-1]
            out["open_batch"] = {"batch": last["batch"], "rows": last["rows"], "total": last["total"],
                                 "file": last["file"]}
    return out
