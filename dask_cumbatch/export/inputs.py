"""Inputs: listing and reading data files, and the fingerprints that tell whether they changed."""
from __future__ import annotations

import os
import posixpath

import pandas as pd

from .folder import ExportError, export_error, is_local, one_line, redo_hint

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
EDGE = 64 * 1024  # bytes hashed at each end of a non-Parquet input


def list_inputs(spec, storage_options=None, full_hash: bool = False):
    """Expand an input spec (file, folder, glob, or a list of them) into data files, in order.

    Returns ``(kind, files)``: ``kind`` is ``"parquet"`` or ``"csv"`` (by extension), ``files``
    a list of ``{"path", "size", "mtime", "fp"}`` fingerprints: ``fp`` is a cheap content
    fingerprint (see ``content_fingerprint`` in this module); ``full_hash`` adds ``sha256``, the hash of
    the whole file. Folders are searched recursively; names starting with ``_`` or ``.`` are
    ignored. Files are in natural name order (as Dask reads them), each spec's files after the
    previous spec's.

    >>> import os, tempfile, pandas as pd
    >>> d = tempfile.mkdtemp()
    >>> for i in (1, 2, 10):
    ...     pd.DataFrame({"w": [i]}).to_parquet(os.path.join(d, f"part.{i}.parquet"))
    >>> kind, files = list_inputs(d)
    >>> kind, [os.path.basename(f["path"]) for f in files]
    ('parquet', ['part.1.parquet', 'part.2.parquet', 'part.10.parquet'])
    >>> sorted(files[0])
    ['fp', 'mtime', 'path', 'size']
    """
    from dask.utils import natural_sort_key

    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not specs:
        raise ExportError("no input given")
    files = []
    for s in specs:
        fs, found = _expand(os.fspath(s), storage_options)
        for p in sorted(found, key=natural_sort_key):
            info = fs.info(p)
            entry = {"path": _url(fs, p), "size": int(info.get("size") or 0), "mtime": _mtime(fs, p, info),
                     "fp": content_fingerprint(fs, p, int(info.get("size") or 0))}
            if full_hash:
                entry["sha256"] = full_sha256(fs, p)
            files.append(entry)
    kinds = {"csv" if f["path"].lower().endswith(CSV_SUFFIXES) else "parquet" for f in files}
    if len(kinds) > 1:
        raise ExportError("the input mixes CSV and Parquet files; export them separately")
    return kinds.pop(), files


def _expand(spec: str, storage_options):
    import fsspec

    fs, root = fsspec.core.url_to_fs(spec, **(storage_options or {}))
    if is_local(fs):
        root = os.path.abspath(root)
    if any(ch in root for ch in "*?["):
        found = [p for p in fs.glob(root) if fs.isfile(p)]
    elif fs.isdir(root):
        found = [
            p for p in fs.find(root)
            if not any(part.startswith(("_", ".")) for part in posixpath.relpath(p, root).split("/"))
            and p.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES)
        ]
    elif fs.isfile(root):
        found = [root]
    else:
        raise ExportError(f"input not found: {spec}")
    if not found:
        raise ExportError(f"no Parquet or CSV files found in {spec}")
    return fs, found


def content_fingerprint(fs, path: str, size: int) -> str:
    """A cheap fingerprint of a file's content: for Parquet, the sha256 of its footer (row
    groups, their sizes and column statistics); otherwise of its first and last 64 KiB.

    >>> import fsspec, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(path, "w").write("w,1")
    >>> len(content_fingerprint(fsspec.filesystem("file"), path, 4))
    64
    """
    import hashlib

    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        if path.lower().endswith(PARQUET_SUFFIXES) and size >= 12:
            f.seek(size - 8)
            tail = f.read(8)
            footer = int.from_bytes(tail[:4], "little")
            if tail[4:] == b"PAR1" and footer + 8 <= size:
                f.seek(size - 8 - footer)
                h.update(f.read(footer))
                return h.hexdigest()
            f.seek(0)
        h.update(f.read(EDGE))
        if size > EDGE:
            f.seek(max(EDGE, size - EDGE))
            h.update(f.read(EDGE))
    return h.hexdigest()


