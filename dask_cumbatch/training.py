"""Feeding training jobs: shuffled, sharded, prefetched streams of whole batches.

``ddf.cumbatch.iter_batches(weight, limit, ...)`` returns a :class:`BatchIterator`. Its order
is a pure function of the *plan* (batch ids and which output partition holds each), never of
the data's values or of timing, so it is the same on every run, every scheduler and every
machine that sees the same input partitioning:

1. **Arrival order.** The output partitions (whole batches each, see
   :func:`dask_cumbatch.graph.repartition`) are read one after the other: in order, or with
   ``shuffle="batches"`` in a random permutation.
2. **Shuffle buffer.** With ``shuffle="batches"`` the arriving batch ids pass through a buffer of
   ``shuffle_buffer`` slots: once full, each arrival evicts a uniformly chosen slot, which is
   emitted; at the end the rest is emitted in random order. The random numbers come from
   ``numpy.random.default_rng([seed, epoch])`` (PCG64, the same stream on every platform).
3. **Sharding.** Rank ``r`` of ``world_size`` ``W`` takes positions ``r, r + W, r + 2W, ...``
   of that stream. Every rank gets the same count: ``drop_last=True`` drops the last
   ``n % W`` batches of the stream (:attr:`BatchIterator.dropped`), ``drop_last=False``
   appends the first ``(-n) % W`` batches of the stream again (:attr:`BatchIterator.padded`).

Because all of this needs only the batch count of each output partition, which the plan pass
already computed, the whole schedule is known before any batch is read: each rank reads only
the partitions that hold its batches, keeps only its own batches, and holds at most
``shuffle_buffer`` of them (the buffer of step 2 restricted to one rank's batches), plus
``prefetch + 1`` partitions (the one being split and those computed ahead in background
threads) and ``READY_BATCHES`` converted batches waiting for the caller. The counters
:attr:`BatchIterator.max_buffered`, :attr:`BatchIterator.max_partitions` and
:attr:`BatchIterator.max_ready` record the peaks.

See docs/training.md for recipes.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import graph

FORMATS = ("pandas", "numpy", "arrow", "cupy", "torch")
SHUFFLES = (None, "batches")
DEFAULT_SHUFFLE_BUFFER = 256


def _int(name, value, lo):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a whole number >= {lo}, not {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return int(value)


def require_format(fmt: str) -> None:
    """Raise a clear ``ImportError`` when ``fmt`` needs a library that is not installed."""
    if fmt == "cupy":
        try:
            import cupy  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "format='cupy' needs CuPy and an NVIDIA GPU: pip install 'dask-cumbatch[gpu]' "
                "(or cupy-cuda12x); use format='numpy' on a machine without one"
            ) from err
    elif fmt == "torch":
        try:
            import torch  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "format='torch' needs PyTorch: pip install torch (dask-cumbatch does not depend "
                "on it); use format='numpy' to get NumPy arrays instead"
            ) from err


@dataclass(frozen=True)
class TrainingOptions:
    """The validated streaming options of :meth:`iter_batches` (checked before any work).

    >>> TrainingOptions.make(shuffle="batches", world_size=4, rank=3).shuffle_buffer
    256
    """

    prefetch: int = 1
    batches_per_partition: int | None = None
    shuffle: str | None = None
    seed: int = 0
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = False
    format: str = "pandas"

    @classmethod
    def make(cls, *, prefetch=1, batches_per_partition=None, shuffle=None, seed=None,
             shuffle_buffer=None, epoch=0, rank=0, world_size=1, drop_last=False,
             format="pandas") -> "TrainingOptions":
        """Validate; raises ``ValueError``/``TypeError``/``ImportError`` saying what to change."""
        prefetch = _int("prefetch", prefetch, 0)
        if batches_per_partition is not None:
            if isinstance(batches_per_partition, bool) or not isinstance(batches_per_partition, (int, np.integer)) \
                    or batches_per_partition < 1:
                raise ValueError(f"batches_per_partition must be an int >= 1, got {batches_per_partition!r}")
            batches_per_partition = int(batches_per_partition)
        if shuffle is True:
            shuffle = "batches"
        elif shuffle is False:
            shuffle = None
        if shuffle not in SHUFFLES:
            raise ValueError(f"shuffle={shuffle!r} is not one of None, 'batches'")
        seed = 0 if seed is None else _int("seed", seed, 0)
        if shuffle_buffer is None:
            shuffle_buffer = DEFAULT_SHUFFLE_BUFFER
        shuffle_buffer = _int("shuffle_buffer", shuffle_buffer, 1)
        epoch = _int("epoch", epoch, 0)
        world_size = _int("world_size", world_size, 1)
        rank = _int("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank must be in [0, world_size): got rank={rank}, world_size={world_size}")
        if not isinstance(drop_last, (bool, np.bool_)):
            raise TypeError(f"drop_last must be True or False, not {drop_last!r}")
        if format not in FORMATS:
            raise ValueError(f"format={format!r} is not one of {', '.join(map(repr, FORMATS))}")
        require_format(format)
        return cls(prefetch, batches_per_partition, shuffle, seed, shuffle_buffer, epoch, rank,
                   world_size, bool(drop_last), format)

    def with_(self, **changes) -> "TrainingOptions":
        """A validated copy with some fields changed."""
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d.update(changes)
        return TrainingOptions.make(**d)


# --------------------------------------------------------------------------------- schedule


def _buffer_emit_py(ids, k, draws, out):
    buf = ids[:k].copy()
    for t in range(draws.shape[0]):
        i = draws[t]
        out[t] = buf[i]
        buf[i] = ids[k + t]
    return buf


try:  # the loop is sequential; numba makes a million-batch schedule take milliseconds
    import numba

    _buffer_emit = numba.njit(cache=True, nogil=True)(_buffer_emit_py)
except ImportError:  # pragma: no cover - numba is a dependency
    _buffer_emit = _buffer_emit_py


def buffer_shuffle(ids: np.ndarray, buffer: int, rng: np.random.Generator) -> np.ndarray:
    """The order in which a streaming shuffle buffer of ``buffer`` slots emits ``ids``.

    The first ``buffer`` arrivals fill it; each later arrival evicts a uniformly drawn slot
    (emitted) and takes its place; at the end the slots left are emitted in random order.

    >>> buffer_shuffle(np.arange(5), 1, np.random.default_rng(0)).tolist()
    [0, 1, 2, 3, 4]
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    k = min(buffer, n)
    m = n - k
    draws = rng.integers(0, k, size=m) if m else np.zeros(0, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    if k == 0:
        return out
    buf = _buffer_emit(ids, k, draws.astype(np.int64), out)
    out[m:] = buf[rng.permutation(k)]
    return out


@dataclass
class Schedule:
    """Which batches a rank (and a DataLoader worker of it) yields, in which order.

    ``order`` is the global stream (every rank computes the same); ``regular`` are this
    worker's batches of the stream, ``pads`` the padding batches it yields after them (at
    most one), ``needed`` the output partitions it reads, in the order it reads them.
    """

    n_batches: int
    arrival: np.ndarray  # output partitions in reading order (all non-empty ones)
    order: np.ndarray  # the global stream of batch ids
    per_rank: int
    dropped_ids: np.ndarray
    padded: int
    regular: np.ndarray
    pads: np.ndarray
    needed: list

    @property
    def dropped(self) -> int:
        return len(self.dropped_ids)


def make_schedule(ranges, opts: TrainingOptions, worker: tuple[int, int] = (0, 1)) -> Schedule:
    """The full schedule from the output partitions' id ranges ``[(lo, hi), ...]`` alone.

    ``worker = (j, N)`` splits the rank's batches over N DataLoader workers by output
    partition (worker j reads the j-th, (j+N)-th, ... partition the rank needs), so each
    partition is read by one worker only; a worker yields its batches in the rank's order.

    >>> s = make_schedule([(0, 2), (3, 4)], TrainingOptions.make(world_size=2, rank=1))
    >>> s.regular.tolist(), s.pads.tolist(), s.padded
    ([1, 3], [0], 1)
    """
    j, n_workers = worker
    if not (0 <= j < n_workers):
        raise ValueError(f"worker index {j} not in [0, {n_workers})")
    nonempty = [k for k, (lo, hi) in enumerate(ranges) if hi >= lo]
    first = ranges[nonempty[0]][0] if nonempty else 0
    end = ranges[nonempty[-1]][1] + 1 if nonempty else 0
    n = end - first
    part_of = np.empty(n, dtype=np.int64)
    for k in nonempty:
        lo, hi = ranges[k]
        part_of[lo - first: hi + 1 - first] = k
    if opts.shuffle == "batches" and nonempty:
        rng = np.random.default_rng([opts.seed, opts.epoch])
        arrival = np.asarray(nonempty, dtype=np.int64)[rng.permutation(len(nonempty))]
        ids_in = np.concatenate([np.arange(ranges[k][0], ranges[k][1] + 1) for k in arrival])
        order = buffer_shuffle(ids_in, opts.shuffle_buffer, rng)
    else:
        arrival = np.asarray(nonempty, dtype=np.int64)
        order = np.arange(first, end, dtype=np.int64)
    W, r = opts.world_size, opts.rank
    if opts.drop_last:
        per = n // W
        stream = order[: per * W]
        dropped_ids = order[per * W:]
        padded = 0
    else:
        per = -(-n // W)
        stream = np.resize(order, per * W) if n else order
        dropped_ids = order[:0]
        padded = per * W - n
    positions = np.arange(r, per * W, W)
    mine = stream[positions]
    is_pad = positions >= n
    regular, pads = mine[~is_pad], mine[is_pad]
    # partitions this rank needs, in reading order; split over workers
    reading = np.empty(len(ranges), dtype=np.int64)
    reading[arrival] = np.arange(len(arrival))
    rank_parts = np.unique(part_of[mine - first]) if len(mine) else np.zeros(0, dtype=np.int64)
    rank_parts = rank_parts[np.argsort(reading[rank_parts], kind="stable")]
    needed = rank_parts[j::n_workers]
    if n_workers > 1:
        own = np.zeros(len(ranges), dtype=bool)
        own[needed] = True
        regular = regular[own[part_of[regular - first]]]
        pads = pads[own[part_of[pads - first]]]
    return Schedule(n, arrival, order, per, dropped_ids, padded, regular, pads, needed.tolist())


# --------------------------------------------------------------------------------- source


@dataclass
class BatchSource:
    """A repartitioned frame (whole batches per partition) and the id range of each partition.

    Built from the plan pass; picklable (DataLoader workers get a copy).
    """

    collection: object  # dask DataFrame: output partition k holds batch ids ranges[k]
    name: str
    ranges: list
    n_batches: int
    sync: bool = False  # compute with the synchronous scheduler (pandas input)
    _parts: list | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_plan(cls, prep, plan, batches_per_partition=None, sync=False) -> "BatchSource":
        collection = graph.repartition(prep, plan, batches_per_partition)
        ranges = graph.output_ranges(plan, batches_per_partition)
        if ranges and collection.npartitions != len(ranges):  # pragma: no cover - graph contract
            raise RuntimeError("repartition and output_ranges disagree on the partition count")
        return cls(collection, prep.opts.name, [tuple(map(int, r)) for r in ranges], int(plan.n_batches), sync)

    def delayed_parts(self) -> list:
        """The output partitions as Delayed objects (built once per process)."""
        if self._parts is None:
            self._parts = self.collection.to_delayed(optimize_graph=True)
        return self._parts

    def partition(self, k: int) -> pd.DataFrame:
        """Compute output partition ``k`` (with the default scheduler, or sync for pandas input)."""
        part = self.delayed_parts()[k]
        return part.compute(scheduler="sync") if self.sync else part.compute()

    def __getstate__(self):  # cloudpickle: the graph may hold local functions (spawned workers)
        import cloudpickle

        d = dict(self.__dict__)
        d["_parts"] = None
        d["collection"] = cloudpickle.dumps(self.collection)
        return d

    def __setstate__(self, state):
        import cloudpickle

        state = dict(state)
        state["collection"] = cloudpickle.loads(state["collection"])
        self.__dict__.update(state)


# --------------------------------------------------------------------------------- formats


def _numeric(arr) -> bool:
    return isinstance(arr, np.ndarray) and arr.dtype.kind in "biufc"


def to_numpy(frame: pd.DataFrame) -> dict:
    """``{column: numpy array}`` (the index is left out; ``reset_index()`` first to keep it)."""
    return {c: frame[c].to_numpy() for c in frame.columns}


class PandasFormat:
    """How batches of one format are made: a whole partition is converted once (in the
    prefetch thread), then each batch is a cheap slice of it; ``detach`` copies a batch
    that outlives its partition (in the shuffle buffer) so the partition can be freed."""

    def partition(self, frame):
        return frame

    def slice(self, part, a, b):
        return part.iloc[a:b]

    def detach(self, batch):
        out = batch.copy(deep=True)  # copies NumPy blocks; Arrow columns would still share
        for i in range(out.shape[1]):
            arr = out.iloc[:, i].array
            if hasattr(arr, "__arrow_array__"):  # Arrow-backed: take() compacts the buffers
                out.isetitem(i, arr.take(np.arange(len(arr))))
        return out


class NumpyFormat(PandasFormat):
    def partition(self, frame):
        return to_numpy(frame)

    def slice(self, part, a, b):
        return {c: v[a:b] for c, v in part.items()}

    def detach(self, batch):
        return {c: v.copy() for c, v in batch.items()}


class ArrowFormat(PandasFormat):
    def partition(self, frame):
        import pyarrow as pa

        return pa.Table.from_pandas(frame, preserve_index=False)

    def slice(self, part, a, b):
        return part.slice(a, b - a)

    def detach(self, batch):
        return batch.take(np.arange(batch.num_rows))


class CupyFormat(NumpyFormat):
    """Numeric columns go to the GPU once per partition; batches are device slices."""

    def partition(self, frame):
        import cupy

        return {c: cupy.asarray(v) if _numeric(v) else v for c, v in to_numpy(frame).items()}


class TorchFormat(NumpyFormat):
    """Numeric columns become CPU tensors that own their memory (one copy per batch)."""

    def slice(self, part, a, b):
        import torch

        out = {}
        for c, v in part.items():
            piece = v[a:b].copy()
            if _numeric(piece):
                try:
                    piece = torch.from_numpy(piece)
                except TypeError:  # a dtype this torch cannot hold: left as NumPy
                    pass
            out[c] = piece
        return out

    def detach(self, batch):
        return batch  # already owns its memory


FORMAT_TYPES = {"pandas": PandasFormat, "numpy": NumpyFormat, "arrow": ArrowFormat,
                "cupy": CupyFormat, "torch": TorchFormat}


def batch_bounds(ids: np.ndarray):
    """``(batch ids, start/stop bounds)`` of the runs of equal ids in a partition's id column."""
    if len(ids) == 0:
        return [], []
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [len(ids)]]).tolist()
    return ids[bounds[:-1]].tolist(), bounds


