"""Inputs: listing and reading data files, and the fingerprints that tell whether they changed."""
from __future__ import annotations

import fnmatch
import os
import posixpath
import stat

import pandas as pd

from ..options import keyword
from .folder import ExportError, export_error, is_local, one_line, redo_hint

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
EDGE = 64 * 1024  # bytes hashed at each end of a non-Parquet input


def list_inputs(spec, storage_options=None, full_hash: bool = False):
    """Expand an input spec (file, folder, glob, or a list of them) into data files, in order.

    Returns ``(kind, files)``: ``kind`` is ``"parquet"`` or ``"csv"`` (by extension), ``files``
    a list of ``{"path", "size", "mtime", "fp"}`` fingerprints: ``fp`` is a cheap content
    fingerprint (see ``content_fingerprint`` in this module); ``full_hash`` adds ``sha256``, the
    hash of the whole file; an object store adds the object's ``etag`` (see ``etag_of``). Folders
    are searched recursively; names starting with ``_`` or ``.`` are ignored. Files are in
    natural name order (as Dask reads them), each spec's files after the previous spec's.

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
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not specs:
        raise ExportError("no input given")
    files = []
    for fs, p, info in _listed_files(specs, storage_options):
        entry = {"path": _url(fs, p), "size": int(info.get("size") or 0), "mtime": _mtime(fs, p, info),
                 "fp": content_fingerprint(fs, p, int(info.get("size") or 0))}
        entry.update(etag_of(fs, info))
        if full_hash:
            entry["sha256"] = full_sha256(fs, p)
        files.append(entry)
    kinds = {"csv" if f["path"].lower().endswith(CSV_SUFFIXES) else "parquet" for f in files}
    if len(kinds) > 1:
        raise ExportError("the input mixes CSV and Parquet files; export them separately")
    return kinds.pop(), files


def _listed_files(specs, storage_options, allow_empty: bool = False):
    """``(fs, path, info)`` of each data file of ``specs``, in natural name order, each spec's
    after the previous spec's; ``allow_empty`` lets a spec hold no data file yet."""
    from dask.utils import natural_sort_key

    for spec in specs:
        fs, found = _expand(os.fspath(spec), storage_options, allow_empty)
        for p in sorted(found, key=natural_sort_key):
            yield fs, p, found[p]


