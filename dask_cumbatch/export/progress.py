"""Scheduling and progress: which scheduler runs the export, and Dask's own progress display."""
from __future__ import annotations

import contextlib
import sys
import threading
import time

from ..dask.scheduler import active_client
from .folder import ExportError, one_line

STALL_SECONDS = 30.0  # a line on stderr when no task of a cluster run finished for this long

LOCAL_SCHEDULERS = ("threads", "threading", "processes", "multiprocessing", "sync", "synchronous",
                    "single-threaded")


def isatty(stream) -> bool:
    """Whether ``stream`` is a terminal (False for anything that cannot tell).

    >>> import io
    >>> isatty(io.StringIO())
    False
    """
    try:
        return stream.isatty()
    except Exception:
        return False


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython loaded, with a kernel attached).

    >>> in_notebook()
    False
    """
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:
        return False
    return shell is not None and hasattr(shell, "kernel")


def show_progress(progress) -> bool:
    """Whether to show progress: ``True``/``False`` as given; ``None`` decides by the
    environment (stderr is a terminal, or a Jupyter kernel runs the code).

    >>> show_progress(True), show_progress(False)
    (True, False)
    """
    if progress is None:
        return isatty(sys.stderr) or in_notebook()
    return bool(progress)


@contextlib.contextmanager
def resolve_scheduler(scheduler):
    """Use ``scheduler``: None (Dask's default / an active client), a local scheduler name, a
    ``dask.distributed`` ``Client``, or a scheduler address (a client is opened and closed around
    the block). Yields the client, or None for a local scheduler, which is configured as Dask's
    function for it (see :func:`_local_get`).

    >>> with resolve_scheduler("sync") as client:
    ...     print(client)
    None
    """
    import dask

    if scheduler is None:
        client = active_client()
        configured = dask.config.get("scheduler", None)
        if client is not None or (configured is not None and configured not in LOCAL_SCHEDULERS):
            yield client
            return
        scheduler = configured or "threads"  # what Dask would pick: no client is active
    if not isinstance(scheduler, str):  # a distributed Client
        yield scheduler
        return
    if scheduler in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=_local_get(scheduler)):
            yield None
        return
    client = _connect(scheduler)
    try:
        with client.as_current():
            yield client
    finally:
        client.close()


def _local_get(name: str):
    """Dask's function for the local scheduler ``name``. Configured as the function rather than
    the name, so that Dask does not import dask.distributed (a large share of a process start,
    docs/performance.md) to look for a client that cannot exist.

    The threaded scheduler gets a pool of its own (:func:`threads_get`).

    >>> import dask.local
    >>> _local_get("sync") is dask.local.get_sync
    True
    """
    from dask.base import named_schedulers

    if name in ("threads", "threading"):
        return threads_get
    return named_schedulers[name]


def threads_get(dsk, keys, num_workers=None, **kwargs):
    """Dask's threaded scheduler on a pool of its own, which is shut down before the call
    returns or raises: when a task fails, the tasks still running (writers of other
    partitions) finish before the error reaches the caller, and the queued ones are dropped.
    On Dask's shared pool they would go on writing into a folder that the next run (a resume
    in the same notebook) is already tidying.

    >>> import dask
    >>> with dask.config.set(scheduler=threads_get):
    ...     dask.compute(dask.delayed(abs)(-2))
    (2,)
    """
    import dask
    import dask.threaded
    from concurrent.futures import ThreadPoolExecutor
    from dask.system import CPU_COUNT

    workers = num_workers or dask.config.get("num_workers", None) or CPU_COUNT
    pool = ThreadPoolExecutor(workers)
    try:
        return dask.threaded.get(dsk, keys, pool=pool, **kwargs)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _connect(address: str):
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is a test dependency
        raise ExportError("a scheduler address needs dask.distributed: pip install distributed") from exc
    try:
        return Client(address, timeout="20s")
    except Exception as exc:
        raise ExportError(f"cannot connect to the Dask scheduler at {address}: {one_line(exc)}") from exc


@contextlib.contextmanager
def progress_context(progress: bool, client):
    """Show Dask's local progress bar (on stderr) around the block when ``progress`` and there
    is no distributed client (a client's work is shown by :func:`compute`).

    >>> import dask
    >>> with progress_context(False, None):
    ...     dask.delayed(sum)([1, 2]).compute()
    3
    """
    if progress and client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr, minimum=1.0):
            yield
    else:
        yield


def compute(tasks, progress: bool, client):
    """Compute ``tasks`` (a list of delayed objects) with a progress bar if asked.

    >>> import dask
    >>> compute([dask.delayed(abs)(-2)], False, None)
    [2]
    """
    import dask

    if not tasks:
        return []
    if client is not None:
        futures = client.compute(tasks)
        with watch_for_stall(futures, client):
            if progress:
                _distributed_progress(futures)
            return client.gather(futures)
    with progress_context(progress, None):
        return list(dask.compute(*tasks))


def _distributed_progress(futures) -> None:
    """Dask's distributed progress: a widget in a notebook, a text bar on stderr otherwise."""
    from distributed import progress as dprogress

    if in_notebook():
        try:
            import ipywidgets  # noqa: F401  (the widget needs it; without it: the text bar)
            from IPython.display import display
        except ImportError:
            pass
        else:
            display(dprogress(futures, notebook=True))  # updates while the results are gathered
            return
    with contextlib.redirect_stdout(sys.stderr):
        dprogress(futures, notebook=False)
        print(file=sys.stderr)


@contextlib.contextmanager
def watch_for_stall(futures, client, after: float = None, stream=None):
    """While the block runs, print one line to ``stream`` (stderr) each time no future finished
    for ``after`` seconds (:data:`STALL_SECONDS`), with the workers' memory state: a cluster
    whose workers Dask paused near their memory limit shows itself instead of waiting silently.

    A background thread checks the futures' states once a second (no call to the scheduler);
    only a stall asks the scheduler about its workers.

    >>> with watch_for_stall([], None):
    ...     pass
    """
    after = STALL_SECONDS if after is None else after
    done = threading.Event()
    thread = threading.Thread(target=_watch, args=(futures, client, after, stream, done),
                              name="cumbatch-stall-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _watch(futures, client, after, stream, done) -> None:
    finished, since, reported = -1, time.monotonic(), False
    while not done.wait(min(1.0, after / 4)):
        now = sum(f.done() for f in futures)
        if now != finished:
            finished, since, reported = now, time.monotonic(), False
        elif not reported and time.monotonic() - since >= after:
            print(stall_line(finished, len(futures), time.monotonic() - since, workers_state(client)),
                  file=stream or sys.stderr, flush=True)
            reported = True  # once per stall; again after a task finishes and the next stall


def workers_state(client) -> list:
    """``[(address, status, memory, memory_limit), ...]`` of a distributed client's workers
    (empty when the scheduler cannot be asked).

    >>> workers_state(None)
    []
    """
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except Exception:
        return []
    return [(addr, w.get("status", "?"), (w.get("metrics") or {}).get("memory"), w.get("memory_limit"))
            for addr, w in sorted(workers.items())]


def stall_line(finished: int, total: int, seconds: float, workers: list) -> str:
    """The line that says a cluster run is stalled, with each worker's status and memory.

    >>> stall_line(3, 10, 31.0, [("tcp://w1", "paused", 500 * 2**20, 600 * 2**20)])
    'cumbatch: no task finished for 31 s (3 of 10 done); 1 of 1 worker(s) paused by Dask near their memory limit; tcp://w1 paused 500/600 MiB'
    """
    mib = lambda b: "?" if not b else f"{b / 2**20:.0f}"  # noqa: E731
    paused = sum(status == "paused" for _, status, _, _ in workers)
    parts = [f"cumbatch: no task finished for {seconds:.0f} s ({finished} of {total} done)"]
    if paused:
        parts.append(f"{paused} of {len(workers)} worker(s) paused by Dask near their memory limit")
    if not workers:
        parts.append("no workers")
    detail = ", ".join(f"{addr} {status} {mib(mem)}/{mib(limit)} MiB" for addr, status, mem, limit in workers)
    return "; ".join(parts + ([detail] if detail else []))
