"""The batch iterator: pulls partitions ahead in background threads and yields whole batches."""
from __future__ import annotations

import collections
import concurrent.futures as cf
import operator
import time
from dataclasses import dataclass


from .formats import FORMAT_TYPES, batch_bounds
from .options import TrainingOptions
from .schedule import make_schedule
from .source import BatchSource


READY_BATCHES = 4  # converted batches the producer thread keeps ready for the caller


@dataclass
class IteratorStats:
    """Counters of one iterator (updated by its background threads, read by the caller).

    >>> IteratorStats().batches_yielded
    0
    """

    wait_seconds: float = 0.0
    batches_yielded: int = 0
    max_buffered: int = 0
    max_partitions: int = 0
    max_ready: int = 0
    partitions_computed: int = 0

    def __post_init__(self):
        import threading

        self.lock = threading.Lock()  # partitions_computed is counted from several threads


_DONE = object()


class BatchIterator:
    """Iterator of ``(batch_id, batch)``; ``batch`` in the chosen ``format``.

    The schedule (which batches, in which order) is computed on creation from the plan; no
    data is read until the first ``next()``. With ``prefetch >= 1`` a background thread then
    computes the partitions ``prefetch`` ahead and another picks, shuffles and converts the
    batches, keeping up to ``READY_BATCHES`` (4) ready, so ``next()`` mostly just hands one
    over; ``prefetch=0`` does everything inside ``next()``, without threads.

    Counters: ``wait_seconds`` (time spent inside ``next()``: what the caller waited for
    data), ``batches_yielded``, ``max_buffered`` (peak batches in the shuffle buffer,
    <= ``shuffle_buffer``), ``max_partitions`` (peak partitions held, <= ``prefetch + 1``),
    ``max_ready`` (<= 4), ``partitions_computed``. ``dropped``/``dropped_ids`` and ``padded``
    describe the whole stream (the same on every rank); ``len(it)`` is this iterator's count.

    >>> import pandas as pd, dask_cumbatch
    >>> it = pd.DataFrame({"w": [1] * 8}).cumbatch.iter_batches("w", 2, shuffle="batches", seed=0)
    >>> sorted(b for b, _ in it), it.batches_yielded, it.wait_seconds >= 0
    ([0, 1, 2, 3], 4, True)
    """

    def __init__(self, source: BatchSource, options: TrainingOptions, worker: tuple[int, int] = (0, 1)):
        self.source = source
        self.options = options
        self.worker = worker
        self.schedule = make_schedule(source.ranges, options, worker)
        self.stats = IteratorStats()
        self._gen = None  # prefetch=0: the generator itself
        self._queue = None  # prefetch>=1: the producer's ready queue
        self._stop = None
        self._closed = False

    def __len__(self) -> int:
        return len(self.schedule.regular) + len(self.schedule.pads)

    def for_epoch(self, epoch: int) -> "BatchIterator":
        """A fresh iterator over the same plan for another epoch (no new plan pass).

        >>> import pandas as pd, dask_cumbatch
        >>> it = pd.DataFrame({"w": [1] * 40}).cumbatch.iter_batches("w", 2, shuffle="batches", seed=1)
        >>> [b for b, _ in it] != [b for b, _ in it.for_epoch(1)]
        True
        """
        return BatchIterator(self.source, self.options.with_(epoch=epoch), self.worker)

    def __repr__(self) -> str:
        o = self.options
        return (f"<BatchIterator {len(self)} of {self.n_batches} batches: rank {o.rank}/{o.world_size}, "
                f"shuffle={o.shuffle!r}, epoch={o.epoch}, format={o.format!r}; yielded "
                f"{self.batches_yielded}, waited {self.wait_seconds:.3f} s>")

    # ----------------------------------------------------------------- iteration
    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration
        stats = self.stats
        t0 = time.perf_counter()
        try:
            if self.options.prefetch == 0:
                if self._gen is None:
                    self._gen = _generate(self.source, self.schedule, self.options, stats, None)
                item = next(self._gen)
            else:
                if self._queue is None:
                    self._start()
                item = self._queue.get()
                if item is _DONE:
                    self._closed = True
                    raise StopIteration
                if isinstance(item, _Failure):
                    self._closed = True
                    raise item.error
        finally:
            stats.wait_seconds += time.perf_counter() - t0
        stats.batches_yielded += 1
        return item

    def _start(self):
        import queue
        import threading

        self._queue = queue.Queue(maxsize=READY_BATCHES)
        self._stop = threading.Event()
        # the thread gets the parts it needs, not the iterator, so an abandoned iterator is
        # garbage collected (and its __del__ stops the thread)
        thread = threading.Thread(
            target=_produce, name="cumbatch-batches", daemon=True,
            args=(self.source, self.schedule, self.options, self.stats, self._queue, self._stop),
        )
        thread.start()

    def close(self) -> None:
        """Stop the background threads and release what is held (also on garbage collection).

        >>> import pandas as pd, dask_cumbatch
        >>> it = pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2)
        >>> next(it)[0]
        0
        >>> it.close(); list(it)
        []
        """
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        if self._gen is not None:
            self._gen.close()
            self._gen = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_only(name: str, source: str, summary: str, example: str) -> property:
    """A documented read-only attribute ``name`` of :class:`BatchIterator` that reads ``self.<source>``."""
    read = operator.attrgetter(source)

    def get(self):
        return read(self)

    get.__name__ = name
    get.__doc__ = f"""{summary}

        >>> import pandas as pd, dask_cumbatch
        {example}
        """
    return property(get)


