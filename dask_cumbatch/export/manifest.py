"""The manifest: the export's settings, checks of a manifest read from disk, checksum verification."""
from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pandas as pd

from ..engine import Carry
from ..options import OPTIONS, RESULT_OPTIONS, BatchOptions, keyword, one_of, whole_number
from .folder import (
    CONTROL, LEGACY_OPEN, LEGACY_REJECTS, MANIFEST, OPEN, REJECTS, SUCCESS, ExportError, Folder,
    check_plain_name, export_error, file_name, one_line, redo_hint, sha256,
)
from .formats import FORMATS

MANIFEST_KIND = "dask-cumbatch export"
MANIFEST_VERSION = 2  # 2: rejects and open rows under _cumbatch/, a checksum of the manifest itself
LEGACY_VERSION = 1
_EXTRA_FILES = {2: {"rejects": REJECTS, "open": OPEN}, 1: {"rejects": LEGACY_REJECTS, "open": LEGACY_OPEN}}
# What an export records and a later run must repeat: the options that change the result
# (options.RESULT_OPTIONS, from the option spec) between the arguments that frame them.
SETTING_KEYS = ("weight", "limit", *RESULT_OPTIONS, "format", "batches_per_file")


def check_export_arguments(options: BatchOptions, fmt, batches_per_file, max_skips) -> None:
    """Check the export's own arguments (the batching options are checked by ``BatchOptions``).

    >>> check_export_arguments(BatchOptions.make("w", 5), "csv", 0, None)
    Traceback (most recent call last):
    ValueError: batches_per_file must be >= 1, got 0
    """
    one_of("format", fmt, tuple(FORMATS))
    whole_number("batches_per_file", batches_per_file, 1)
    whole_number("max_skips", max_skips, 0, optional=True)
    if options.name == options.weight or options.name in options.by:
        raise ValueError(f"name={options.name!r} would overwrite the weight or by= column; pick another id column name")


def export_settings(opts: BatchOptions, fmt: str, bpf: int) -> dict:
    """The settings an export records (and a later run must repeat).

    >>> export_settings(BatchOptions.make("w", 5.0), "csv", 2)["limit"]
    5
    """
    limit = opts.limit
    if isinstance(limit, float) and limit.is_integer() and abs(limit) < 2**53:
        limit = int(limit)
    options = {key: getattr(opts, key) for key in RESULT_OPTIONS}
    options["by"] = list(options["by"])  # JSON has lists, not tuples
    return {"weight": opts.weight, "limit": limit, **options, "format": fmt, "batches_per_file": bpf}


def settings_doc(indent: str = "") -> str:
    """The paragraph of :func:`~dask_cumbatch.export.to_files`' docstring on its batching options
    and the settings an export records, generated from the option spec and :data:`SETTING_KEYS`.

    >>> print(settings_doc()[:92])
    ``limit`` and ``**opts`` are the batching options of ``ddf.cumbatch.repartition`` (``mode``,
    """
    def names(keys):
        return ", ".join(f"``{key}``" for key in keys)

    text = (f"``limit`` and ``**opts`` are the batching options of ``ddf.cumbatch.repartition`` "
            f"({names(OPTIONS)}); a keyword that is neither raises ``TypeError`` naming "
            f"``to_files`` and the closest one. The folder records the settings that decide its "
            f"files ({names(SETTING_KEYS)}): a resume or an append with any of them changed is "
            f"refused (``overwrite=True`` starts over). "
            + " ".join(f"``{o}``" for o in OPTIONS if o not in SETTING_KEYS)
            + " may differ between runs: it does not change the result.")
    return textwrap.fill(text, 96, initial_indent=indent, subsequent_indent=indent)


