"""Following an export folder: :func:`follow_batches` yields each batch once it is closed.

An append continues the last batch of an export, so only the batches before the last are final
(closed): a reader polls ``_manifest.json`` and reads a batch once a committed manifest lists a
later one. Rows are picked by the id column, never by offsets: an append may rewrite a file
between the reader's look at the manifest and its read of the file, but it keeps the closed
batches' rows as they were.
"""
from __future__ import annotations

import hashlib
import json
import time

import numpy as np

from ..options import seconds
from .folder import MANIFEST, ExportError, Folder, one_line
from .manifest import read_data_file, validate_manifest
from .status import folder_status


def follow_batches(path, *, start: int = 0, poll: float = 1.0, idle_exit: float | None = None,
                   final: bool = False, storage_options: dict | None = None, columns=None, wanted=None):
    """Yield ``(batch_id, DataFrame)`` for each closed batch of the export in ``path``, in id
    order, from batch ``start`` on, as soon as a committed manifest lists it.

    The manifest is polled every ``poll`` seconds (a manifest whose bytes did not change is not
    parsed again). A batch is closed once a later batch exists: the last batch stays open, since
    an ``append`` may still add rows to it, and is not yielded. ``final=True`` yields it too when
    the reader stops (after ``idle_exit``) and the folder is complete (``_SUCCESS``, no run in
    progress); a later append could still continue that batch, so use it only when the stream
    is known to have ended. ``idle_exit=None`` follows forever; a number stops after that many
    seconds without a new closed batch. A folder that does not exist yet, or holds no export
    yet, is waited for. Each data file is read once for all the batches due from it, with all
    columns (the id column included) or ``columns``; each frame has a fresh ``RangeIndex``.
    ``wanted(id)``, when given, picks the ids to yield (one rank's share): the others are
    passed over, and a file that holds none of them is never read.

    Resume after a restart by passing the id after the last one processed as ``start``. A
    manifest that fails ``validate_manifest``, a file that lacks a
    batch's rows, or a folder that lists fewer batches than before (overwritten under the
    reader) raises :class:`~dask_cumbatch.errors.ExportError`.

    >>> import tempfile, pandas as pd
    >>> from dask_cumbatch.export import to_files
    >>> out = tempfile.mkdtemp()
    >>> _ = to_files(pd.DataFrame({"w": [3, 3, 3, 3, 5]}), out, "w", 6)
    >>> [(i, b["w"].tolist()) for i, b in follow_batches(out, idle_exit=0)]
    [(0, [3, 3]), (1, [3, 3])]
    >>> [i for i, _ in follow_batches(out, start=1, idle_exit=0, final=True)]
    [1, 2]
    >>> [i for i, _ in follow_batches(out, idle_exit=0, final=True, wanted=lambda i: i % 2 == 0)]
    [0, 2]
    """
    _check_arguments(start, poll, idle_exit)  # at the call, not at the first batch
    follower = _Follower(Folder(path, storage_options), storage_options, int(start), columns, wanted)
    return _follow_loop(follower, poll, idle_exit, final)


def _follow_loop(follower, poll, idle_exit, final):
    last_news = time.monotonic()
    while True:
        manifest = follower.poll()
        due = follower.closed_due(manifest) if manifest is not None else []
        if due:
            yield from follower.read(manifest, due)
            last_news = time.monotonic()
        left = None if idle_exit is None else last_news + idle_exit - time.monotonic()
        if left is not None and left <= 0:
            if not final:
                return
            ended = yield from follower.final_batch()
            if ended:
                return
            last_news = time.monotonic()  # the folder moved on: keep following
            continue
        time.sleep(poll if left is None else min(poll, left))


def _check_arguments(start, poll, idle_exit) -> None:
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a batch id >= 0, got {start!r}")
    seconds("poll", poll)
    seconds("idle_exit", idle_exit, zero=True, optional=True)


