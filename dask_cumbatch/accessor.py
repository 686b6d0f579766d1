"""The ``cumbatch`` accessors on pandas and Dask DataFrames and Series.

``import dask_cumbatch`` registers them. Every method validates its options before reading
any data, then runs the summary pass and the scan (one pass over the data), and returns a
lazy result for Dask input (computed for pandas input).
"""
from __future__ import annotations

import dask.dataframe as dd
import pandas as pd

from . import engine, graph
from .options import BatchOptions
from .result import BatchPlan, empty_batches


def _opts(weight, limit, kw) -> BatchOptions:
    return BatchOptions.make(weight, limit, **kw)


class _Batcher:
    """Shared implementation: works on a Dask frame; pandas input is one partition."""

    def __init__(self, obj):
        self._obj = obj

    @property
    def _is_pandas(self) -> bool:
        return isinstance(self._obj, (pd.DataFrame, pd.Series))

    def _frame(self):
        obj = self._obj
        if isinstance(obj, pd.DataFrame):
            return dd.from_pandas(obj, npartitions=1, sort=False)
        return obj

    def _weight(self, weight):
        if isinstance(weight, pd.Series) and not self._is_pandas:
            raise TypeError("pass a Dask Series (or a column name) as the weight of a Dask frame")
        return weight

    def _prepare(self, weight, limit, kw):
        return graph.prepare_frame(self._obj, self._weight(weight), _opts(weight, limit, kw))

    def _plan(self, prep):
        if isinstance(prep.ddf, pd.DataFrame):
            return engine.plan_frame(prep.ddf, prep.opts, prep.is_float)
        return graph.plan_partitions(prep)

    def _dask_prepare(self, weight, limit, kw):
        """For the methods that need Dask partitions (repartition, iteration, export)."""
        frame = self._frame()
        if isinstance(weight, pd.Series):
            weight = dd.from_pandas(weight, npartitions=1, sort=False)
        opts = _opts(weight, limit, kw)
        return graph.prepare_frame(frame, weight, opts)


