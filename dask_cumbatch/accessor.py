"""The ``cumbatch`` accessors on pandas and Dask DataFrames and Series.

``import dask_cumbatch`` registers them. Every method validates its options before reading
any data, then runs the summary pass and the scan (one read of every partition, at call
time, as ``set_index`` computes its divisions), and returns a lazy result for Dask input
(computed for pandas input): the ids themselves are computed on ``.compute()``.
"""
from __future__ import annotations

import inspect

import dask.dataframe as dd
import numpy as np
import pandas as pd

from . import engine
from .dask import finish, prepared, repartition, summaries
from .options import OPTIONS, WEIGHTS_ACCEPTED, BatchOptions, keyword, parse_limit, takes_options, whole_number
from .result import BatchPlan, empty_batches


def _opts(weight, limit, kw) -> BatchOptions:
    return BatchOptions.make(weight, limit, **kw)


def _section(title: str, body: str) -> str:
    """A numpydoc section: its title, underlined, then ``body``.

    >>> print(_section("Raises", "KeyError"))
    Raises
    ------
    KeyError
    """
    return f"{title}\n{'-' * len(title)}\n{body}"


_WEIGHT_DOC = """weight : str, Series, array or list
    The weight column's name, a Series aligned with the frame (a Dask Series for a
    Dask frame), or for a pandas frame an array or list with one value per row."""
_LIMIT_DOC = """limit : int, float or str
    The batch limit: a number > 0, or a size such as ``"5MB"`` or ``"512KiB"``."""
_ERRORS_DOC = """TypeError
    An unknown keyword (with the closest one), a non-numeric weight, a weight of
    another kind than those above.
KeyError
    A weight or ``by`` column the frame does not have (with the closest name).
ValueError
    An option value out of range; a ``name`` the frame already has as a column or
    index level, where the ids become a column; invalid weights with ``invalid='raise'``
    (:class:`~dask_cumbatch.errors.WeightError`); a row over the limit with
    ``oversize='raise'`` (:class:`~dask_cumbatch.errors.OversizeError`)."""
# Docstring text the methods share (filled in by takes_options at the {name} lines): the
# Parameters section's head (weight and limit), the limit alone, the Raises section.
_SHARED_DOCS = {
    "parameters": _section("Parameters", f"{_WEIGHT_DOC}\n{_LIMIT_DOC}"),
    "limit": _LIMIT_DOC,
    "raises": _section("Raises", _ERRORS_DOC),
}

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
        if isinstance(weight, (np.ndarray, list)):
            return self._array_weight(weight)
        return weight

    def _array_weight(self, weight) -> pd.Series:
        """An array or list weight of a pandas frame, as pandas' ``assign`` takes it."""
        size = np.shape(weight)
        rows = len(self._obj)
        if not self._is_pandas or len(size) != 1 or size[0] != rows:
            got = f"{type(weight).__name__} of shape {size}" + (f" for {rows} rows" if self._is_pandas else "")
            raise TypeError(f"the weight must be {WEIGHTS_ACCEPTED}; got {got}")
        return pd.Series(weight, index=self._obj.index, name="weight")

    def _prepare(self, weight, limit, kw, adds_ids):
        weight = self._weight(weight)
        return prepared.prepare_frame(self._obj, weight, _opts(weight, limit, kw), adds_ids)

    def _plan(self, prep):
        if isinstance(prep.ddf, pd.DataFrame):
            return engine.plan_frame(prep.ddf, prep.ctx)
        return summaries.plan_partitions(prep)

    def _dask_prepare(self, weight, limit, kw):
        """For the methods that need Dask partitions (repartition, iteration, export)."""
        frame = self._frame()
        weight = self._weight(weight)
        if isinstance(weight, pd.Series):
            weight = dd.from_pandas(weight, npartitions=1, sort=False)
        opts = _opts(weight, limit, kw)
        return prepared.prepare_frame(frame, weight, opts)


def _export_parameters() -> list:
    """The keyword-only parameters of ``dask_cumbatch.export.to_files`` (format, overwrite, ...)."""
    try:
        from .export import to_files
    except ImportError:  # pragma: no cover - only while the package is half imported
        return []
    params = inspect.signature(to_files).parameters.values()
    return [p for p in params if p.kind is p.KEYWORD_ONLY]