# The iterator's counters (``stats``, written by its threads) and its schedule's sizes, as
# attributes: (name, where it is read, summary, example). The examples run as doctests.
_ATTRIBUTES = (
    ("wait_seconds", "stats.wait_seconds",
     "Seconds the caller spent waiting inside ``next()`` for data.",
     """>>> it = pd.DataFrame({"w": [1] * 4}).cumbatch.iter_batches("w", 2)
        >>> _ = list(it); it.wait_seconds >= 0
        True"""),
    ("batches_yielded", "stats.batches_yielded", "Batches handed out so far.",
     """>>> it = pd.DataFrame({"w": [1] * 4}).cumbatch.iter_batches("w", 2)
        >>> _ = next(it); it.batches_yielded
        1"""),
    ("max_buffered", "stats.max_buffered",
     "Peak batches held in the shuffle buffer (at most ``shuffle_buffer``).",
     """>>> it = pd.DataFrame({"w": [1] * 40}).cumbatch.iter_batches(
        ...     "w", 2, shuffle="batches", seed=0, shuffle_buffer=3)
        >>> _ = list(it); 0 < it.max_buffered <= 3
        True"""),
    ("max_partitions", "stats.max_partitions",
     "Peak computed partitions held at once (at most ``prefetch + 1``).",
     """>>> it = pd.DataFrame({"w": [1] * 4}).cumbatch.iter_batches("w", 2)
        >>> _ = list(it); it.max_partitions <= 2
        True"""),
    ("max_ready", "stats.max_ready", "Peak converted batches waiting for the caller (at most 4).",
     """>>> it = pd.DataFrame({"w": [1] * 4}).cumbatch.iter_batches("w", 2)
        >>> _ = list(it); it.max_ready <= 4
        True"""),
    ("partitions_computed", "stats.partitions_computed", "Partitions computed so far.",
     """>>> it = pd.DataFrame({"w": [1] * 4}).cumbatch.iter_batches("w", 2)
        >>> _ = list(it); it.partitions_computed
        1"""),
    ("n_batches", "schedule.n_batches",
     "Batches in the data (all ranks together, before dropping or padding).",
     """>>> pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2).n_batches
        3"""),
    ("dropped", "schedule.dropped",
     "Batches no rank yields (``drop_last=True``): the last ``n_batches % world_size``.",
     """>>> it = pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2, world_size=2, drop_last=True)
        >>> it.dropped, it.dropped_ids.tolist()
        (1, [2])"""),
    ("dropped_ids", "schedule.dropped_ids", "Ids of the dropped batches (see :attr:`dropped`).",
     """>>> pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches(
        ...     "w", 2, world_size=2, drop_last=True).dropped_ids.tolist()
        [2]"""),
    ("padded", "schedule.padded",
     "Padding batches in the stream (``drop_last=False``): repeats of its first ones.",
     """>>> pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2, world_size=2).padded
        1"""),
    ("batches_per_rank", "schedule.per_rank",
     "What every rank yields (all its DataLoader workers together).",
     """>>> pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2, world_size=2).batches_per_rank
        2"""),
)

for _name, _source, _summary, _example in _ATTRIBUTES:
    setattr(BatchIterator, _name, _read_only(_name, _source, _summary, _example))


class _Failure:
    def __init__(self, error):
        self.error = error