def check_same_settings(recorded: dict, current: dict, what: str) -> None:
    """Raise unless ``current`` settings equal the ``recorded`` ones of ``what`` (a phrase).

    >>> check_same_settings({"mode": "fill"}, {"mode": "greedy"}, "out holds an export")
    Traceback (most recent call last):
    dask_cumbatch.export.ExportError: out holds an export made with other options (mode='fill' there, 'greedy' now); use the same options, or overwrite=True to start over
    """
    for key in SETTING_KEYS:
        if recorded.get(key) != current.get(key):
            raise export_error(
                f"{what} made with other options ({key}={recorded.get(key)!r} there, {current.get(key)!r} now); "
                f"use the same options, or {keyword('overwrite', True)} to start over", ("overwrite", True))


def columns_diff(old, new) -> str:
    """How two ``[[name, type], ...]`` column lists differ, in a few words.

    >>> columns_diff([["w", "int64"]], [["w", "double"]])
    "column 'w' int64 there, 'w' double now"
    """
    for a, b in zip(old, new):
        if a != b:
            return f"column {a[0]!r} {a[1]} there, {b[0]!r} {b[1]} now"
    return f"{len(old)} columns there, {len(new)} now"


def _bad(why):
    raise ExportError(f"{MANIFEST} is not a valid dask-cumbatch manifest ({why}); not touching the folder")


def manifest_checksum(m: dict) -> str:
    """The sha256 of a manifest's content (every key but ``checksum``, in canonical JSON).

    >>> manifest_checksum({"a": 1, "checksum": "x"}) == manifest_checksum({"a": 1})
    True
    """
    body = {k: v for k, v in m.items() if k != "checksum"}
    return sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                             allow_nan=False).encode())


def with_checksum(m: dict) -> dict:
    """``m`` with its ``checksum`` (the last key).

    >>> sorted(with_checksum({"a": 1}))
    ['a', 'checksum']
    """
    body = {k: v for k, v in m.items() if k != "checksum"}
    return {**body, "checksum": manifest_checksum(body)}


def _check_structure(m) -> None:
    if not isinstance(m, dict) or m.get("kind") != MANIFEST_KIND:
        _bad("wrong kind")
    if m.get("version") not in (MANIFEST_VERSION, LEGACY_VERSION):
        _bad(f"version {m.get('version')!r}, expected {MANIFEST_VERSION}")
    if m["version"] == MANIFEST_VERSION and m.get("checksum") != manifest_checksum(m):
        _bad("its checksum does not match its content: it was changed or damaged")
    if m["version"] == LEGACY_VERSION:
        _check_legacy(m)
    for key, typ in (("settings", dict), ("inputs", list), ("state", dict), ("batches", list), ("columns", list)):
        if not isinstance(m.get(key), typ):
            _bad(f"{key} missing or not a {typ.__name__}")


def _check_legacy(m) -> None:
    """A version 1 manifest holds nothing that only version 2 writes (a checksum, content
    fingerprints of its inputs, files under ``_cumbatch/``): else it is a version 2 manifest
    edited to skip its checksum."""
    inputs = [f for e in m.get("inputs") or [] if isinstance(e, dict) for f in [e, *(e.get("files") or [])]]
    found = ("a checksum" if "checksum" in m else
             "input fingerprints" if any(isinstance(f, dict) and ("fp" in f or "sha256" in f) for f in inputs) else
             f"files under {CONTROL}/" if any(isinstance(m.get(k), dict) and str(m[k].get("file", "")).startswith(
                 CONTROL + "/") for k in ("rejects", "open")) else None)
    if found:
        _bad(f"it says version 1 but holds {found}, which only version {MANIFEST_VERSION} writes: "
             "it was changed to skip its checks")


def _check_legacy_layout(m, folder: Folder, listing) -> None:
    """A version 1 manifest in a folder of the version 2 layout: ``_cumbatch/`` holds rejects or
    open rows that no version 1 file was migrated to."""
    if m["version"] != LEGACY_VERSION or CONTROL not in listing:
        return
    control = folder.listing(CONTROL)
    for name, legacy in ((REJECTS, LEGACY_REJECTS), (OPEN, LEGACY_OPEN)):
        if name.rsplit("/", 1)[1] in control and legacy not in listing:
            _bad(f"it says version 1 but the folder holds {name}, which only version {MANIFEST_VERSION} "
                 "writes: it was changed to skip its checks")


