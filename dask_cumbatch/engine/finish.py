"""The partition-wise finish (docs/design.md, "Step 3: finish"): final ids, frames and per-batch stats.

Each finish reads its partition again, checks it against what the summary pass saw (row
count and exact weight total: :class:`~dask_cumbatch.errors.InputChangedError`
otherwise) and lets the mode compute the ids from the partition's entry state.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .backends import backend_of, host_backend
from .backends.results import BatchStats
from .context import BatchContext
from .modes import mode_for
from .partition import host_columns, is_cudf, like_partition, prepare
from .scan import checked_total
from .state import Entry, input_changed


def batch_ids(df, ctx: BatchContext, entry: Entry):
    """Final batch ids of a partition's batched rows from its true entry state, and its arrays.

    >>> from dask_cumbatch.engine.scan import plan_frame
    >>> from dask_cumbatch.options import BatchOptions
    >>> df, ctx = pd.DataFrame({"w": [3, 3, 3]}), BatchContext(BatchOptions.make("w", 6), False)
    >>> batch_ids(df, ctx, plan_frame(df, ctx).entries[0])[0].tolist()
    [0, 0, 1]
    """
    return _batch_ids(df, ctx.for_rows(len(df)), entry)


def _batch_ids(df, ctx, entry: Entry):
    arrays = prepare(df, ctx.opts, checked=True, backend=ctx.backend)
    check_unchanged(arrays, entry)
    return mode_for(ctx.opts).finish(arrays, entry, ctx), arrays


def check_unchanged(arrays, entry: Entry) -> None:
    """Raise :class:`~dask_cumbatch.errors.InputChangedError` unless the partition matches its summary.

    A ``"running"`` total (see :class:`~dask_cumbatch.engine.state.Summary`) is left to the
    mode's finish, which forms it anyway; the row count is checked here all the same.

    >>> from dask_cumbatch.engine.state import Carry
    >>> from dask_cumbatch.options import BatchOptions
    >>> arrays = prepare(pd.DataFrame({"w": [1, 2]}), BatchOptions.make("w", 5))
    >>> check_unchanged(arrays, Entry(Carry(), n_all=2, total=4, partition=3))
    Traceback (most recent call last):
    dask_cumbatch.errors.InputChangedError: partition 3 changed between the summary and the finish pass: 2 rows / total 3 where the summary saw 2 rows / total 4; the input changed while it was being batched
    """
    if entry.n_all is None:
        return
    summed = entry.total is not None and entry.total_kind in ("sum", "bits")
    total = checked_total(arrays, entry.total_kind) if summed else None
    if arrays.n_all != entry.n_all or (summed and total != entry.total):
        raise input_changed(entry, arrays.n_all, total)


def finish_ids(df, ctx: BatchContext, entry: Entry) -> pd.Series:
    """Step 3: the final batch ids of a partition (``Int64`` with <NA> for skipped rows).

    >>> from dask_cumbatch.engine.scan import plan_frame
    >>> from dask_cumbatch.options import BatchOptions
    >>> df = pd.DataFrame({"w": [3.0, None, 3.0]})
    >>> ctx = BatchContext(BatchOptions.make("w", 6, invalid="skip"), True)
    >>> finish_ids(df, ctx, plan_frame(df, ctx).entries[0]).tolist()
    [0, <NA>, 0]
    """
    opts = ctx.opts
    if is_cudf(df):  # a dask-cudf partition gets a cuDF id column; only weight/keys were read
        return like_partition(finish_ids(host_columns(df, opts), ctx, entry), df)
    ids, prep = batch_ids(df, ctx, entry)
    if opts.invalid == "skip":
        values = np.zeros(prep.n_all, dtype=np.int64)
        values[prep.positions()] = ids
        mask = np.ones(prep.n_all, dtype=bool)
        mask[prep.positions()] = False
        return pd.Series(pd.arrays.IntegerArray(values, mask), index=df.index, name=opts.name)
    if prep.keep is not None:
        out = np.empty(prep.n_all, dtype=np.int64)
        out[prep.keep] = ids
        ids = out
    return pd.Series(ids, index=df.index, name=opts.name, copy=False)


def finish_frame(df, ctx: BatchContext, entry: Entry, weight_column=None) -> pd.DataFrame:
    """The partition's batched rows in batching order with the id column (skipped rows dropped).

    >>> from dask_cumbatch.engine.scan import plan_frame
    >>> from dask_cumbatch.options import BatchOptions
    >>> df, ctx = pd.DataFrame({"w": [3, 3, 3]}), BatchContext(BatchOptions.make("w", 6), False)
    >>> finish_frame(df, ctx, plan_frame(df, ctx).entries[0])["batch"].tolist()
    [0, 0, 1]
    """
    ids, prep = batch_ids(df, ctx, entry)
    out = df if prep.keep is None else df.iloc[prep.keep]
    if weight_column is not None:
        out = out.drop(columns=[weight_column])
    return out.assign(**{ctx.opts.name: ids})


def finish_stats(df, ctx: BatchContext, entry: Entry) -> pd.DataFrame:
    """Per-batch rows/total/max/start/stop of a partition's rows (combined across partitions later).

    >>> from dask_cumbatch.engine.scan import plan_frame
    >>> from dask_cumbatch.options import BatchOptions
    >>> df, ctx = pd.DataFrame({"w": [3, 3, 3]}), BatchContext(BatchOptions.make("w", 6), False)
    >>> finish_stats(df, ctx, plan_frame(df, ctx).entries[0])["total"].tolist()
    [6, 3]
    """
    ctx = ctx.for_rows(len(df))  # once: the ids and the stats run on the same backend
    ids, prep = _batch_ids(df, ctx, entry)
    stats = batch_stats(ids, prep.w, prep.positions() + entry.all_offset, ctx.backend)
    return pd.DataFrame({"batch": stats.batch, "rows": stats.rows, "total": stats.total, "max": stats.max,
                         "start": stats.first, "stop": stats.last + 1})


def batch_stats(ids, w, positions, backend=None) -> BatchStats:
    """Per-batch ``BatchStats(batch, rows, total, max, first, last)`` host arrays for sorted ``ids``.

    ``first``/``last`` are the lowest and highest of ``positions`` in each batch; the
    backend's ``batch_stats`` kernel does the work (None: the host's, :func:`host_backend`:
    no options name a device here).

    >>> stats = batch_stats(np.array([0, 0, 1]), np.array([2, 3, 4]), np.arange(3))
    >>> stats.total.tolist(), stats.last.tolist()
    ([5, 4], [1, 2])
    """
    be = backend_of(backend) if backend is not None else host_backend(len(ids))
    arrays = be.batch_stats(be.asarray(ids), be.asarray(w), be.asarray(positions))
    return BatchStats._make(be.to_numpy(a) for a in arrays)
