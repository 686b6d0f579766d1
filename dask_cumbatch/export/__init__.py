"""Restartable, incremental, out-of-core batch export: :func:`to_files`.

An export cuts a (Dask) table into batches by cumulative weight and writes one file per
``batches_per_file`` batches into an output folder (local or any fsspec URL)::

    part-00000000.parquet   part-00000001.parquet   ...
    _manifest.json          every batch (id, rows, total, file, bytes, sha256), the options,
                            the consumed inputs and their fingerprints, the batching state at
                            the end, and a checksum of the manifest itself
    _SUCCESS                written last
    _cumbatch/              skipped by Dask, pandas and pyarrow readers:
        rejects.pqt         rows left out by invalid="skip", with a ``reason`` column
        open.pqt            CSV/JSONL exports only: the last file's rows, for append=True
        lock, lock.json     the writer's lock and who holds it (one writer per folder)
        work/               a run in progress (removed when it finishes)

The package: ``folder`` (paths, atomic writes), ``manifest`` (settings, validation,
verification), ``inputs`` (listing, reading, fingerprints), ``formats`` (Parquet/CSV/JSONL
encoding), ``tasks`` (the Dask tasks that write), ``job`` (one run as named phases),
``progress`` (scheduler and progress display), ``status`` (:func:`folder_status`).
See docs/export.md for how it works and what it guarantees.
"""
from __future__ import annotations

import inspect
import time

from ..dask.prepared import prepare_frame
from ..errors import ExportError
from ..options import OPTIONS, BatchOptions, fill_doc, unexpected_keyword
from .folder import CONTROL, MANIFEST, REJECTS, SUCCESS, Folder, WriterLock, file_name
from .follow import FollowResult, follow
from .formats import FORMATS, encode
from .inputs import Source, list_inputs, read_inputs
from .job import ExportResult, Job
from .manifest import check_export_arguments, export_settings, settings_doc, validate_manifest, verify_files
from .progress import compute, isatty, progress_context, resolve_scheduler, show_progress
from .reader import follow_batches
from .status import folder_status

__all__ = [
    "to_files",
    "ExportResult",
    "follow",
    "FollowResult",
    "ExportError",
    "folder_status",
    "follow_batches",
    "list_inputs",
    "read_inputs",
    "validate_manifest",
    "verify_files",
    "encode",
    "file_name",
    "isatty",
    "progress_context",
    "resolve_scheduler",
    "show_progress",
    "compute",
    "FORMATS",
    "MANIFEST",
    "SUCCESS",
    "REJECTS",
    "CONTROL",
]