def _check_batches(m) -> None:
    s = m["settings"]
    fmt, bpf = s.get("format"), s.get("batches_per_file")
    if fmt not in FORMATS or not isinstance(bpf, int) or bpf < 1:
        _bad("bad format or batches_per_file")
    for i, b in enumerate(m["batches"]):
        if not isinstance(b, dict) or b.get("batch") != i:
            _bad(f"batch entry {i} is not batch {i}")
        if not all(isinstance(b.get(k), int) and b[k] >= 0 for k in ("rows", "bytes")):
            _bad(f"batch {i} has bad rows/bytes")
        if not isinstance(b.get("total"), (int, float)) or not isinstance(b.get("sha256"), str):
            _bad(f"batch {i} has bad total/sha256")
        name = check_plain_name(b.get("file"))
        if name != file_name(i // bpf, fmt):
            _bad(f"batch {i} names file {name!r}, expected {file_name(i // bpf, fmt)!r}")
    for key, name in _EXTRA_FILES[m["version"]].items():
        extra = m.get(key)
        if extra is not None and (not isinstance(extra, dict) or extra.get("file") != name
                                  or not isinstance(extra.get("bytes"), int) or not isinstance(extra.get("sha256"), str)):
            _bad(f"bad {key} entry")


def _check_state(m) -> None:
    try:
        state = Carry.from_json(json.dumps(m["state"]))
    except Exception as exc:
        _bad(f"bad state: {one_line(exc)}")
    batches = m["batches"]
    if state.batches != len(batches) or m.get("n_batches", len(batches)) != len(batches):
        _bad(f"its state counts {state.batches} batches, it lists {len(batches)}")
    rows = sum(b["rows"] for b in batches)
    if m.get("rows") != rows:
        _bad(f"it counts {m.get('rows')!r} rows, its batches hold {rows}")
    greedy_or_fill = m["settings"].get("mode") in ("greedy", "fill")  # floor keeps a grid, not the batch
    if batches and greedy_or_fill and (state.rows != batches[-1]["rows"] or state.tot != batches[-1]["total"]):
        _bad(f"its state (open batch of {state.rows} rows, total {state.tot}) differs from its last batch "
             f"({batches[-1]['rows']} rows, total {batches[-1]['total']})")


def _check_files(m, folder: Folder, listing) -> None:
    hint, setting = redo_hint()
    control = None
    for name, size in manifest_files(m).items():
        if name.startswith(CONTROL + "/"):
            control = folder.listing(CONTROL) if control is None else control
            info = control.get(name.rsplit("/", 1)[1])
        else:
            info = listing.get(name)
        if info is None:
            raise ExportError(f"{name} is listed in {MANIFEST} but missing from {folder.url}")
        if info.get("islink") or info.get("type") not in ("file", None):
            raise ExportError(f"{name} in {folder.url} is not a plain file (a link?); not touching the folder")
        if int(info.get("size") or 0) != size:
            raise export_error(
                f"{name} in {folder.url} has {info.get('size')} bytes, the manifest says {size}: "
                f"the folder was changed after the export; {hint}", setting)


def validate_manifest(m, folder: Folder | None = None, listing=None) -> dict:
    """Check a manifest read from disk: its checksum, structure, plain file names inside the
    folder, its state against its batches, and (given the folder) the files' sizes.

    A manifest is data, not instructions: any problem raises :class:`ExportError` before
    anything is written. Manifests of the version 1 layout are accepted as they are, unless they
    hold what only version 2 writes (a version 2 manifest edited to skip its checksum).

    >>> validate_manifest({"kind": "other"})
    Traceback (most recent call last):
    dask_cumbatch.export.ExportError: _manifest.json is not a valid dask-cumbatch manifest (wrong kind); not touching the folder
    """
    _check_structure(m)
    _check_batches(m)
    _check_state(m)
    if folder is not None:
        listing = folder.listing() if listing is None else listing
        _check_legacy_layout(m, folder, listing)
        _check_files(m, folder, listing)
    return m


def upgraded(m: dict) -> dict:
    """A valid manifest in the current version (a version 1 manifest's rejects and open rows
    move under ``_cumbatch/``, and it gets its checksum).

    >>> upgraded({"version": 1, "rejects": {"file": "_rejects.parquet"}, "open": None})["rejects"]
    {'file': '_cumbatch/rejects.pqt'}
    """
    if m.get("version") == MANIFEST_VERSION:
        return m
    out = dict(m, version=MANIFEST_VERSION)
    for key, name in _EXTRA_FILES[MANIFEST_VERSION].items():
        if out.get(key):
            out[key] = dict(out[key], file=name)
    return with_checksum(out)


def manifest_files(m, field: str = "bytes") -> dict:
    """``{file: entry[field]}`` over every file the manifest lists (batches, rejects, open).

    >>> manifest_files({"batches": [{"file": "a", "bytes": 3}]})
    {'a': 3}
    """
    files = {b["file"]: b[field] for b in m["batches"]}
    for key in ("rejects", "open"):
        if m.get(key):
            files[m[key]["file"]] = m[key][field]
    return files


def verify_files(folder: Folder, m, names=None) -> None:
    """Compare the sha256 of the named files (default: every file) with the manifest; raise
    :class:`ExportError` naming the first file that differs.

    >>> import json, os, tempfile, pandas as pd
    >>> from dask_cumbatch.export import to_files
    >>> out = tempfile.mkdtemp()
    >>> _ = to_files(pd.DataFrame({"w": [1, 2, 3]}), out, "w", 3)
    >>> m = json.load(open(os.path.join(out, MANIFEST)))
    >>> verify_files(Folder(out), m)  # every file matches
    >>> _ = open(os.path.join(out, "part-00000001.parquet"), "ab").write(b"!")
    >>> verify_files(Folder(out), m)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dask_cumbatch.export.ExportError: part-00000001.parquet in ... does not match its checksum in _manifest.json; ...
    """
    shas = manifest_files(m, "sha256")
    hint, setting = redo_hint()
    for name in (names if names is not None else sorted(shas)):
        if sha256(folder.read(name)) != shas[name]:
            raise export_error(
                f"{name} in {folder.url} does not match its checksum in {MANIFEST}; "
                f"the folder was changed after the export: {hint}", setting)


# What readers of a folder take as data (docs/export.md, "What readers read"): pyarrow's dataset
# discovery (pd.read_parquet, pq.read_table, pyarrow.dataset) skips every path with a part that
# starts with "_" or "."; dd.read_parquet(folder) instead lists files by extension at any depth and
# skips nothing, and reads the dataset from a top-level _metadata; a glob such as folder/*.csv
# matches _x.csv and .x.csv too.
PARQUET_NAMES = (".parquet", ".parq", ".pq")
GLOBBED_NAMES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson")
COMPRESSIONS = ("", ".gz", ".bz2", ".xz", ".zst", ".zstd", ".lz4", ".snappy")
METADATA_NAMES = ("_metadata", "_common_metadata")


def read_as_data(rel: str) -> bool:
    """Whether a reader of the folder takes the file at ``rel`` (a path inside it) as data.

    >>> [read_as_data(p) for p in ("sub/x.bin", "_cumbatch/x.parquet", "_x.csv", "_metadata")]
    [True, True, True, True]
    >>> [read_as_data(p) for p in ("_notes.txt", ".git/config", "_cumbatch/lock.json", "_manifest.json")]
    [False, False, False, False]
    """
    parts = rel.split("/")
    name = parts[-1].lower()
    if not any(part.startswith(("_", ".")) for part in parts):
        return True
    if name.endswith(tuple(s + c for s in PARQUET_NAMES for c in COMPRESSIONS)):
        return True
    top = len(parts) == 1 and rel != MANIFEST
    return top and (rel in METADATA_NAMES or name.endswith(tuple(s + c for s in GLOBBED_NAMES for c in COMPRESSIONS)))


def stray_entries(folder: Folder, listed, listing=None) -> list:
    """The paths inside ``folder`` (sorted) that a reader would take as data (see
    :func:`read_as_data`) and that are not in ``listed`` (the manifest's files). Folders are
    searched at every depth; a link is judged by its name, never followed.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); os.makedirs(f"{d}/sub"); os.makedirs(f"{d}/_cumbatch")
    >>> for name in ("part-0.parquet", "sub/x.parquet", "_cumbatch/lock", "_notes.txt"):
    ...     open(os.path.join(d, name), "w").close()
    >>> stray_entries(Folder(d), {"part-0.parquet": 0})
    ['sub/x.parquet']
    """
    found = []

    def walk(under, entries):
        for name, is_folder in entries:
            rel = f"{under}/{name}" if under else name
            if is_folder:
                walk(rel, _entries(folder, rel))
            elif rel not in listed and read_as_data(rel):
                found.append(rel)

    top = _entries(folder, "") if listing is None else [
        (name, info.get("type") == "directory" and not info.get("islink")) for name, info in listing.items()]
    walk("", top)
    return sorted(found)


def _entries(folder: Folder, under: str) -> list:
    """``[(name, is a folder (not a link))]`` directly in ``under``: on a local disk from
    ``os.scandir`` (no stat per entry: a stat per entry dominates the listing of a large folder,
    docs/performance.md)."""
    if not folder.local:
        return [(name, info.get("type") == "directory") for name, info in folder.listing(under).items()]
    try:
        with os.scandir(folder.p(under) if under else folder.root) as it:
            return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    except (FileNotFoundError, NotADirectoryError):
        return []


def stray_error(folder: Folder, stray: list) -> ExportError:
    """The error for the ``stray`` entries of ``folder`` (from :func:`stray_entries`), naming them.

    >>> import tempfile
    >>> print(stray_error(Folder(tempfile.mkdtemp()), ["x.parquet"]))  # doctest: +ELLIPSIS
    /... holds x.parquet, which its manifest does not list: readers of the folder would read it as data; ...
    """
    more = f" and {len(stray) - 5} more" if len(stray) > 5 else ""
    hint, setting = redo_hint()
    return export_error(f"{folder.url} holds {', '.join(stray[:5])}{more}, which its manifest does not list: "
                        f"readers of the folder would read it as data; remove it, or {hint}", setting)


def has_success(folder: Folder, listing) -> bool:
    """Whether ``listing`` (of ``folder``) holds the ``_SUCCESS`` marker; one that is not a regular
    file (a folder, a link) certifies nothing and raises :class:`ExportError`.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); os.mkdir(os.path.join(d, SUCCESS))
    >>> has_success(Folder(d), Folder(d).listing())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dask_cumbatch.export.ExportError: _SUCCESS in ... is a folder, not a regular file, ...
    """
    info = listing.get(SUCCESS)
    if info is None:
        return False
    if info.get("islink") or info.get("type") not in ("file", None):
        what = ("a symbolic link" if info.get("islink") else
                "a folder" if info.get("type") == "directory" else "not a regular file")
        raise ExportError(f"{SUCCESS} in {folder.url} is {what}, not a regular file, and certifies nothing; "
                          "remove it, then re-run the same export to certify the folder")
    return True


_RECORDED_DTYPES = {"double": "float64", "float": "float64", "int64": "int64", "int32": "int32"}


def read_data_file(folder: Folder, m: dict, name: str, columns=None) -> pd.DataFrame:
    """Data file ``name`` of the export ``m`` as pandas: all columns, or ``columns`` and the id
    column. CSV and JSON lines read the numeric columns with their recorded types; a column
    the file lacks raises :class:`ExportError`.

    >>> import os, tempfile
    >>> from dask_cumbatch.export import to_files
    >>> out = tempfile.mkdtemp()
    >>> _ = to_files(pd.DataFrame({"w": [1, 2, 3]}), out, "w", 3, format="csv")
    >>> m = json.load(open(os.path.join(out, MANIFEST)))
    >>> read_data_file(Folder(out), m, "part-00000000.csv")
       w  batch
    0  1      0
    1  2      0
    >>> read_data_file(Folder(out), m, "part-00000001.csv", ["w"])
       w  batch
    0  3      1
    """
    import io

    s = m["settings"]
    wanted = None if columns is None else list(dict.fromkeys([*columns, s["name"]]))
    data = folder.read(name)
    if s["format"] == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        file = pq.ParquetFile(pa.BufferReader(data))  # one thread: faster for small files
        _check_columns(folder, name, wanted or [s["name"]], file.schema_arrow.names)
        return file.read(columns=wanted, use_threads=False).to_pandas()
    dtypes = {c: _RECORDED_DTYPES[t] for c, t in m["columns"]
              if t in _RECORDED_DTYPES and (wanted is None or c in wanted)}
    if not data:
        frame = pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, object)) for c, _ in m["columns"]})
    elif s["format"] == "csv":
        frame = pd.read_csv(io.BytesIO(data), dtype=dtypes, usecols=wanted)
    else:
        frame = pd.read_json(io.BytesIO(data), lines=True, dtype=dtypes)
    _check_columns(folder, name, wanted or [s["name"]], list(frame.columns))
    return frame if wanted is None else frame[wanted]