def _expand(spec: str, storage_options, allow_empty: bool = False):
    """``(fs, {path: info})``: the data files of one input spec and their info. On an object
    store the info is the listing's own, not a second ``fs.info`` per file: that saves a request
    per file, and a file uploaded while the input is listed cannot be found by the listing yet
    missing from the directory cache that ``isdir`` filled a moment before. A local folder's
    files get ``fs.info`` (a link is described by its target; a listing says "other")."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(spec, **(storage_options or {}))
    local = is_local(fs)
    if local:
        root = os.path.abspath(root)
    else:  # list what is there now, not what this process listed before
        fs.invalidate_cache()
    if any(ch in root for ch in "*?["):
        hidden = ("_", ".") if not posixpath.basename(root).startswith(("_", ".")) else ()
        listed = fs.glob(root, detail=True)
        found = {p: info for p, info in listed.items()
                 if (fs.isfile(p) if local else info.get("type") == "file")
                 and not posixpath.basename(p).startswith(hidden)}
    elif fs.isdir(root):
        found = {
            p: info for p, info in fs.find(root, detail=True).items()
            if not any(part.startswith(("_", ".")) for part in posixpath.relpath(p, root).split("/"))
            and p.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES)
        }
    elif fs.isfile(root):
        found = {root: None}
    else:
        raise ExportError(f"input not found: {spec}")
    if not found and not allow_empty:
        raise ExportError(f"no Parquet or CSV files found in {spec}")
    return fs, {p: (fs.info(p) if local or info is None else info) for p, info in found.items()}


def input_snapshot(spec, storage_options=None) -> tuple:
    """The input files as they stand now, cheaply: ``((path, size, mtime), ...)`` in order, from
    one listing (no file is opened). A follower compares two snapshots to see whether anything
    arrived or changed; ``()`` when the input holds no data file yet.

    >>> import os, tempfile, pandas as pd
    >>> d = tempfile.mkdtemp()
    >>> input_snapshot(d)
    ()
    >>> pd.DataFrame({"w": [1]}).to_parquet(os.path.join(d, "a.parquet"))
    >>> [os.path.basename(p) for p, size, mtime in input_snapshot(d)]
    ['a.parquet']
    """
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    return tuple((_url(fs, p), int(info.get("size") or 0), _mtime(fs, p, info))
                 for fs, p, info in _listed_files(specs, storage_options, allow_empty=True))


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


def etag_of(fs, info: dict) -> dict:
    """``{"etag": ...}``: an object store's version tag of the object (S3 and Azure ``ETag``,
    GCS ``etag``), which changes whenever the object is written again; ``{}`` on a local disk.

    >>> import fsspec
    >>> etag_of(fsspec.filesystem("memory"), {"ETag": '"abc"'})
    {'etag': '"abc"'}
    """
    if is_local(fs):
        return {}
    for key in ("ETag", "etag"):
        if isinstance(info.get(key), str):
            return {"etag": info[key]}
    return {}


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
        old[k] == new[k] for k in ("fp", "sha256", "etag") if k in old and k in new)


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

    def check_output_outside(self, folder) -> None:
        """Refuse an output ``folder`` (a :class:`~.folder.Folder`) that overlaps the input: one
        inside (or equal to) an input folder or a folder a glob can reach into (its files would
        be read back as input by the next run), or one that holds an input file (``overwrite``
        would delete it). Paths are compared as written (made absolute) and with every symbolic
        link resolved, so no link, ``..`` or trailing slash hides an overlap.

        >>> import os, tempfile
        >>> from dask_cumbatch.export.folder import Folder
        >>> d = tempfile.mkdtemp()
        >>> pd.DataFrame({"w": [1]}).to_parquet(os.path.join(d, "a.parquet"))
        >>> os.symlink(d, d + "-link")
        >>> Source(d).check_output_outside(Folder(d + "-link/out"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dask_cumbatch.export.ExportError: the output folder ...-link/out is inside the input folder ...
        """
        clash = self.output_clash(folder)
        if clash is not None:
            raise export_error(clash, ("overwrite", True))

    def output_clash(self, folder):
        """Why the output ``folder`` overlaps the input (one line), or None when it does not.

        >>> import os, tempfile
        >>> from dask_cumbatch.export.folder import Folder
        >>> d = tempfile.mkdtemp()
        >>> pd.DataFrame({"w": [1]}).to_parquet(os.path.join(d, "a.parquet"))
        >>> Source(os.path.join(d, "*.parquet")).output_clash(Folder(os.path.join(d, "out"))) is None
        True
        >>> Source(d).output_clash(Folder(os.path.dirname(d)))  # doctest: +ELLIPSIS
        'the input .../a.parquet is inside the output folder ...'
        """
        import fsspec

        real = {}  # the real path of each folder, resolved once (inputs share folders)
        out = _forms(folder.fs, folder.root, real)
        for spec in self.specs:
            fs, root = fsspec.core.url_to_fs(spec, **(self.storage_options or {}))
            base, pattern = _glob_base(root)  # a local root is absolute, as written (`..` kept)
            if pattern is None and not fs.isdir(base):
                continue  # a single file: checked below, with the listed files
            for inner, outer in _within_pairs(out, _forms(fs, base, real)):
                if _glob_reaches(pattern, [p for p in inner[len(outer):].split("/") if p]):
                    return (f"the output folder {folder.url} {_is_or_inside(inner, outer)} the input folder {spec}"
                            f"{_resolved(inner, outer, folder.root, base)}: its files would be read back as "
                            "input; choose an output folder outside it")
        for path in self.paths():
            forms = (path,) if "://" in path else _listed_forms(path, real)
            inner, outer = next(_within_pairs(forms, out), (None, None))
            if inner is not None:
                return (f"the input {path} {_is_or_inside(inner, outer)} the output folder {folder.url}"
                        f"{_resolved(inner, outer, path, folder.root)}: an export writes into that folder (and "
                        f"{keyword('overwrite', True)} would delete the input); choose an output folder "
                        "that holds no input")
        return None

    def ddf(self, entries):
        """The frame to export: the given frame (restricted to the files of ``entries`` when an
        append takes only the frame's new files), or the input files of ``entries``."""
        if self.frame is None:
            return read_inputs(self.kind, [e["path"] for e in entries], self.storage_options)
        paths = [f["path"] for e in entries for f in e.get("files", [])]
        if "files" not in self.files[0] or paths == [f["path"] for f in self.files[0]["files"]]:
            return self.frame
        from ..dask_compat import over_files

        return over_files(self.frame, paths)

    def new_frame_files(self, consumed: list) -> list:
        """The files of this (file-reading) frame that an append into an export of ``consumed``
        inputs takes: all of them when none was consumed, else those after the consumed ones,
        which must be an unchanged prefix of the frame's files and be read by a plain file read
        (``dask_compat.row_wise_read``); anything else is refused, naming a consumed file.

        >>> Source(pd.DataFrame({"w": [1]})).new_frame_files([])
        []
        """
        now = self.files[0].get("files", [])
        done = input_paths(consumed)
        seen = [f for f in now if f["path"] in done]
        if not seen:
            return now
        from ..dask_compat import row_wise_read

        if len(seen) < len(now) and row_wise_read(self.frame) is None:
            raise ExportError(f"input {seen[0]['path']} was already exported and this DataFrame reads it again, "
                              "but is not a plain read_parquet (with column selections and row-wise steps): "
                              "cannot take only its new files; append a frame over the new files only")
        k = consumed_prefix([f for f in flat_inputs(consumed) if isinstance(f, dict) and f.get("path") in
                             {g["path"] for g in now}], now)
        return now[k:]

    def hash_fully(self) -> None:
        """Record (and so check) the sha256 of every input file from now on: an export whose
        manifest records them keeps checking them on append, with or without ``verify_inputs``."""
        import fsspec

        self.full_hash = True
        for entry in flat_inputs(self.files):
            if "path" in entry and "sha256" not in entry:
                fs, path = fsspec.core.url_to_fs(entry["path"], **(self.storage_options or {}))
                entry["sha256"] = full_sha256(fs, path)

    def paths(self) -> list:
        """Every input file path this source reads (for a frame: the files under it, if known)."""
        out = []
        for f in self.files:
            out.extend([f.get("path")] + [g["path"] for g in f.get("files", [])])
        return [p for p in out if p]


def _forms(fs, path: str, real: dict) -> tuple:
    """The spellings of ``path`` to compare: for a local path, see :func:`_local_forms`; a
    remote one as its URL.

    >>> import fsspec
    >>> _forms(fsspec.filesystem("memory"), "/a/b", {})
    ('memory:///a/b',)
    """
    if not is_local(fs):
        return (fs.unstrip_protocol(path.rstrip("/")),)
    return _local_forms(path, real)


def _local_forms(path: str, real: dict) -> tuple:
    """A local path made absolute as written (``..`` removed, as the export opens it) and with
    its links resolved (what the OS opens, also for ``..`` after a link); ``real`` caches the
    real path of each folder.

    >>> _local_forms("/a/./b/", {})  # one spelling: no link on the way
    ('/a/b',)
    """
    lexical = os.path.abspath(path)
    forms = [lexical, _realpath(lexical, real)]
    if os.path.normpath(path) != lexical or ".." in path:
        forms.append(os.path.realpath(path))  # `link/..` is the link target's parent to the OS
    return tuple(dict.fromkeys(forms))


def _realpath(path: str, real: dict) -> str:
    """``os.path.realpath`` of an absolute path, each folder resolved once (cached in ``real``)."""
    if os.path.islink(path):
        return os.path.realpath(path)
    head, name = os.path.split(path)
    if head not in real:
        real[head] = os.path.realpath(head)
    return os.path.join(real[head], name)


def _listed_forms(path: str, real: dict) -> tuple:
    """:func:`_local_forms` of a listed input file, whose path is already absolute and normal
    (one ``lstat`` per file, so that an input folder of many thousands of files is checked
    at a small cost; docs/performance.md).

    >>> _listed_forms("/no/such/file.parquet", {})
    ('/no/such/file.parquet', '/no/such/file.parquet')
    """
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        link = False
    if link:
        return path, os.path.realpath(path)
    head, _, name = path.rpartition("/")
    if head not in real:
        real[head] = os.path.realpath(head or "/")
    return path, f"{real[head].rstrip('/')}/{name}"


def _within_pairs(inner_forms, outer_forms):
    """The pairs ``(inner, outer)`` of spellings where ``inner`` is ``outer`` or lies below it.

    >>> list(_within_pairs(["/a/b/c", "/x"], ["/a/b", "/y"]))
    [('/a/b/c', '/a/b')]
    """
    for inner in inner_forms:
        for outer in outer_forms:
            top = outer.rstrip("/")
            if inner.rstrip("/") == top or inner.startswith(top + "/"):
                yield inner, outer


def _glob_base(root: str):
    """``(folder, components)``: the folder a glob lists under and its pattern below it
    (``components`` None for a spec without wildcards).

    >>> _glob_base("/d/in/**/*.parquet"), _glob_base("/d/in")
    (('/d/in', ['**', '*.parquet']), ('/d/in', None))
    """
    parts = root.split("/")
    for k, part in enumerate(parts):
        if any(ch in part for ch in "*?["):
            return "/".join(parts[:k]) or "/", parts[k:]
    return root, None


def _glob_reaches(pattern, rel: list) -> bool:
    """Whether an input spec can list a file inside a folder ``rel`` (components) below its base:
    a folder spec (``pattern`` None) reaches everything below it, a ``**`` glob too; otherwise the
    glob must have more components than ``rel`` and its first ones must match ``rel``'s.

    >>> _glob_reaches(["*.parquet"], ["out"]), _glob_reaches(["*", "*.parquet"], ["out"])
    (False, True)
    """
    if pattern is None or any("**" in p for p in pattern):
        return True
    return len(pattern) > len(rel) and all(fnmatch.fnmatchcase(name, pat) for name, pat in zip(rel, pattern))


def _is_or_inside(inner: str, outer: str) -> str:
    return "is" if inner.rstrip("/") == outer.rstrip("/") else "is inside"


def _resolved(inner: str, outer: str, inner_given: str, outer_given: str) -> str:
    """A note naming the resolved paths, when links (not the spelling) make the overlap."""
    if "://" in inner or (inner == os.path.abspath(inner_given) and outer == os.path.abspath(outer_given)):
        return ""
    if inner.rstrip("/") == outer.rstrip("/"):
        return f" (both are {outer} once links are resolved)"
    return f" ({inner} is inside {outer} once links are resolved)"


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
                               f"time, ETag or content differ); {hint}", setting)
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
    flat_before, flat_after = flat_inputs(before), flat_inputs(after)
    after_by_path = {e.get("path"): e for e in flat_after}
    for old in flat_before:
        if not same_input(old, after_by_path.get(old.get("path"))):
            return old.get("path") or "the input DataFrame"
    if len(flat_after) != len(flat_before):
        return next((e.get("path") for e in flat_after if e.get("path") not in
                     {o.get("path") for o in flat_before}), "a new input file")
    return None


def input_paths(entries: list) -> set:
    """The paths of every input file in ``entries`` (files under DataFrame entries too).

    >>> sorted(input_paths([{"path": "a"}, {"dataframe": "t", "files": [{"path": "b"}]}]))
    ['a', 'b']
    """
    return {e["path"] for e in flat_inputs(entries) if isinstance(e, dict) and isinstance(e.get("path"), str)}


def flat_inputs(entries: list) -> list:
    """Input entries with each DataFrame entry replaced by its files' entries.

    >>> flat_inputs([{"path": "a"}, {"dataframe": "t", "files": [{"path": "b"}]}, {"dataframe": "u"}])
    [{'path': 'a'}, {'path': 'b'}, {'dataframe': 'u'}]
    """
    out = []
    for e in entries:
        out.extend(e["files"] if isinstance(e, dict) and isinstance(e.get("files"), list) else [e])
    return out