class CumbatchDataFrameAccessor(_Batcher):
    """``df.cumbatch``: batch the rows of a frame by the cumulative sum of a weight column.

    Every method takes the weight and the limit, then the batching options as keyword-only
    parameters (``mode``, ``max_rows``, ``by``, ``cost``, ``oversize``, ``invalid``, ``name``,
    ``multiple``, ``sort_window``, ``device``), validated before any data is read. See
    docs/semantics.md for their exact meaning.

    On a Dask frame, ``ids``, ``assign``, ``repartition`` and ``iter_batches`` read every
    partition once when called, to plan the batches (the summary pass, as ``set_index`` reads
    the data to compute its divisions); what they return is lazy, computed on ``.compute()``.
    ``plan`` and ``to_files`` compute everything.

    >>> import pandas as pd, dask_cumbatch
    >>> df = pd.DataFrame({"w": [3, 3, 3, 3, 7]})
    >>> df.cumbatch.ids("w", 6).tolist()
    [0, 0, 1, 1, 2]
    """

    @takes_options(docs=_SHARED_DOCS)
    def ids(self, weight, limit, **options):
        """Batch ids: an int64 Series aligned with the frame (``Int64``, <NA> for skipped rows).

        On a Dask frame this reads every partition once now, to plan (the summary pass, as
        ``set_index`` computes its divisions); the ids are computed lazily on ``.compute()``,
        as a Series with the frame's divisions.

        {parameters}
        {batching_options}

        Returns
        -------
        pandas.Series or dask.dataframe.Series
            The batch id of every row, named ``name``: dense, starting at 0, never decreasing.

        {raises}

        Examples
        --------
        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1, 2, 3, 4]}).cumbatch.ids("w", 5, mode="fill").tolist()
        [0, 0, 0, 1]
        >>> import numpy as np
        >>> pd.DataFrame({"x": [0, 1, 2]}).cumbatch.ids(np.array([4, 4, 4]), 8).tolist()
        [0, 0, 1]
        """
        return self._ids(self._prepare(weight, limit, options, adds_ids=False))

    def _ids(self, prep):
        plan = self._plan(prep)
        if self._is_pandas:
            return engine.finish_ids(prep.ddf, prep.ctx, plan.entries[0])
        return finish.ids_series(prep, plan)

    @takes_options(docs=_SHARED_DOCS)
    def assign(self, weight, limit, **options):
        """The frame with the batch id column ``name`` (default "batch") added.

        On a Dask frame this reads every partition once now, to plan; the ids are computed
        lazily on ``.compute()``.

        {parameters}
        {batching_options}

        Returns
        -------
        pandas.DataFrame or dask.dataframe.DataFrame
            The frame with the id column (a column or index level of that name already in
            the frame raises ``ValueError``: pick another ``name``).

        {raises}

        Examples
        --------
        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [4, 4, 4]}).cumbatch.assign("w", 8)["batch"].tolist()
        [0, 0, 1]
        """
        ids = self._ids(self._prepare(weight, limit, options, adds_ids=True))
        return self._obj.assign(**{ids.name: ids})

    @takes_options(docs=_SHARED_DOCS)
    def plan(self, weight, limit, **options) -> BatchPlan:
        """Compute the batches: a :class:`~dask_cumbatch.result.BatchPlan` (one row per batch).

        Reads every partition twice (the summary pass, then the batch statistics); nothing
        is lazy.

        {parameters}
        {batching_options}

        Returns
        -------
        BatchPlan
            ``batches`` (batch, rows, total, max, start, stop), ``summary()``, ``plot()``.

        {raises}

        Examples
        --------
        >>> import pandas as pd, dask_cumbatch
        >>> print(pd.DataFrame({"w": [5, 5, 5]}).cumbatch.plan("w", 10))  # doctest: +ELLIPSIS
        BatchPlan: 2 batches, 3 rows (mode='greedy', limit=10, cost='sum')
        ...
        """
        prep = self._prepare(weight, limit, options, adds_ids=False)
        parts = self._plan(prep)
        if self._is_pandas:
            stats = engine.finish_stats(prep.ddf, prep.ctx, parts.entries[0])
        else:
            stats = finish.plan_stats(prep, parts)
        if not len(stats):
            stats = empty_batches()
        return BatchPlan(stats, prep.opts, skipped=parts.skipped, partitions=len(parts.entries))

    @takes_options(docs=_SHARED_DOCS)
    def repartition(self, weight, limit, batches_per_partition=None, index=False, *,
                    partition_size=None, **options):
        """A Dask frame whose partitions hold whole batches, rows in order, with the id column.

        No shuffle. By default output partition k holds the batches that *start* in input
        partition k, so the partition count and sizes stay those of the input (a batch that
        continues into the next input partitions is moved whole into the partition where it
        starts). ``batches_per_partition=n`` puts n consecutive batches in each partition
        instead, and ``partition_size="5MB"`` groups consecutive whole batches into partitions
        of about that size, as ``ddf.repartition(partition_size=)`` does.

        Reads every partition once now, to plan (twice with ``partition_size``, which also
        measures the batches' sizes); the output partitions are computed lazily.

        {parameters}
        batches_per_partition : int, optional
            Consecutive batches per output partition (the last may hold fewer).
        index : bool, default False
            Make the batch id the index, with known divisions, so ``.loc[batch]`` reads one
            partition. Skipped rows are dropped either way.
        partition_size : int or str, optional
            Target in-memory size of an output partition, in bytes of ``memory_usage(deep=True)``
            (a number, or a size such as ``"5MB"``). A partition closes before the batch that
            would take it over the target; a batch larger than the target stands alone. Row
            sizes are estimated per input partition (its size over its rows), as Dask does.
        {batching_options}

        Returns
        -------
        dask.dataframe.DataFrame
            (a pandas DataFrame for pandas input) with the id column ``name``.

        {raises}

        Examples
        --------
        >>> import pandas as pd, dask.dataframe as dd, dask_cumbatch
        >>> ddf = dd.from_pandas(pd.DataFrame({"w": [3] * 8}), npartitions=3)
        >>> out = ddf.cumbatch.repartition("w", 6)
        >>> out.map_partitions(len).compute().tolist()
        [4, 2, 2]
        >>> ddf.cumbatch.repartition("w", 6, partition_size=300).npartitions
        2
        """
        if batches_per_partition is not None:
            batches_per_partition = whole_number("batches_per_partition", batches_per_partition)
        if partition_size is not None and batches_per_partition is not None:
            raise ValueError(f"pass {keyword('batches_per_partition')} or {keyword('partition_size')}, not both")
        target = None if partition_size is None else parse_limit(partition_size)
        prep = self._dask_prepare(weight, limit, options)
        plan = summaries.plan_partitions(prep)
        if target is None:
            out = repartition.repartition(prep, plan, batches_per_partition, index=index)
        else:
            ranges = repartition.size_ranges(repartition.batch_bytes(prep, plan), target)
            out = repartition.repartition_ranges(prep, plan, ranges, index=index)
        return out.compute(scheduler="sync") if self._is_pandas else out

    @takes_options(docs=_SHARED_DOCS)
    def iter_batches(self, weight, limit, prefetch=1, batches_per_partition=None, *, shuffle=None,
                     seed=None, shuffle_buffer=None, epoch=0, rank=0, world_size=1, drop_last=False,
                     format="pandas", **options):
        """Iterate ``(batch_id, batch)``: in order by default, like iterating a groupby.

        Creating the iterator reads every partition once, to plan; the batches are then
        computed as they are iterated. At most ``prefetch + 1`` output partitions are in
        memory; the next are computed in a background thread while the caller works. See
        docs/training.md.

        {parameters}
        prefetch : int, default 1
            Output partitions computed ahead in background threads (0: no threads).
        batches_per_partition : int, optional
            Batches per output partition (default: the batches that start in each input
            partition).
        shuffle : {None, 'batches'}, default None
            ``'batches'``: read the partitions in a random order and pass the batches through a
            buffer of ``shuffle_buffer`` whole batches, drawing from
            ``numpy.random.default_rng([seed, epoch])``: the same order on every run and
            machine for the same ``seed`` and ``epoch``.
        seed : int, optional
            Seed of the shuffle (default 0).
        shuffle_buffer : int, optional
            Batches in the shuffle buffer (default 256).
        epoch : int, default 0
            Epoch whose order to use (see ``for_epoch``).
        rank, world_size : int, default 0 and 1
            Rank r yields positions r, r+W, ... of the (shuffled) stream; every rank yields the
            same count.
        drop_last : bool, default False
            Drop the remainder (counted in ``it.dropped``) instead of padding with the stream's
            first batches (``it.padded``).
        format : {'pandas', 'numpy', 'arrow', 'cupy', 'torch'}, default 'pandas'
            A DataFrame, a dict of column arrays (NumPy, CuPy, torch) or a ``pyarrow.Table``.
        {batching_options}

        Returns
        -------
        BatchIterator
            With ``wait_seconds``, ``batches_yielded``, ``len()``, ``for_epoch(e)`` (a new
            epoch without a new plan pass).

        {raises}
        ImportError
            ``format='cupy'`` or ``'torch'`` without the library.

        Examples
        --------
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
        return training.make_iterator(prep, summaries.plan_partitions(prep), topts, sync=self._is_pandas)

    @takes_options(extra=_export_parameters(), docs=_SHARED_DOCS)
    def to_files(self, path, weight, limit, **kw):
        """Write one file per batch (or ``batches_per_file``) under ``path``; see docs/export.md.

        Computes everything: one read of the data to plan, one to write. Re-running after a
        crash finishes the job.

        Parameters
        ----------
        path : str
            The output folder (local or fsspec URL).
        weight : str
            The weight column's name.
        {limit}
        format, batches_per_file, resume, max_skips, progress, append, overwrite, verify, ...
            The export's own settings: see :func:`dask_cumbatch.export.to_files`.
        {batching_options}

        Returns
        -------
        ExportResult
            ``batches``, ``rows``, ``files``, ... of the folder.

        Raises
        ------
        dask_cumbatch.export.ExportError
            The folder holds another export (pass ``overwrite=True``), or another problem with
            the folder; and the errors of :meth:`ids`.

        Examples
        --------
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

    @takes_options(docs=_SHARED_DOCS)
    def ids(self, limit, **options):
        """Batch ids of the Series' own values taken as weights (see ``DataFrame.cumbatch.ids``).

        On a Dask Series this reads every partition once now, to plan; the ids are computed
        lazily on ``.compute()``.

        Parameters
        ----------
        {limit}
        {batching_options}

        Returns
        -------
        pandas.Series or dask.dataframe.Series
            The batch id of every value.

        Raises
        ------
        TypeError, ValueError
            As :meth:`CumbatchDataFrameAccessor.ids`.

        Examples
        --------
        >>> import pandas as pd, dask_cumbatch
        >>> pd.Series([1, 2, 3, 4]).cumbatch.ids(5, mode="fill").tolist()
        [0, 0, 0, 1]
        """
        s = self._obj
        name = s.name if s.name is not None else "weight"
        _check_series_keys(name, options.get("by"))
        frame = s.to_frame(name=name)
        result = CumbatchDataFrameAccessor(frame).ids(name, limit, **options)
        return result