def _check_columns(folder: Folder, name: str, wanted: list, found: list) -> None:
    missing = [c for c in wanted if c not in found]
    if missing:
        raise ExportError(f"{name} in {folder.url} has no column {missing[0]!r}: the manifest or the files "
                          f"were changed, or no such column was exported")


def verify_batches(folder: Folder, m) -> None:
    """Recompute every batch (rows, total, cost) from the data files and check it against the
    manifest and against the recorded settings (the mode's rule, ``max_rows``, ``multiple``):
    raise :class:`ExportError` naming the first batch that differs.

    >>> import os, tempfile
    >>> from dask_cumbatch.export import to_files
    >>> out = tempfile.mkdtemp()
    >>> _ = to_files(pd.DataFrame({"w": [3, 3, 3]}), out, "w", 6)
    >>> m = json.load(open(os.path.join(out, MANIFEST)))
    >>> verify_batches(Folder(out), m)  # the files keep the settings
    >>> m["settings"]["limit"] = 3
    >>> verify_batches(Folder(out), m)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dask_cumbatch.export.ExportError: batch 0 in part-00000000.parquet does not keep the recorded settings (cost 6 > limit=3): ...
    """
    s = m["settings"]
    # JSON lines keep 15 digits of a float: their float totals are not the exact ones
    exact = s["format"] != "jsonl" or dict(m["columns"]).get(s["weight"]) not in ("double", "float", "halffloat")
    stats = []
    for name in dict.fromkeys(b["file"] for b in m["batches"]):
        rows = read_data_file(folder, m, name, [s["weight"], *s.get("by", [])])
        stats.extend(_file_batch_stats(folder, m, name, rows))
    for b, st in zip(m["batches"], stats):
        if st["batch"] != b["batch"] or st["rows"] != b["rows"] or (exact and st["total"] != b["total"]):
            _breaks(folder, b, f"the file holds {st['rows']} rows of total {st['total']} for it, "
                               f"the manifest says {b['rows']} rows of total {b['total']}")
    if len(stats) != len(m["batches"]):
        _breaks(folder, m["batches"][-1], f"the files hold {len(stats)} batches, the manifest lists {len(m['batches'])}")
    why = _rule_breaks(s, stats) if exact else None
    if why is not None:
        k, text = why
        _breaks(folder, m["batches"][k], text)


