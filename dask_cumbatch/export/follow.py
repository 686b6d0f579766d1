"""A followed export: :func:`follow` keeps an export folder up to date with an input that grows.

It holds the folder's writer lock for its whole run and, each ``poll`` seconds, lists the input
(names, sizes and times only). When the listing changed it runs one append (``to_files(...,
append=True)``) under that lock: the new files are exported, the open last batch continues,
and a consumed file that changed or went missing stops the run with the append's own error.
Every append is an ordinary, restartable run, so a follower killed at any moment is continued
by starting it again, and whenever it stops the data files are those of one export of the same
inputs. The follower's own record, ``_cumbatch/follow.json``, tells ``cumbatch status`` who
follows the folder and how far it is. See docs/streaming.md.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field

from ..options import seconds
from .folder import CONTROL, MANIFEST, Folder, WriterLock, dumps, holder_info, local_time_now
from .inputs import input_snapshot, is_path_spec
from .job import ExportResult, FolderTotals
from .progress import resolve_scheduler

FOLLOW = CONTROL + "/follow.json"  # the follower's record: who, since when, how far
RECORD_EVERY = 5.0  # seconds between updates of the record's last_poll when nothing arrives
REFUSED = ("overwrite", "append", "progress", "inputs")  # to_files arguments a follower sets itself


@dataclass
class FollowResult(FolderTotals):
    """What :func:`follow` did: ``appends`` runs that added rows, ``new_rows`` their rows, and
    the folder after the last one (``batches``, ``rows``, ``files``); ``stopped_by`` is
    ``"idle"`` (``idle_exit`` reached) or ``"stop"`` (the ``stop`` event, a signal).

    >>> FollowResult("out", appends=2, new_rows=10, stopped_by="idle").summary()
    'followed out: 2 append(s), 10 new rows; 0 batches, 0 rows in 0 files (stopped: idle, 0.0 s)'
    """

    appends: int = 0
    new_rows: int = 0
    seconds: float = 0.0
    stopped_by: str = ""
    results: list = field(default_factory=list, repr=False)  # the ExportResult of each append

    def summary(self) -> str:
        """One line for logs.

        >>> FollowResult("out", appends=1, new_rows=4, batches=3, rows=9, files=2, stopped_by="stop").summary()
        'followed out: 1 append(s), 4 new rows; 3 batches, 9 rows in 2 files (stopped: stop, 0.0 s)'
        """
        return (f"followed {self.path}: {self.appends:,} append(s), {self.new_rows:,} new rows; "
                f"{self.batches:,} batches, {self.rows:,} rows in {self.files:,} files "
                f"(stopped: {self.stopped_by}, {self.seconds:.1f} s)")

    def add(self, result: ExportResult) -> None:
        """Count one append's result: the folder's totals become its, and an append that added
        rows (not ``up_to_date``) counts with its ``new_rows``.

        >>> outcome = FollowResult("out")
        >>> outcome.add(ExportResult("out", batches=2, rows=10, files=2, new_rows=4))
        >>> outcome.add(ExportResult("out", batches=2, rows=10, files=2, up_to_date=True))
        >>> outcome.appends, outcome.new_rows, outcome.rows, len(outcome.results)
        (1, 4, 10, 2)
        """
        self.results.append(result)
        self.batches, self.rows, self.files = result.batches, result.rows, result.files
        if not result.up_to_date:
            self.appends += 1
            self.new_rows += result.new_rows


def follow(source, path, weight, limit, *, poll: float = 1.0, idle_exit: float | None = None,
           stop: threading.Event | None = None, on_append=None, scheduler=None, storage_options=None,
           input_storage_options=None, **options) -> FollowResult:
    """Export ``source`` (input path(s): a folder, glob or fsspec URL) into ``path`` and keep
    exporting each input file that arrives, until ``idle_exit`` seconds pass without one or
    ``stop`` (a ``threading.Event``) is set.

    Every ``poll`` seconds (at once after an append) the input is listed (names, sizes,
    times); when that changed, one append runs (``to_files(..., append=True)``): the new files' rows are cut into batches that
    continue the folder's last batch. A file counts once it stands under its final name: write
    it elsewhere (or under a name starting with ``.`` or ``_``) and rename it in. ``options`` are
    :func:`~dask_cumbatch.export.to_files`'s (``format``, ``batches_per_file``, ``max_skips``,
    ``verify_inputs``, ``resume``, and the batching options); ``on_append(result)`` is called
    with each append's :class:`~dask_cumbatch.export.ExportResult`.

    The follower holds the folder's lock while it runs (one writer per folder). It stops with
    the append's error (:class:`~dask_cumbatch.errors.ExportError`) when a consumed file changed or went missing, a
    new file sorts before a consumed one, or a file cannot be read: nothing is written for it,
    and a follower started again once the input is fixed continues. Killed at any moment, it is
    continued by starting it again.

    >>> import os, tempfile, pandas as pd
    >>> inp, out = tempfile.mkdtemp(), os.path.join(tempfile.mkdtemp(), "out")
    >>> pd.DataFrame({"w": [3, 3, 3]}).to_parquet(os.path.join(inp, "a.parquet"))
    >>> follow(inp, out, "w", 6, poll=0.05, idle_exit=0.2).summary()  # doctest: +ELLIPSIS
    'followed ...out: 1 append(s), 3 new rows; 2 batches, 3 rows in 2 files (stopped: idle, ... s)'
    """
    from . import make_job

    t0 = time.monotonic()
    _check_follow_arguments(source, poll, idle_exit, options)
    stop = stop if stop is not None else threading.Event()
    resume = options.pop("resume", True)
    in_options = input_storage_options or storage_options
    folder = Folder(path, storage_options)
    outcome = FollowResult(folder.url)
    with WriterLock(folder), resolve_scheduler(scheduler) as client:
        record = FollowRecord(folder, poll, idle_exit)
        seen, last_arrival = None, time.monotonic()
        try:
            while True:
                snapshot, appended = input_snapshot(source, in_options), False
                if snapshot and snapshot != seen:  # an empty input is waited on
                    job = make_job(source, path, weight, limit, progress=False, storage_options=storage_options,
                                   input_storage_options=input_storage_options, **options)
                    job.client = client
                    started = time.perf_counter()
                    result = job.run(append=True, overwrite=False, resume=resume)
                    result.seconds = time.perf_counter() - started
                    outcome.add(result)
                    record.appended(result)
                    appended = not result.up_to_date
                    if appended:
                        last_arrival = time.monotonic()
                        if on_append is not None:
                            on_append(result)
                seen = snapshot
                if idle_exit is not None and time.monotonic() - last_arrival >= idle_exit:
                    outcome.stopped_by = "idle"
                    break
                record.polled()
                # after an append, list again at once: what arrived while it ran is due now
                if stop.wait(0 if appended else poll):
                    outcome.stopped_by = "stop"
                    break
        finally:
            record.ended(outcome.stopped_by or "error")
    outcome.seconds = time.monotonic() - t0
    return outcome


def _check_follow_arguments(source, poll, idle_exit, options) -> None:
    if not is_path_spec(source):
        raise TypeError(f"follow needs input path(s) (a folder, glob or URL), not {type(source).__name__}")
    seconds("poll", poll)
    seconds("idle_exit", idle_exit, zero=True, optional=True)
    refused = [name for name in REFUSED if name in options]
    if refused:
        raise TypeError(f"follow does not take {refused[0]!r}: a follower appends, without a progress bar; "
                        "to start over, export with overwrite=True first")


class FollowRecord:
    """``_cumbatch/follow.json``: the follower's pid, host and start, its poll interval, when it
    last listed the input and appended, and how far the folder is. Written without an fsync:
    it informs ``status`` and guarantees nothing.

    >>> import tempfile
    >>> folder = Folder(tempfile.mkdtemp())
    >>> record = FollowRecord(folder, 1.0, None)
    >>> record.appended(ExportResult(folder.url, batches=2, rows=5, new_rows=5))
    >>> record.ended("idle"); read_follow_record(folder)["stopped_by"]
    'idle'
    """

    def __init__(self, folder: Folder, poll: float, idle_exit):
        self.folder = folder
        self.data = dict(holder_info(), poll=poll, idle_exit=idle_exit, appends=0,
                         last_poll=local_time_now(), last_append=None, batches=None, rows=None)
        self.written = None  # nothing is written into a folder that holds no export yet: a refused
        if folder.exists(MANIFEST):  # first append must leave it as it was
            self._write()

    def _write(self) -> None:
        self.folder.write_atomic(FOLLOW, dumps(self.data), durable=False)
        self.written = time.monotonic()

    def polled(self) -> None:
        """Note a listing of the input (written at most every ``RECORD_EVERY`` seconds)."""
        self.data["last_poll"] = local_time_now()
        if self.written is not None and time.monotonic() - self.written >= RECORD_EVERY:
            self._write()

    def appended(self, result: ExportResult) -> None:
        """Note an append's outcome."""
        self.data.update(last_poll=local_time_now(), batches=result.batches, rows=result.rows)
        if not result.up_to_date:
            self.data.update(appends=self.data["appends"] + 1, last_append=local_time_now())
        self._write()

    def ended(self, why: str) -> None:
        """Note that the follower stopped and why (``idle``, ``stop``, ``error``)."""
        self.data.update(stopped=local_time_now(), stopped_by=why)
        if self.written is None:
            return
        try:
            self._write()
        except Exception:  # the record is informative: never mask the error that stopped the run
            pass


def read_follow_record(folder: Folder) -> dict | None:
    """The follower's record in ``folder`` (None when it was never followed or it is unreadable),
    with ``alive``: whether the follower still runs (False when it stopped, or its process is
    gone from this host; None when it ran on another host and did not stop).

    >>> import tempfile
    >>> read_follow_record(Folder(tempfile.mkdtemp())) is None
    True
    """
    try:
        record = json.loads(folder.read(FOLLOW).decode())
    except Exception:
        return None
    if not isinstance(record, dict):
        return None
    record["alive"] = False if "stopped" in record else _process_alive(record)
    return record


def _process_alive(record: dict):
    import socket

    if record.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return None
    return True


__all__ = ["follow", "FollowResult", "read_follow_record", "FOLLOW"]
