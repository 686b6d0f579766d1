"""What an output folder holds: :func:`folder_status`."""
from __future__ import annotations

import re

from .folder import CONTROL, LEGACY_WORK, MANIFEST, RUN, SUCCESS, WORK, ExportError, Folder, load_json
from .manifest import manifest_files, validate_manifest, verify_batches, verify_files

DATA_FILE = re.compile(r"^part-[0-9]{8,}\.(parquet|csv|jsonl)$")


def folder_status(path, storage_options=None, verify: bool = False) -> dict:
    """What an output folder holds: state, batches, rows, files, inputs, open batch.

    ``state`` is ``"complete"``, ``"interrupted export"``, ``"interrupted append"``,
    ``"incomplete (no _SUCCESS)"``, ``"empty"`` (also for a missing folder) or ``"not an export"``.
    ``stray`` lists data files the manifest does not list. With ``verify`` every file's
    checksum is checked and a stray data file is an error. A damaged or tampered folder raises
    :class:`~dask_cumbatch.export.ExportError`.

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
    listing = folder.listing()
    out = {"path": folder.url, "state": "empty", "complete": False}
    run = _run_record(folder, listing)
    if run is None and not [n for n in listing if n != CONTROL]:
        return out
    manifest = load_json(folder, MANIFEST, "the manifest") if MANIFEST in listing else None
    if manifest is None and run is None:
        out["state"] = "not an export"
        return out
    if manifest is not None:
        validate_manifest(manifest, folder if run is None else None, listing)
        listed = manifest_files(manifest)  # once: per listing entry it made status quadratic in the files
        out["stray"] = sorted(n for n in listing if DATA_FILE.match(n) and n not in listed)
        if verify and run is None:
            verify_files(folder, manifest)
            verify_batches(folder, manifest)  # the files keep the recorded settings
            if out["stray"]:
                raise ExportError(f"{folder.url} holds data files its manifest does not list: "
                                  f"{', '.join(out['stray'][:5])}; readers of the folder would read them")
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
        out.update(_summary(manifest))
    return out


def _run_record(folder: Folder, listing):
    """The record of an interrupted run, in the current or the version 1 work folder."""
    for work, run in ((WORK, RUN), (LEGACY_WORK, LEGACY_WORK + "/run.json")):
        if folder.exists(work):
            record = load_json(folder, run, "the run record")
            if record is not None:
                return record
    return None


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