def to_files(
    source,
    path,
    weight,
    limit,
    *,
    format: str = "parquet",
    batches_per_file: int = 1,
    resume: bool = True,
    max_skips: int | None = 0,
    progress: bool | None = None,
    append: bool = False,
    overwrite: bool = False,
    verify: bool = False,
    verify_inputs: bool = False,
    storage_options: dict | None = None,
    input_storage_options: dict | None = None,
    scheduler=None,
    inputs=None,
    **opts,
) -> ExportResult:
    """Cut ``source`` into batches by cumulative ``weight`` and write them to files in ``path``.

    ``source`` is a Dask (or pandas) DataFrame, or input path(s): a Parquet/CSV file, folder,
    glob or fsspec URL (then a re-run checks the inputs' sizes and modification times, and an
    append reads only new files). ``weight`` must be a column name.

    {export_settings}

    Files: one per ``batches_per_file`` consecutive batches, ``format`` ``"parquet"``, ``"csv"``
    or ``"jsonl"``, plus ``_manifest.json``, ``_SUCCESS`` and the ``_cumbatch/`` control folder (see
    docs/export.md). ``resume`` continues an interrupted run of the same export (``False``:
    refuse instead); ``overwrite`` replaces whatever the folder holds; ``append`` adds inputs not
    exported yet, continuing the last batch. ``max_skips`` aborts (before writing files) when a
    run would leave out more than that many invalid rows with ``invalid="skip"``. The default 0
    makes skipping explicit, as a batch framework's skip limit does; ``None`` means no limit.
    ``verify`` checks every file's checksum before an append (default: the files it rewrites).
    ``verify_inputs`` records (and checks) the sha256 of every input file's whole content, on
    top of the cheap fingerprint always taken (size, modification time, the Parquet footer or
    the first and last 64 KiB); an input that changes during the run fails it.
    ``scheduler`` is a ``dask.distributed`` address, a ``Client``, or a local scheduler name.
    ``progress``: ``None`` (default) shows Dask's progress bar when stderr is a terminal or
    in a Jupyter kernel (the distributed progress widget when a client runs the export);
    ``True`` always, ``False`` never.

    One writer at a time: a second export into the same folder fails at once naming the holder
    (on an object store through a lock object with a lease; a store without conditional create
    is not locked, and a ``StoreWarning`` says so). See docs/export.md for the folder layout and
    the guarantees.

    >>> import json, os, tempfile, pandas as pd
    >>> out = os.path.join(tempfile.mkdtemp(), "batches")
    >>> df = pd.DataFrame({"w": [3, 3, 3, 3, 5], "v": list("abcde")})
    >>> result = to_files(df, out, "w", 6)
    >>> result.batches, result.files_written
    (3, 3)
    >>> sorted(os.listdir(out))  # doctest: +NORMALIZE_WHITESPACE
    ['_SUCCESS', '_cumbatch', '_manifest.json', 'part-00000000.parquet', 'part-00000001.parquet',
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
    _check_keywords(opts)
    job = make_job(source, path, weight, limit, format=format, batches_per_file=batches_per_file,
                   max_skips=max_skips, progress=progress, verify=verify, verify_inputs=verify_inputs,
                   storage_options=storage_options, input_storage_options=input_storage_options,
                   inputs=inputs, **opts)
    with WriterLock(job.folder), resolve_scheduler(scheduler) as client:
        job.client = client
        result = job.run(append=append, overwrite=overwrite, resume=resume)
    result.seconds = time.perf_counter() - t0
    return result


to_files.__doc__ = fill_doc(to_files.__doc__, {"export_settings": settings_doc})


def make_job(source, path, weight, limit, *, format="parquet", batches_per_file=1, max_skips=0,
             progress=None, verify=False, verify_inputs=False, storage_options=None,
             input_storage_options=None, inputs=None, **opts) -> Job:
    """The checked :class:`~.job.Job` of one :func:`to_files` call (the arguments are its own),
    ready to run under the folder's lock: the options and the input's schema are checked, and
    the inputs listed, before the folder is touched.

    >>> import pandas as pd, tempfile
    >>> job = make_job(pd.DataFrame({"w": [1, 2]}), tempfile.mkdtemp(), "w", 3)
    >>> job.settings["limit"], job.settings["format"]
    (3, 'parquet')
    """
    if not isinstance(weight, str):
        raise TypeError(f"to_files needs the weight as a column name, not {type(weight).__name__}")
    options = BatchOptions.make(weight, limit, **opts)
    check_export_arguments(options, format, batches_per_file, max_skips)
    source = Source(source, inputs, input_storage_options or storage_options, full_hash=bool(verify_inputs))
    if source.files:  # the schema's checks (columns, dtypes, the id column) before the folder is touched
        prepare_frame(source.ddf(source.files[:1]), weight, options)
    folder = Folder(path, storage_options)
    source.check_output_outside(folder)
    return Job(
        folder=folder, source=source, options=options,
        settings=export_settings(options, format, int(batches_per_file)),
        max_skips=max_skips, progress=show_progress(progress), verify=verify,
    )


def _check_keywords(opts: dict) -> None:
    """Refuse a keyword that is neither a batching option nor one of ``to_files``'s own."""
    unknown = [key for key in opts if key not in OPTIONS]
    if unknown:
        own = [name for name, p in inspect.signature(to_files).parameters.items() if p.kind is not p.VAR_KEYWORD]
        raise unexpected_keyword("to_files", unknown[0], own + list(OPTIONS))