class CumbatchDataFrameAccessor(_Batcher):
    """``df.cumbatch``: batch the rows of a frame by the cumulative sum of a weight column.

    Options shared by every method (validated before any data is read): ``mode`` ("greedy",
    "fill" or "floor"), ``max_rows``, ``by`` (column name or list; a key change starts a
    batch), ``cost`` ("sum" or "padded": max weight times rows), ``oversize`` ("allow" or
    "raise"), ``invalid`` ("raise" or "skip"), ``name`` (the id column, "batch"),
    ``multiple`` (greedy: row counts a multiple of m), ``sort_window`` (sort rows by weight
    inside windows of that many rows first). See docs/semantics.md.

    >>> import pandas as pd, dask_cumbatch
    >>> df = pd.DataFrame({"w": [3, 3, 3, 3, 7]})
    >>> df.cumbatch.ids("w", 6).tolist()
    [0, 0, 1, 1, 2]
    """

    def ids(self, weight, limit, **options):
        """Batch ids: an int64 Series aligned with the frame (``Int64``, <NA> for skipped rows).

        ``weight`` is a column name or a Series aligned with the frame. Dask input gives a lazy
        Series with the same divisions (the summary pass runs now, like ``set_index``).

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1, 2, 3, 4]}).cumbatch.ids("w", 5, mode="fill").tolist()
        [0, 0, 0, 1]
        """
        prep = self._prepare(weight, limit, options)
        plan = self._plan(prep)
        if self._is_pandas:
            return engine.finish_ids(prep.ddf, prep.opts, prep.is_float, plan.entries[0])
        return graph.ids_series(prep, plan)

    def assign(self, weight, limit, **options):
        """The frame with the batch id column ``name`` (default "batch") added.

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [4, 4, 4]}).cumbatch.assign("w", 8)["batch"].tolist()
        [0, 0, 1]
        """
        ids = self.ids(weight, limit, **options)
        return self._obj.assign(**{ids.name: ids})

    def plan(self, weight, limit, **options) -> BatchPlan:
        """Compute the batches: a :class:`~dask_cumbatch.result.BatchPlan` (one row per batch).

        >>> import pandas as pd, dask_cumbatch
        >>> print(pd.DataFrame({"w": [5, 5, 5]}).cumbatch.plan("w", 10))  # doctest: +ELLIPSIS
        BatchPlan: 2 batches, 3 rows (mode='greedy', limit=10, cost='sum')
        ...
        """
        prep = self._prepare(weight, limit, options)
        parts = self._plan(prep)
        if self._is_pandas:
            stats = engine.finish_stats(prep.ddf, prep.opts, prep.is_float, parts.entries[0])
        else:
            stats = graph.plan_stats(prep, parts)
        if not len(stats):
            stats = empty_batches()
        return BatchPlan(stats, prep.opts, skipped=parts.skipped, partitions=len(parts.entries))

    def repartition(self, weight, limit, batches_per_partition=None, index=False, **options):
        """A Dask frame whose partitions hold whole batches, rows in order, with the id column.

        No shuffle: output partition k holds the batches that start in input partition k (or
        ``batches_per_partition`` batches each). ``index=True`` makes the batch id the index
        with known divisions, so ``.loc[batch]`` reads one partition. Skipped rows are dropped.

        >>> import pandas as pd, dask.dataframe as dd, dask_cumbatch
        >>> ddf = dd.from_pandas(pd.DataFrame({"w": [3] * 8}), npartitions=3)
        >>> out = ddf.cumbatch.repartition("w", 6)
        >>> out.map_partitions(len).compute().tolist()
        [4, 2, 2]
        """
        if batches_per_partition is not None:
            if not isinstance(batches_per_partition, int) or batches_per_partition < 1:
                raise ValueError(f"batches_per_partition must be an int >= 1, got {batches_per_partition!r}")
        prep = self._dask_prepare(weight, limit, options)
        out = graph.repartition(prep, graph.plan_partitions(prep), batches_per_partition, index=index)
        return out.compute(scheduler="sync") if self._is_pandas else out

    def iter_batches(self, weight, limit, prefetch=1, batches_per_partition=None, *, shuffle=None,
                     seed=None, shuffle_buffer=None, epoch=0, rank=0, world_size=1, drop_last=False,
                     format="pandas", **options):
        """Iterate ``(batch_id, batch)``: in order by default, like iterating a groupby.

        At most ``prefetch + 1`` output partitions are in memory; the next are computed in a
        background thread while the caller works. For training (docs/training.md):

        - ``shuffle="batches"``: read the partitions in a random order and pass the batches
          through a buffer of ``shuffle_buffer`` whole batches (default 256), drawing from
          ``numpy.random.default_rng([seed, epoch])``: the same order on every run and
          machine for the same ``seed`` and ``epoch``, another order for another epoch.
        - ``rank``/``world_size``: rank r yields positions r, r+W, ... of the shuffled stream;
          all ranks yield the same count, the remainder dropped (``drop_last=True``, counted
          in ``it.dropped``) or padded with the stream's first batches (``it.padded``).
        - ``format``: ``"pandas"`` (DataFrame), ``"numpy"``/``"cupy"``/``"torch"`` (dict of
          column arrays), ``"arrow"`` (``pyarrow.Table``).

        The plan pass runs now (one read of the data); the result is a
        :class:`~dask_cumbatch.training.BatchIterator` with ``wait_seconds``,
        ``batches_yielded`` and ``for_epoch(e)`` (a new epoch without a new plan pass).

        >>> import pandas as pd, dask_cumbatch
        >>> [(b, len(f)) for b, f in pd.DataFrame({"w": [2, 2, 2]}).cumbatch.iter_batches("w", 4)]
        [(0, 2), (1, 1)]
        >>> it = pd.DataFrame({"w": [1] * 10}).cumbatch.iter_batches("w", 2, rank=1, world_size=2)
        >>> [b for b, _ in it], it.padded
        ([1, 3, 0], 1)
        """
        from . import training  # imported on use: it loads numba

        topts = training.TrainingOptions.make(
            prefetch=prefetch, batches_per_partition=batches_per_partition, shuffle=shuffle,
            seed=seed, shuffle_buffer=shuffle_buffer, epoch=epoch, rank=rank,
            world_size=world_size, drop_last=drop_last, format=format,
        )
        prep = self._dask_prepare(weight, limit, options)
        return training.make_iterator(prep, graph.plan_partitions(prep), topts, sync=self._is_pandas)

    def to_files(self, path, weight, limit, **kw):
        """Write one file per batch (or ``batches_per_file``) under ``path``; see docs/export.md.

        Returns an :class:`~dask_cumbatch.export.ExportResult`; re-running after a crash
        finishes the job.

        >>> import pandas as pd, dask_cumbatch, tempfile
        >>> out = tempfile.mkdtemp() + "/batches"
        >>> pd.DataFrame({"w": [3, 3, 3]}).cumbatch.to_files(out, "w", 6, progress=False).batches
        2
        """
        from .export import to_files

        return to_files(self._frame(), path, weight, limit, **kw)


class CumbatchSeriesAccessor:
    """``series.cumbatch``: the Series is the weight.

    >>> import pandas as pd, dask_cumbatch
    >>> pd.Series([3, 3, 3]).cumbatch.ids(6).tolist()
    [0, 0, 1]
    """

    def __init__(self, obj):
        self._obj = obj

    def ids(self, limit, **options):
        """Batch ids of the Series' own values taken as weights (see ``DataFrame.cumbatch.ids``).

        >>> import pandas as pd, dask_cumbatch
        >>> pd.Series([1, 2, 3, 4]).cumbatch.ids(5, mode="fill").tolist()
        [0, 0, 0, 1]
        """
        s = self._obj
        name = s.name if s.name is not None else "weight"
        frame = s.to_frame(name=name)
        result = CumbatchDataFrameAccessor(frame).ids(name, limit, **options)
        return result


def register() -> None:
    """Register the accessors on pandas and Dask (done on ``import dask_cumbatch``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # re-registration on reload
        pd.api.extensions.register_dataframe_accessor("cumbatch")(CumbatchDataFrameAccessor)
        pd.api.extensions.register_series_accessor("cumbatch")(CumbatchSeriesAccessor)
        dd.extensions.register_dataframe_accessor("cumbatch")(CumbatchDataFrameAccessor)
        dd.extensions.register_series_accessor("cumbatch")(CumbatchSeriesAccessor)