# --------------------------------------------------------------------------------- iterator


READY_BATCHES = 4  # converted batches the producer thread keeps ready for the caller


@dataclass
class IteratorStats:
    """Counters of one iterator (updated by its background threads, read by the caller)."""

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

    # ----------------------------------------------------------------- public attributes
    @property
    def wait_seconds(self) -> float:
        """Seconds the caller spent waiting inside ``next()`` for data.

        >>> import pandas as pd, dask_cumbatch
        >>> it = pd.DataFrame({"w": [1] * 4}).cumbatch.iter_batches("w", 2)
        >>> _ = list(it); it.wait_seconds >= 0
        True
        """
        return self.stats.wait_seconds

    @property
    def batches_yielded(self) -> int:
        """Batches handed out so far.

        >>> import pandas as pd, dask_cumbatch
        >>> it = pd.DataFrame({"w": [1] * 4}).cumbatch.iter_batches("w", 2)
        >>> _ = next(it); it.batches_yielded
        1
        """
        return self.stats.batches_yielded

    @property
    def max_buffered(self) -> int:
        """Peak batches held in the shuffle buffer (at most ``shuffle_buffer``).

        >>> import pandas as pd, dask_cumbatch
        >>> it = pd.DataFrame({"w": [1] * 40}).cumbatch.iter_batches(
        ...     "w", 2, shuffle="batches", seed=0, shuffle_buffer=3)
        >>> _ = list(it); 0 < it.max_buffered <= 3
        True
        """
        return self.stats.max_buffered

    @property
    def max_partitions(self) -> int:
        """Peak computed partitions held at once (at most ``prefetch + 1``).

        >>> import pandas as pd, dask_cumbatch
        >>> it = pd.DataFrame({"w": [1] * 4}).cumbatch.iter_batches("w", 2)
        >>> _ = list(it); it.max_partitions <= 2
        True
        """
        return self.stats.max_partitions

    @property
    def max_ready(self) -> int:
        """Peak converted batches waiting for the caller (at most 4).

        >>> import pandas as pd, dask_cumbatch
        >>> it = pd.DataFrame({"w": [1] * 4}).cumbatch.iter_batches("w", 2)
        >>> _ = list(it); it.max_ready <= 4
        True
        """
        return self.stats.max_ready

    @property
    def partitions_computed(self) -> int:
        """Partitions computed so far.

        >>> import pandas as pd, dask_cumbatch
        >>> it = pd.DataFrame({"w": [1] * 4}).cumbatch.iter_batches("w", 2)
        >>> _ = list(it); it.partitions_computed
        1
        """
        return self.stats.partitions_computed

    @property
    def n_batches(self) -> int:
        """Batches in the data (all ranks together, before dropping or padding).

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2).n_batches
        3
        """
        return self.schedule.n_batches

    @property
    def dropped(self) -> int:
        """Batches no rank yields (``drop_last=True``): the last ``n_batches % world_size``.

        >>> import pandas as pd, dask_cumbatch
        >>> it = pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2, world_size=2, drop_last=True)
        >>> it.dropped, it.dropped_ids.tolist()
        (1, [2])
        """
        return self.schedule.dropped

    @property
    def dropped_ids(self) -> np.ndarray:
        """Ids of the dropped batches (see :attr:`dropped`).

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches(
        ...     "w", 2, world_size=2, drop_last=True).dropped_ids.tolist()
        [2]
        """
        return self.schedule.dropped_ids

    @property
    def padded(self) -> int:
        """Padding batches in the stream (``drop_last=False``): repeats of its first ones.

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2, world_size=2).padded
        1
        """
        return self.schedule.padded

    @property
    def batches_per_rank(self) -> int:
        """What every rank yields (all its DataLoader workers together).

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2, world_size=2).batches_per_rank
        2
        """
        return self.schedule.per_rank

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
    """The iterator over a planned frame (used by ``iter_batches``)."""
    source = BatchSource.from_plan(prep, plan, options.batches_per_partition, sync=sync)
    return BatchIterator(source, options)
