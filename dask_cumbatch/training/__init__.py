"""Feeding training jobs: shuffled, sharded, prefetched streams of whole batches.

``ddf.cumbatch.iter_batches(weight, limit, ...)`` returns a :class:`BatchIterator`. Its order
is a pure function of the *plan* (batch ids and which output partition holds each), never of
the data's values or of timing, so it is the same on every run, every scheduler and every
machine that sees the same input partitioning:

1. **Arrival order.** The output partitions (whole batches each, see
   :func:`dask_cumbatch.dask.repartition.repartition`) are read one after the other: in order, or with
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

from .formats import FORMAT_TYPES, batch_bounds, require_format, to_numpy
from .iterator import READY_BATCHES, BatchIterator, IteratorStats, make_iterator
from .options import DEFAULT_SHUFFLE_BUFFER, FORMATS, SHUFFLES, TrainingOptions
from .schedule import Schedule, buffer_shuffle, make_schedule
from .source import BatchSource

__all__ = [
    "DEFAULT_SHUFFLE_BUFFER", "FORMATS", "FORMAT_TYPES", "READY_BATCHES", "SHUFFLES", "BatchIterator",
    "BatchSource", "IteratorStats", "Schedule", "TrainingOptions", "batch_bounds", "buffer_shuffle",
    "make_iterator", "make_schedule", "require_format", "to_numpy",
]