def _produce(source, schedule, options, stats, ready, stop):
    """The producer thread: runs the generator and fills the ready queue until told to stop."""
    import queue

    gen = _generate(source, schedule, options, stats, stop)

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
            except queue.Full:  # the caller is busy: check for close() now and then
                continue
            stats.max_ready = max(stats.max_ready, ready.qsize())
            return True
        return False

    try:
        for item in gen:
            if not put(item):
                return
        put(_DONE)
    except BaseException as err:  # noqa: BLE001 - handed to the caller
        put(_Failure(err))
    finally:
        gen.close()


def _generate(source, sched, options, stats, stop):
    """``(batch_id, batch)`` in this iterator's order: pull arrivals, keep own, buffer."""
    fmt = FORMAT_TYPES[options.format]()
    wanted = set(sched.regular.tolist())  # each batch arrives once, in one partition
    pad_ids = set(sched.pads.tolist())
    held: dict = {}  # this worker's batches that arrived before their turn (the buffer)
    reserve: dict = {}  # copies of the padding batches, yielded at the end
    arrivals = _arrivals(source, sched.needed, options.prefetch, stats, stop, fmt)

    def pull():
        try:
            bid, part, a, b = next(arrivals)
        except StopIteration:  # pragma: no cover - guarded by the check in _arrivals
            raise RuntimeError("the partitions ended before the batches the plan promised") from None
        if bid in pad_ids:
            reserve[bid] = fmt.detach(fmt.slice(part, a, b))
        return bid, part, a, b

    try:
        for b in sched.regular.tolist():
            batch = held.pop(b, None)
            while batch is None:
                bid, part, lo, hi = pull()
                if bid == b:
                    batch = fmt.slice(part, lo, hi)
                elif bid in wanted:
                    held[bid] = fmt.detach(fmt.slice(part, lo, hi))  # the partition can go
                    if len(held) > stats.max_buffered:
                        stats.max_buffered = len(held)
                del part
            yield b, batch
            batch = None
        for b in sched.pads.tolist():
            while b not in reserve:
                pull()
            yield b, reserve[b]
    finally:
        arrivals.close()
        held.clear()
        reserve.clear()


def _arrivals(source, needed, prefetch, stats, stop, fmt):
    """``(batch_id, partition, start, stop)`` for every batch of the needed partitions, in
    reading order; the partitions are computed (and converted) ``prefetch`` ahead."""
    name = source.name

    def compute(k):
        if stop is not None and stop.is_set():
            return None
        frame = source.partition(k)
        ids, bounds = batch_bounds(frame[name].to_numpy())
        lo, hi = source.ranges[k]
        if ids != list(range(lo, hi + 1)):
            got = f"{len(ids)} batches ({ids[0]}..{ids[-1]})" if ids else "no batch"
            raise RuntimeError(
                f"output partition {k} holds {got}, but the plan pass put the {hi - lo + 1} "
                f"batches {lo}..{hi} there: "
                "did the data or its partitioning change after iter_batches() planned it? Call iter_batches() again."
            )
        part = fmt.partition(frame)
        with stats.lock:
            stats.partitions_computed += 1
        return part, ids, bounds

    def split(computed):
        part, ids, bounds = computed
        for i, bid in enumerate(ids):
            yield bid, part, bounds[i], bounds[i + 1]

    source.delayed_parts()  # once, before the threads use it
    if prefetch == 0:
        for k in needed:
            stats.max_partitions = max(stats.max_partitions, 1)
            yield from split(compute(k))
        return
    # up to `prefetch` partitions are computed at once (each with the current Dask scheduler)
    pool = cf.ThreadPoolExecutor(max_workers=prefetch, thread_name_prefix="cumbatch-prefetch")
    pending = collections.deque(pool.submit(compute, k) for k in needed[:prefetch])
    nxt = len(pending)
    try:
        while pending:
            fut = pending.popleft()
            if nxt < len(needed):
                pending.append(pool.submit(compute, needed[nxt]))
                nxt += 1
            # the partition being split plus those submitted (computing or done)
            stats.max_partitions = max(stats.max_partitions, len(pending) + 1)
            computed = fut.result()
            if computed is None:  # stopped
                return
            yield from split(computed)
            del computed, fut
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def make_iterator(prep, plan, options: TrainingOptions, sync=False) -> BatchIterator:
    """The iterator over a planned frame (used by ``iter_batches``, which shows it at work).

    >>> import pandas as pd, dask_cumbatch
    >>> type(pd.DataFrame({"w": [1, 1]}).cumbatch.iter_batches("w", 2)).__name__
    'BatchIterator'
    """
    source = BatchSource.from_plan(prep, plan, options.batches_per_partition, sync=sync)
    return BatchIterator(source, options)