def full_sha256(fs, path: str) -> str:
    """The sha256 of a whole file (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def same_input(old: dict, new: dict) -> bool:
    """Whether input entry ``new`` is the recorded ``old`` one: every fingerprint both have agrees
    (a manifest of an older version has no content fingerprint; ``sha256`` is opt-in).

    >>> same_input({"path": "a", "size": 1}, {"path": "a", "size": 1, "fp": "x"})
    True
    >>> same_input({"path": "a", "size": 1, "fp": "y"}, {"path": "a", "size": 1, "fp": "x"})
    False
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return False
    if "files" in old or "files" in new:
        return old.get("dataframe") == new.get("dataframe") and same_inputs(old.get("files"), new.get("files"))
    required = ("path", "size", "mtime", "dataframe")
    return all(old.get(k) == new.get(k) for k in required) and all(
        old[k] == new[k] for k in ("fp", "sha256") if k in old and k in new)


def same_inputs(old, new) -> bool:
    """Whether two input lists are the same inputs (see :func:`same_input`).

    >>> same_inputs([{"path": "a"}], [{"path": "a"}, {"path": "b"}])
    False
    """
    if not isinstance(old, list) or not isinstance(new, list) or len(old) != len(new):
        return old == new
    return all(same_input(a, b) for a, b in zip(old, new))


def _url(fs, path: str) -> str:
    return path if is_local(fs) else fs.unstrip_protocol(path)


def _mtime(fs, path, info):
    if is_local(fs):
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
        raise ExportError(f"cannot read the input ({type(exc).__name__}): {one_line(exc)}") from exc


def is_path_spec(source) -> bool:
    """Whether ``source`` names input files (a path or a list of paths) rather than a frame.

    >>> is_path_spec("in/"), is_path_spec(["a.parquet"]), is_path_spec(pd.DataFrame())
    (True, True, False)
    """
    if isinstance(source, (str, os.PathLike)):
        return True
    return isinstance(source, (list, tuple)) and bool(source) and all(
        isinstance(s, (str, os.PathLike)) for s in source)


class Source:
    """Where rows come from: input files (read per run, only new ones on append) or a frame.

    >>> Source(pd.DataFrame({"w": [1]})).frame.npartitions
    1
    """

    def __init__(self, source, inputs=None, storage_options=None, full_hash: bool = False):
        import dask.dataframe as dd

        self.storage_options = storage_options
        self.full_hash = full_hash
        self.frame = None
        self.kind = None
        self.specs = []
        if is_path_spec(source):
            self.specs = [os.fspath(s) for s in ([source] if isinstance(source, (str, os.PathLike)) else source)]
            self.kind, self.files = list_inputs(source, storage_options, full_hash)
            return
        if isinstance(source, pd.DataFrame):
            source = dd.from_pandas(source, npartitions=1, sort=False)
        if not isinstance(source, dd.DataFrame):
            raise TypeError(
                f"to_files needs a Dask or pandas DataFrame or input path(s), not {type(source).__name__}"
            )
        self.frame = source
        self.specs = [os.fspath(p) for p in (inputs if inputs is not None else frame_paths(source))]
        self.files = [_frame_entry(source, inputs, storage_options, full_hash)]

    def listed_again(self) -> list:
        """The input entries as they are now (for the check after a run)."""
        if self.frame is None:
            return list_inputs(self.specs, self.storage_options, self.full_hash)[1]
        if "files" not in self.files[0]:
            return self.files
        return [dict(self.files[0], files=list_inputs(self.specs, self.storage_options, self.full_hash)[1])]

    def check_output_outside(self, folder_root: str, url: str) -> None:
        """Refuse an output folder inside (or equal to) a local input folder: its files would be
        listed as input by the next run."""
        import fsspec

        out = folder_root.rstrip("/") + "/"
        for spec in self.specs:
            fs, root = fsspec.core.url_to_fs(spec, **(self.storage_options or {}))
            if not is_local(fs) or any(ch in root for ch in "*?["):
                continue
            root = os.path.abspath(root)
            if os.path.isdir(root) and out.startswith(root.rstrip("/") + "/"):
                raise ExportError(f"the output folder {url} is inside the input folder {spec}: its files "
                                  "would be read back as input; choose an output folder outside it")

    def ddf(self, entries):
        """The frame to export: the given frame, or the input files of ``entries``."""
        if self.frame is not None:
            return self.frame
        return read_inputs(self.kind, [e["path"] for e in entries], self.storage_options)

    def paths(self) -> list:
        """Every input file path this source reads (for a frame: the files under it, if known)."""
        out = []
        for f in self.files:
            out.extend([f.get("path")] + [g["path"] for g in f.get("files", [])])
        return [p for p in out if p]


