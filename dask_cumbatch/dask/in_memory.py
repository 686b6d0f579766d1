"""The fast path of the summary pass for a frame read straight from one pandas frame.

A ``from_pandas`` frame batched without keys is summarised from slices of its one weight
column (:func:`in_memory_column`, :func:`gather_column`) instead of one pandas frame per
partition.
"""
from __future__ import annotations

import uuid

import dask.dataframe as dd
import numpy as np
import pandas as pd

from ..dask_compat import Task, pandas_slices
from ..engine import summarize_weights
from ..options import BatchOptions
from .gather import compute_fat
from .prepared import Prepared
from .scheduler import active_client


GIL_BOUND_ROWS = 1 << 16  # in-memory partitions smaller on average are summarised in one thread


def in_memory_column(frame: dd.DataFrame, opts: BatchOptions):
    """``(values, index, bounds)`` where ``frame`` is read straight from one pandas frame
    (``from_pandas``) and batched without keys: its weight column's float64 or int64 values, its
    index, and each partition's ``(start, stop)`` rows there, in order; else None.

    The summary pass then slices one NumPy column (:func:`gather_column`) instead of making a
    pandas frame per partition (a cost that grows with the partition count,
    docs/performance.md). The finish still reads its partitions through Dask and checks each
    against its summary.

    >>> ddf = dd.from_pandas(pd.DataFrame({"w": [1.0, 2.0, 3.0]}), npartitions=2)
    >>> in_memory_column(ddf, BatchOptions.make("w", 5))[2]
    [(0, 2), (2, 3)]
    """
    sliced = None if opts.by else pandas_slices(frame)
    if sliced is None:
        return None
    data, bounds = sliced  # sorted by the index as the partitions are
    if not isinstance(data, pd.DataFrame) or list(data.columns).count(opts.weight) != 1:
        return None
    col = data[opts.weight]
    if not (isinstance(col.dtype, np.dtype) and col.dtype.kind in "fi" and col.dtype.itemsize == 8):
        return None
    contiguous = all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    if len(bounds) != frame.npartitions or not contiguous:
        return None
    return col.to_numpy(), data.index, bounds


def _summarize_slices(values, index, bounds, spec):
    return [summarize_weights(values[a:b], index[a:b], spec.ctx) for a, b in bounds]


def gather_column(column, spec: Prepared) -> list:
    """The summaries of :func:`in_memory_column`'s partitions, in at most ``FAT_TASKS`` tasks
    each holding its stretch of the column.

    Partitions of fewer than ``GIL_BOUND_ROWS`` rows on average are summarised by Dask's
    synchronous scheduler unless a ``distributed`` client is active: their summaries are a few
    microseconds of kernels between Python and NumPy calls, and two threads taking the GIL in
    turns ran them at half the speed of one (docs/performance.md, docs/_perf_table.md).
    """
    values, index, bounds = column
    local = active_client() is None
    scheduler = "sync" if local and len(values) < GIL_BOUND_ROWS * max(len(bounds), 1) else None

    def task_for(key, part):
        lo, hi = bounds[part.start][0], bounds[part.stop - 1][1]
        return Task(key, _summarize_slices, values[lo:hi], index[lo:hi],
                    [(a - lo, b - lo) for a, b in bounds[part]], spec)

    return compute_fat(f"cumbatch-summarize-{uuid.uuid4().hex}", len(bounds), {}, task_for, scheduler)