class _Follower:
    """The reader's position in a folder: the next id to yield, and what it saw last."""

    def __init__(self, folder: Folder, storage_options, start: int, columns, wanted):
        self.folder = folder
        self.storage_options = storage_options
        self.next = start
        self.columns = None if columns is None else list(columns)
        self.wanted = wanted
        self.digest = None  # sha256 of the manifest's bytes last parsed
        self.manifest = None
        self.closed = []  # (batch, rows, total, file) of the closed batches seen so far

    def fail(self, what: str) -> ExportError:
        return ExportError(f"following {self.folder.url}: {what}")

    # ---------------------------------------------------------------- the manifest
    def poll(self):
        """The manifest, if it changed since the last poll (validated), else None."""
        data = self._read_manifest()
        if data is None:
            if self.manifest is not None:
                raise self.fail(f"{MANIFEST} disappeared after listing {len(self.manifest['batches'])} batches: "
                                "the folder was removed or is being overwritten")
            return None
        digest = hashlib.sha256(data).digest()
        if digest == self.digest:
            return None
        manifest = self._parse(data)
        self._check_continues(manifest)
        self.digest, self.manifest = digest, manifest
        return manifest

    def _read_manifest(self):
        try:
            return self.folder.read(MANIFEST)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            raise self.fail("it is a file, not a folder") from None

    def _parse(self, data: bytes) -> dict:
        try:
            manifest = json.loads(data.decode())
        except ValueError as exc:
            raise self.fail(f"{MANIFEST} is not JSON ({one_line(exc)})") from None
        try:
            return validate_manifest(manifest)
        except ExportError as exc:
            raise self.fail(one_line(exc)) from None

    def _check_continues(self, manifest: dict) -> None:
        """Raise unless ``manifest`` continues the one seen before: batch ids never go back
        and closed batches never change (else the folder was overwritten under the reader)."""
        batches = manifest["batches"]
        seen = len(self.manifest["batches"]) if self.manifest is not None else 0
        if len(batches) < seen:
            raise self.fail(f"it lists {len(batches)} batches, fewer than the {seen} listed before: "
                            "the folder was overwritten under the reader")
        for old, new in zip(self.closed, batches):
            if old != _record(new):
                raise self.fail(f"closed batch {old[0]} changed (rows, total or file): "
                                "the folder was overwritten under the reader")
        self.closed = [_record(b) for b in batches[:-1]]

    # ---------------------------------------------------------------- batches
    def closed_due(self, manifest: dict) -> list:
        """The closed batches not yielded yet (entries of ``manifest``), in id order."""
        return manifest["batches"][self.next:-1]

    def read(self, manifest: dict, due: list):
        """Yield the ``due`` batches (consecutive entries of ``manifest``) that are wanted, each
        data file read once; the position moves past every due batch."""
        by_file = {}
        for b in due:
            if self.wanted is None or self.wanted(b["batch"]):
                by_file.setdefault(b["file"], []).append(b)
        for b in due:
            entries = by_file.pop(b["file"], None)
            if entries:
                yield from self._read_file(manifest, b["file"], entries)
        self.next = due[-1]["batch"] + 1

    def _read_file(self, manifest: dict, name: str, entries: list, open_batch: bool = False):
        """Yield the batches ``entries`` from data file ``name`` (read once). A batch whose row
        count differs from the manifest's raises, unless it is the ``open_batch`` (an append
        grew it since): then nothing is yielded."""
        frame = read_data_file(self.folder, manifest, name, self.columns)
        ids = frame[manifest["settings"]["name"]].to_numpy()
        if len(ids) > 1 and (np.diff(ids) < 0).any():
            raise self.fail(f"{name} holds its batch ids out of order: the file was changed")
        keep = self.columns if self.columns is not None else list(frame.columns)
        for b in entries:
            lo, hi = np.searchsorted(ids, b["batch"], "left"), np.searchsorted(ids, b["batch"], "right")
            if hi - lo != b["rows"]:
                if open_batch:
                    return
                raise self.fail(f"{name} holds {hi - lo} rows of batch {b['batch']}, {MANIFEST} says {b['rows']}: "
                                "the file was changed or the folder overwritten")
            self.next = b["batch"] + 1
            yield b["batch"], frame.iloc[lo:hi][keep].reset_index(drop=True)

    def final_batch(self):
        """Yield the open last batch if the folder is complete and nothing changed meanwhile;
        return whether the stream ended (False: new batches or rows came, keep following)."""
        manifest = self.poll() or self.manifest
        due = self.closed_due(manifest) if manifest is not None else []
        if due:
            yield from self.read(manifest, due)
            return False
        status = folder_status(self.folder.url, self.storage_options)
        if manifest is None or not status["complete"]:
            return True
        batches = manifest["batches"]
        if status["batches"] != len(batches) or (batches and status["open_batch"]["rows"] != batches[-1]["rows"]):
            return False  # a run committed after the poll above
        if not batches or batches[-1]["batch"] < self.next:
            return True
        last = batches[-1]
        if self.wanted is not None and not self.wanted(last["batch"]):
            self.next = last["batch"] + 1
            return True
        yield from self._read_file(manifest, last["file"], [last], open_batch=True)
        return self.next > last["batch"]


def _record(b: dict) -> tuple:
    return b["batch"], b["rows"], b["total"], b["file"]
