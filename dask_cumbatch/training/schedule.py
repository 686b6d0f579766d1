"""The schedule of a batch stream: arrival order, shuffle buffer, sharding over ranks and workers.

Everything here is a pure function of the output partitions' id ranges and the options.

>>> make_schedule([(0, 1), (2, 3)], TrainingOptions.make()).order.tolist()
[0, 1, 2, 3]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .options import TrainingOptions


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

    >>> make_schedule([(0, 2)], TrainingOptions.make(world_size=2, drop_last=True)).dropped
    1
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
        """How many batches no rank yields (``drop_last=True``).

        >>> make_schedule([(0, 2)], TrainingOptions.make(world_size=2, drop_last=True)).dropped
        1
        """
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