def _check_series_keys(name, by) -> None:
    """A Series has no key columns: refuse ``by=`` naming one, saying how to batch with it.

    >>> _check_series_keys("tokens", "user")
    Traceback (most recent call last):
    KeyError: "by='user' names a column, and a Series has none: put the weights and the key in a DataFrame and batch that: df.cumbatch.ids('tokens', limit, by='user')"
    """
    keys = OPTIONS["by"].check(by)
    if any(pd.api.types.is_hashable(key) and key != name for key in keys):
        what = "a column" if len(keys) == 1 else "columns"
        raise KeyError(f"{keyword('by', by)} names {what}, and a Series has none: put the weights and the key "
                       f"in a DataFrame and batch that: df.cumbatch.ids({name!r}, limit, {keyword('by', by)})")


def register() -> None:
    """Register the accessors on pandas and Dask (done on ``import dask_cumbatch``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # re-registration on reload
        pd.api.extensions.register_dataframe_accessor("cumbatch")(CumbatchDataFrameAccessor)
        pd.api.extensions.register_series_accessor("cumbatch")(CumbatchSeriesAccessor)
        dd.extensions.register_dataframe_accessor("cumbatch")(CumbatchDataFrameAccessor)
        dd.extensions.register_series_accessor("cumbatch")(CumbatchSeriesAccessor)