def _breaks(folder, b, why):
    hint, setting = redo_hint()
    raise export_error(f"batch {b['batch']} in {b['file']} does not keep the recorded settings ({why}): "
                       f"the manifest or the files were changed; {hint}", setting)


def _file_batch_stats(folder, m, name, df) -> list:
    """Per batch of one data file: id, rows, total (in row order), max weight, the cost of all
    its rows but the last, its first weight, its first and last group key."""
    from ..engine import batch_stats, weight_values

    s = m["settings"]
    ids = df[s["name"]].to_numpy(dtype=np.int64)
    w, invalid = weight_values(df[s["weight"]])
    if len(invalid) and invalid.any() or (len(ids) > 1 and (np.diff(ids) < 0).any()):
        raise ExportError(f"{name} in {folder.url} holds invalid weights or unsorted batch ids; "
                          f"the files were changed: {redo_hint()[0]}")
    if not len(ids):
        return []
    pos = np.arange(len(ids), dtype=np.int64)
    batch, rows, total, mx, first, last = batch_stats(ids, w, pos)
    head = np.ones(len(ids), dtype=bool)
    head[last] = False  # every row but each batch's last
    h_batch, h_rows, h_total, h_mx, _, _ = batch_stats(ids[head], w[head], pos[head]) if head.any() else ((),) * 6
    heads = {int(b): (int(r), _py(t), _py(x)) for b, r, t, x in zip(h_batch, h_rows, h_total, h_mx)}
    keys = [df[c].to_numpy(dtype=object) for c in s.get("by", [])]
    return [{"batch": int(b), "rows": int(r), "total": _py(t), "mx": _py(x), "first_w": _py(w[f]),
             "head": heads.get(int(b), (0, 0, 0)), "first_key": tuple(k[f] for k in keys),
             "last_key": tuple(k[la] for k in keys)}
            for b, r, t, x, f, la in zip(batch, rows, total, mx, first, last)]


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