def _frame_entry(ddf, inputs, storage_options, full_hash) -> dict:
    from dask.base import tokenize

    paths = inputs if inputs is not None else frame_paths(ddf)
    if paths:  # file-backed: the files' fingerprints tell whether the input changed
        return {"dataframe": tokenize(ddf._meta, ddf.npartitions),
                "files": list_inputs(paths, storage_options, full_hash)[1]}
    return {"dataframe": tokenize(ddf)}  # in-memory data: Dask's deterministic token of the data


def frame_paths(ddf):
    """Input paths of the read_parquet/read_csv expressions under ``ddf`` (for the fingerprint).

    >>> import dask.dataframe as dd
    >>> frame_paths(dd.from_pandas(pd.DataFrame({"w": [1]}), npartitions=1))
    []
    """
    from ..dask_compat import read_paths

    try:
        paths = read_paths(ddf)
    except Exception:
        return []
    return [p for p in paths if isinstance(p, str)]


def inputs_diff(old: list, new: list) -> str:
    """How two input lists differ, in a few words.

    >>> inputs_diff([{"path": "a"}], [{"path": "a"}, {"path": "b"}])
    '1 input(s) there, 2 now'
    """
    if len(old) != len(new):
        return f"{len(old)} input(s) there, {len(new)} now"
    for a, b in zip(old, new):
        if not same_input(a, b):
            return f"{a.get('path', 'a DataFrame')} differs"
    return "they differ"


def consumed_prefix(consumed: list, current: list) -> int:
    """Check that the listed ``current`` input files start with the ``consumed`` ones, unchanged;
    returns how many were consumed.

    >>> consumed_prefix([{"path": "a", "size": 1}], [{"path": "a", "size": 1}, {"path": "b", "size": 2}])
    1
    """
    hint, setting = redo_hint()
    paths = {f["path"]: f for f in current}
    for k, old in enumerate(consumed):
        now = paths.get(old.get("path"))
        if now is None:
            raise export_error(f"input {old.get('path')} was exported before but is missing now; "
                               f"restore it or {hint}", setting)
        if not same_input(old, now):
            raise export_error(f"input {old.get('path')} changed since it was exported (its size, modification "
                               f"time or content differ); {hint}", setting)
        if k >= len(current) or current[k]["path"] != old["path"]:
            new = current[k]["path"] if k < len(current) else "?"
            raise ExportError(f"new input {new} sorts before the already exported {old['path']}; "
                              "appended inputs must come after the exported ones in name order")
    return len(consumed)


def changed_input(before: list, after: list):
    """The path of the first input that differs between two listings (None if none does).

    >>> changed_input([{"path": "a", "size": 1}], [{"path": "a", "size": 2}])
    'a'
    """
    flat_before, flat_after = _flat(before), _flat(after)
    after_by_path = {e.get("path"): e for e in flat_after}
    for old in flat_before:
        if not same_input(old, after_by_path.get(old.get("path"))):
            return old.get("path") or "the input DataFrame"
    if len(flat_after) != len(flat_before):
        return next((e.get("path") for e in flat_after if e.get("path") not in
                     {o.get("path") for o in flat_before}), "a new input file")
    return None


def _flat(entries: list) -> list:
    out = []
    for e in entries:
        out.extend(e["files"] if "files" in e else [e])
    return out
