"""What an output folder holds: :func:`folder_status`."""
from __future__ import annotations

from .follow import read_follow_record
from .folder import CONTROL, LEGACY_WORK, MANIFEST, RUN, WORK, ExportError, Folder, load_json
from .manifest import (
    has_success, manifest_files, stray_entries, stray_error, validate_manifest, verify_batches, verify_files,
)


def folder_status(path, storage_options=None, verify: bool = False) -> dict:
    """What an output folder holds: state, batches, rows, files, inputs, open batch.

    ``state`` is ``"complete"``, ``"interrupted export"``, ``"interrupted append"``,
    ``"incomplete (no _SUCCESS)"``, ``"empty"`` (also for a missing folder) or ``"not an export"``
    (also for a file: then ``"file": True``). ``stray`` lists the entries a reader would take as
    data (``dd.read_parquet``, pyarrow: see docs/export.md) that the manifest does not list.
    ``verified`` says whether every file's checksum was checked: only with ``verify``, and then a
    stray entry is an error. For an interrupted run, ``progress`` says how far it got:
    ``partitions_done``, ``rows_done``, ``batches_done`` (in the files its finished tasks wrote)
    of the run's ``partitions_total``, ``rows_total`` and ``batches_total`` (no ``progress`` for
    a run record of an older version, which did not record its plan). A folder that a follower
    (:func:`~dask_cumbatch.export.follow`, ``export --follow``) keeps up to date has ``follow``:
    its record (``pid``, ``host``, ``started``, ``poll``, ``last_poll``, ``appends``,
    ``last_append``; ``stopped`` and ``stopped_by`` once it stopped) and ``alive`` (see
    ``dask_cumbatch.export.follow.read_follow_record``). A damaged or tampered
    folder, or a ``_SUCCESS`` that is not a regular file, raises
    :class:`~dask_cumbatch.errors.ExportError`.

    >>> import tempfile, pandas as pd
    >>> from dask_cumbatch.export import to_files
    >>> out = tempfile.mkdtemp()
    >>> folder_status(out)["state"]
    'empty'
    >>> _ = to_files(pd.DataFrame({"w": [1, 2, 3]}), out, "w", 3)
    >>> st = folder_status(out, verify=True)
    >>> st["state"], st["batches"], st["rows"], st["open_batch"]["rows"]
    ('complete', 2, 3, 1)
    """
    folder = Folder(path, storage_options)
    out = {"path": folder.url, "state": "empty", "complete": False}
    try:
        listing = folder.listing()
    except ExportError:
        if not folder.fs.isfile(folder.root):
            raise
        return dict(out, state="not an export", file=True)
    run = _run_record(folder, listing)
    if run is None and not [n for n in listing if n != CONTROL]:
        return out
    manifest = load_json(folder, MANIFEST, "the manifest") if MANIFEST in listing else None
    if MANIFEST in listing and manifest is None:
        validate_manifest(manifest)  # a manifest that holds null is damaged: raises
    if manifest is None and run is None:
        out["state"] = "not an export"
        return out
    if manifest is not None:
        validate_manifest(manifest, folder if run is None else None, listing)
        listed = manifest_files(manifest)  # once: per listing entry it made status quadratic in the files
        out["stray"] = stray_entries(folder, listed, listing)
        out["verified"] = False
        if verify and run is None:
            verify_files(folder, manifest)
            verify_batches(folder, manifest)  # the files keep the recorded settings
            if out["stray"]:
                raise stray_error(folder, out["stray"])
            out["verified"] = True
    if run is not None:
        out["state"] = f"interrupted {run.get('kind', 'export')}"
        out["interrupted_inputs"] = len(run.get("inputs", [])) - int(run.get("first_new", 0))
        if isinstance(run.get("planned"), dict):
            out["progress"] = run_progress(folder, run)
        if run.get("kind") == "append" and run.get("base"):
            manifest = run["base"]
    else:
        out["complete"] = has_success(folder, listing)
        out["state"] = "complete" if out["complete"] else "incomplete (no _SUCCESS)"
    if manifest is not None:
        out.update(_summary(manifest))
    followed = read_follow_record(folder)
    if followed is not None:
        out["follow"] = followed
    return out


def _run_record(folder: Folder, listing):
    """The record of an interrupted run, in the current or the version 1 work folder."""
    for work, run in ((WORK, RUN), (LEGACY_WORK, LEGACY_WORK + "/run.json")):
        if folder.exists(work):
            record = load_json(folder, run, "the run record")
            if record is not None:
                return record
    return None


def run_progress(folder: Folder, run: dict) -> dict:
    """How far an interrupted run got, from the records its finished tasks wrote: partitions,
    rows and batches done (in files written), of the totals its run record planned.

    >>> import tempfile
    >>> run_progress(Folder(tempfile.mkdtemp()), {"planned": {"partitions": 4, "rows": 10, "batches": 3}})
    {'partitions_done': 0, 'rows_done': 0, 'batches_done': 0, 'partitions_total': 4, 'rows_total': 10, 'batches_total': 3}
    """
    parts = _task_records(folder, f"{WORK}/parts")
    joined = _task_records(folder, f"{WORK}/groups")
    groups = [g for rec in parts for g in rec.get("groups", [])] + joined
    out = {
        "partitions_done": len(parts),
        "rows_done": sum(int(rec.get("rows", 0)) for rec in parts),
        "batches_done": sum(len(g.get("batches", [])) for g in groups if isinstance(g, dict)),
    }
    planned = run["planned"]
    out.update({f"{key}_total": planned[key] for key in ("partitions", "rows", "batches") if key in planned})
    return out


def _task_records(folder: Folder, under: str) -> list:
    """The readable task records in ``under`` (one that cannot be read counts as not done,
    as the run that resumes it does)."""
    records = []
    for name in sorted(folder.listing(under)):
        try:
            rec = load_json(folder, f"{under}/{name}", "a task record") if name.endswith(".json") else None
        except ExportError:
            rec = None
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _summary(manifest) -> dict:
    b = manifest["batches"]
    out = {
        "settings": manifest["settings"],
        "batches": len(b),
        "rows": manifest.get("rows", 0),
        "skipped": manifest.get("skipped", 0),
        "files": len({x["file"] for x in b}),
        "bytes": sum({x["file"]: x["bytes"] for x in b}.values()),
        "inputs": manifest["inputs"],
    }
    if b:
        last = b[-1]
        out["open_batch"] = {"batch": last["batch"], "rows": last["rows"], "total": last["total"],
                             "file": last["file"]}
    return out