def _cost(cost, rows, total, mx):
    return mx * rows if cost == "padded" else total


def _rule_breaks(s, stats):
    """``(index, why)`` of the first batch that breaks the settings' rules, or None."""
    from ..engine import same_key

    limit, cost, mode, cap, mult = s["limit"], s["cost"], s["mode"], s.get("max_rows"), s.get("multiple")
    s_group = 0  # floor: exclusive running sum within the group at the batch's first row
    for k, st in enumerate(stats):
        nxt = stats[k + 1] if k + 1 < len(stats) else None
        same_group = nxt is not None and same_key(st["last_key"], nxt["first_key"])
        capped = cap is not None and st["rows"] >= cap
        c = _cost(cost, st["rows"], st["total"], st["mx"])
        if cap is not None and st["rows"] > cap:
            return k, f"{st['rows']} rows > max_rows={cap}"
        if mode == "greedy":
            if c > limit and (st["rows"] > 1 or s.get("oversize") == "raise"):
                return k, f"cost {c} > limit={limit}"
            if mult and same_group and st["rows"] >= mult and st["rows"] % mult:
                return k, f"{st['rows']} rows, not a multiple of multiple={mult}"
            if same_group and not capped and not mult and _cost(
                    cost, st["rows"] + 1, st["total"] + nxt["first_w"], max(st["mx"], nxt["first_w"])) <= limit:
                return k + 1, f"its first row fits batch {st['batch']} under limit={limit}"
        elif mode == "fill":
            h_rows, h_total, h_mx = st["head"]
            if h_rows and _cost(cost, h_rows, h_total, h_mx) >= limit:
                return k, f"it reaches limit={limit} before its last row"
            if same_group and not capped and c < limit:
                return k, f"cost {c} < limit={limit}, yet batch {nxt['batch']} starts"
        elif mode == "floor" and all(isinstance(v, int) for v in (limit, st["total"], st["head"][1])):
            if k and not same_key(stats[k - 1]["last_key"], st["first_key"]):
                s_group = 0
            if s_group // limit != (s_group + st["head"][1]) // limit:
                return k, f"its rows lie in more than one cell of limit={limit}"
            s_group += st["total"]
            if same_group and not capped and (s_group - st["total"] + st["head"][1]) // limit == s_group // limit:
                return k + 1, f"it starts in the cell of batch {st['batch']} under limit={limit}"
    return None
