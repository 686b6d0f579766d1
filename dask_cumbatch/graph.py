"""Dask graph building: the summary pass, the scan, and the finish as narrow Dask tasks.

Every public operation is three steps (DESIGN.md "The parallel algorithm"):

1. :func:`plan_partitions` maps :func:`~dask_cumbatch.engine.summarize` over the partitions and
   gathers the small summaries into one place (one ``dask.compute``), where
   :func:`~dask_cumbatch.engine.scan` carries the state through them. The graph is flat: one
   task per partition plus the gather, whatever the partition count.
2. The finish (:func:`batch_frame`, :func:`ids_series`) is one task per partition that reads its
   partition again (from the source: nothing is persisted) and its small :class:`Entry`.
3. :func:`repartition` aligns partitions to batch boundaries from the entries alone: output
   partition k depends only on input k and the following partitions its last batch reaches.
"""
from __future__ import annotations


import sys
import uuid
from collections import Counter

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask import delayed
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from .dask_compat import Task, TaskRef, is_task_graph, pandas_slices, renumbered, source_partitions, unwrap_map
from .dask_compat import without_string_conversion
from .engine import (
    Carry,
    PartitionPlan,
    backend_for,
    extra_summary,
    finish_frame,
    finish_ids,
    finish_stats,
    head_bytes_for,
    needs_extra_pass,
    scan,
    scan_extra,
    summarize,
    summarize_weights,
)
from .options import BatchOptions, weight_kind

WEIGHT_COLUMN = "__cumbatch_weight__"


FAT_TASKS = 512  # the summary pass collects the summaries in at most about this many tasks
GIL_BOUND_ROWS = 1 << 16  # in-memory partitions smaller on average are summarised in one thread


class Prepared:
    """A Dask frame ready for batching: the weight is a column, options resolved.

    A plain class (not a dataclass) so Dask passes it to tasks as-is, without traversing it.
    """

    __slots__ = ("ddf", "opts", "is_float", "temp_weight")

    def __init__(self, ddf, opts, is_float, temp_weight):
        self.ddf = ddf
        self.opts = opts
        self.is_float = is_float
        self.temp_weight = temp_weight  # the temporary weight column to drop from outputs

    def __getstate__(self):
        return {"ddf": None, "opts": self.opts, "is_float": self.is_float, "temp_weight": self.temp_weight}

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)


class EntryTable:
    """The scan's per-partition entries, shipped to the finish tasks as one shared key."""

    __slots__ = ("entries",)

    def __init__(self, entries):
        self.entries = entries

    def __getstate__(self):
        return self.entries

    def __setstate__(self, entries):
        self.entries = entries


def prepare_frame(ddf, weight, opts: BatchOptions, adds_ids: bool = True) -> Prepared:
    """Validate the options against the frame's schema (no data is read); pandas or Dask.

    ``adds_ids``: the caller adds the id column to the frame (``ids()`` and ``plan()`` do not).
    """
    temp = None
    if isinstance(weight, (dd.Series, pd.Series)):
        temp = WEIGHT_COLUMN
        ddf = ddf.assign(**{WEIGHT_COLUMN: weight})
        opts = opts.with_(weight=WEIGHT_COLUMN)
    meta = ddf._meta if isinstance(ddf, dd.DataFrame) else ddf
    opts.check_columns(meta.columns, meta.dtypes)
    if adds_ids:
        opts.check_id_column(meta.columns, meta.index.names)
    if opts.device == "gpu":
        backend_for("gpu")  # raises here, before any data is read, when no GPU backend runs
    return Prepared(ddf, opts, weight_kind(meta.dtypes[opts.weight]) == "float", temp)


def _spec(prep: Prepared) -> Prepared:
    """The data-free part of ``prep`` that travels with every task."""
    return Prepared(None, prep.opts, prep.is_float, prep.temp_weight)


def _summarize_one(df, spec, head_bytes, prefer_whole, partition_info=None):
    try:
        return summarize(df, spec.opts, spec.is_float, head_bytes, prefer_whole)
    finally:
        _release_arrow_memory()


def _extra_summary_one(df, spec, table, partition_info=None):
    try:
        return extra_summary(df, spec.opts, spec.is_float, table.entries[partition_info["number"]])
    finally:
        _release_arrow_memory()


def _release_arrow_memory():
    """Hand the memory Arrow's pool kept after the read back to the system (see
    docs/export.md, "Out of core"): a worker near its limit would otherwise stay paused."""
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()


def _collect(*summaries):
    return list(summaries)


def _flatten(groups):
    return [r for group in groups for r in group]


def _same(df):
    return df


def as_mapped(ddf: dd.DataFrame) -> dd.DataFrame:
    """``ddf`` optimised with the partitions a task mapped over it sees.

    Dask's tuning fuses the partitions of a read whose columns are projected
    (``FusedParquetIO``), but only under a parent expression: ``ddf.optimize()`` alone may
    have more partitions than ``ddf.map_partitions(f)`` computes. Every pass uses this.

    >>> ddf = dd.from_pandas(pd.DataFrame({"w": range(6)}), npartitions=3)
    >>> as_mapped(ddf).npartitions
    3
    """
    return ddf.map_partitions(_same, meta=ddf._meta, enforce_metadata=False,
                              align_dataframes=False).optimize()


class SummarySource:
    """The frame the summary pass reads: only the weight and key columns where Dask can prune.

    Every pass must see the same partitions as the finish (a task mapped over the frame, see
    :func:`as_mapped`). The projection to the weight and key columns is optimised with Dask's
    tuning off, so it is not fused, and used only when it has as many partitions as the
    finish sees; otherwise the summary pass reads the frame as the finish does. Each finish
    task also checks its row count against the summary's.

    >>> ddf = dd.from_pandas(pd.DataFrame({"w": [1, 2, 3, 4], "text": list("abcd")}), npartitions=2)
    >>> source = SummarySource(ddf, BatchOptions.make("w", 5))
    >>> list(source.frame.columns), source.frame.npartitions
    (['w'], 2)
    """

    def __init__(self, ddf: dd.DataFrame, opts: BatchOptions):
        full = unwrap_map(as_mapped(ddf), _same)  # its tasks only copy
        self.frame, self.tune = full, None  # None: Dask's tuning as configured, as the finish
        columns = list(dict.fromkeys([opts.weight, *opts.by]))
        if len(columns) < len(ddf.columns):
            with _settings(tune=False):
                projected = ddf[columns].optimize()
            if projected.npartitions == full.npartitions:
                self.frame, self.tune = projected, False
        self.frame = without_idle_string_conversion(self.frame)

    def config(self):
        """Dask settings to build and compute the summary pass's graphs under."""
        return _settings(self.tune)


def without_idle_string_conversion(ddf: dd.DataFrame) -> dd.DataFrame:
    """``ddf`` with Dask's string conversion turned off in its in-memory reads where it would
    convert nothing (no object column or index among the columns read).

    ``from_pandas`` converts each partition as its task is built: about 0.5 ms a partition
    (5 s at 10,000 partitions) even for numeric columns, which it then leaves as they are.

    >>> from dask_cumbatch.dask_compat import from_pandas_reads
    >>> ddf = dd.from_pandas(pd.DataFrame({"w": [1.0, 2.0]}), npartitions=1)
    >>> [r.operand("pyarrow_strings_enabled") for r in from_pandas_reads(without_idle_string_conversion(ddf))]
    [False]
    """
    return without_string_conversion(ddf, _same_schema)


def _same_schema(a, b) -> bool:
    dtypes = (lambda m: list(m.dtypes)) if isinstance(a, pd.DataFrame) else (lambda m: [m.dtype])
    return type(a) is type(b) and dtypes(a) == dtypes(b) and a.index.dtype == b.index.dtype


def _settings(tune: bool | None):
    # Only weights and keys travel in the summary pass: string conversion buys nothing there.
    settings = {"dataframe.convert-string": False}
    if tune is not None:
        settings["optimization.tune.active"] = tune
    return dask.config.set(settings)


def _gather(source: SummarySource, func, *args) -> list:
    """``func(partition, *args, partition_info=...)`` over the partitions, gathered into one place.

    A task holds one partition at a time and keeps only its small summary, whatever the
    partition size. Where every partition is computed by a task of its own (a read, an
    in-memory slice, blockwise work fused onto them), at most about ``FAT_TASKS`` tasks run
    the partitions' tasks one after the other (:func:`_run_each`), so that 10,000 partitions
    cost the scheduler a few hundred tasks. Otherwise ``func`` is mapped with
    ``map_partitions``, fused with the partition's read, and the summaries are collected by
    at most ``FAT_TASKS`` small tasks. Either way the graph is flat: then one gather.
    """
    with source.config():
        frame = source.frame
        parts = _own_tasks(frame)
        if parts is not None:
            return _gather_fat(parts, func, args)
        mapped = frame.map_partitions(func, *args, meta=pd.Series([], dtype=object),
                                      enforce_metadata=False, align_dataframes=False).optimize()
        if mapped.npartitions != frame.npartitions:  # pragma: no cover - a change in Dask
            raise RuntimeError("internal error: the summary pass sees other partitions than the finish")
        keys = mapped.__dask_keys__()
        name = f"cumbatch-{func.__name__.strip('_')}-{tokenize(mapped._name)}"
        layer = {(name, g): (_collect, *keys[part]) for g, part in enumerate(_fat_slices(len(keys)))}
        layer[name] = (_flatten, list(layer))
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[mapped])
        return Delayed(name, graph).compute()


def _fat_slices(n: int) -> list[slice]:
    """``n`` partitions cut into at most about ``FAT_TASKS`` runs of consecutive ones.

    >>> _fat_slices(3), len(_fat_slices(10_000))
    ([slice(0, 1, None), slice(1, 2, None), slice(2, 3, None)], 500)
    """
    size = max(1, -(-n // FAT_TASKS))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _own_tasks(frame: dd.DataFrame) -> list | None:
    """For each partition of ``frame``, the tasks that compute it (a small graph and its output
    key); None unless no task serves two partitions (then each partition can run alone)."""
    graph = frame.__dask_graph__()
    if not is_task_graph(graph):
        return None
    owner, parts = {}, []
    for k, key in enumerate(frame.__dask_keys__()):
        own, todo = {}, [key]
        while todo:
            dep = todo.pop()
            if dep in own:
                continue
            if owner.setdefault(dep, k) != k:
                return None
            own[dep] = graph[dep]
            todo.extend(own[dep].dependencies)
        parts.append(_Deferred(own, key))
    return parts


class _Deferred:
    """The tasks of one partition, run by a fat task itself (Dask does not run them first).

    >>> from dask_cumbatch.dask_compat import DataNode
    >>> _Deferred({"a": DataNode("a", 3), "b": Task("b", abs, TaskRef("a"))}, "b").run()
    3
    """

    __slots__ = ("graph", "key")

    def __init__(self, graph: dict, key):
        self.graph, self.key = graph, key

    def run(self):
        """The partition: each task run once, its result dropped once its last user ran."""
        users = Counter(d for node in self.graph.values() for d in node.dependencies)
        done = {}

        def value(key):
            if key not in done:
                node = self.graph[key]
                done[key] = node({d: value(d) for d in node.dependencies})
                for d in node.dependencies:
                    users[d] -= 1
                    if not users[d]:
                        del done[d]
            return done[key]

        return value(self.key)


class _Parts:
    """Partitions' tasks as a task argument Dask passes on as it is (it looks into lists)."""

    __slots__ = ("items",)

    def __init__(self, items):
        self.items = items


def _run_each(parts, first, func, *args):
    return [func(part.run(), *args, partition_info={"number": first + i}) for i, part in enumerate(parts.items)]


def _gather_fat(parts: list, func, args) -> list:
    graph, refs = {}, []
    for a in args:  # a Delayed argument (the entry table) is one key that every task reads
        if isinstance(a, Delayed):
            graph.update(a.__dask_graph__())
            a = TaskRef(a.key)
        refs.append(a)
    name = f"cumbatch-{func.__name__.strip('_')}-{uuid.uuid4().hex}"
    return _compute_fat(name, len(parts), graph,
                        lambda key, part: Task(key, _run_each, _Parts(parts[part]), part.start, func, *refs))


def _compute_fat(name: str, n: int, graph: dict, task_for, scheduler=None) -> list:
    """The results of ``n`` partitions computed by one task per :func:`_fat_slices` run
    (``task_for(key, run)`` builds it), flattened into one list by one gather task."""
    keys = []
    for g, part in enumerate(_fat_slices(n)):
        keys.append((name, g))
        graph[keys[-1]] = task_for(keys[-1], part)
    graph[name] = (_flatten, keys)
    return Delayed(name, graph).compute(scheduler=scheduler)


def in_memory_column(frame: dd.DataFrame, opts: BatchOptions):
    """``(values, index, bounds)`` where ``frame`` is read straight from one pandas frame
    (``from_pandas``) and batched without keys: its weight column's float64 or int64 values, its
    index, and each partition's ``(start, stop)`` rows there, in order; else None.

    The summary pass then slices one NumPy column (:func:`_gather_column`) instead of making a
    pandas frame per partition (about 35 us a partition: 0.35 s at 10,000 partitions). The
    finish still reads its partitions through Dask and checks each against its summary.

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


def _summarize_slices(values, index, bounds, spec, head_bytes, prefer_whole):
    return [summarize_weights(values[a:b], index[a:b], spec.opts, spec.is_float, head_bytes, prefer_whole)
            for a, b in bounds]


def _gather_column(column, spec: Prepared, head_bytes: int, prefer_whole: bool) -> list:
    """The summaries of :func:`in_memory_column`'s partitions, in at most ``FAT_TASKS`` tasks
    each holding its stretch of the column.

    Partitions of fewer than ``GIL_BOUND_ROWS`` rows on average are summarised by Dask's
    synchronous scheduler unless a ``distributed`` client is active: their summaries are a few
    microseconds of kernels between Python and NumPy calls, and two threads taking the GIL in
    turns ran them at half the speed of one (measured: 10,000 partitions of 1,000 rows 0.59 s
    threaded, 0.29 s synchronous; 1,000 of 10,000 rows 0.16 / 0.08 s; docs/_perf_table.md).
    """
    values, index, bounds = column
    local = active_client() is None
    scheduler = "sync" if local and len(values) < GIL_BOUND_ROWS * max(len(bounds), 1) else None

    def task_for(key, part):
        lo, hi = bounds[part.start][0], bounds[part.stop - 1][1]
        return Task(key, _summarize_slices, values[lo:hi], index[lo:hi],
                    [(a - lo, b - lo) for a, b in bounds[part]], spec, head_bytes, prefer_whole)

    return _compute_fat(f"cumbatch-summarize-{uuid.uuid4().hex}", len(bounds), {}, task_for, scheduler)


class _ReadAhead:
    """Loads partitions for the scan's fallback walk, reading ahead on consecutive requests.

    A lone request reads one partition; a run of consecutive requests (periodic data, a batch
    spanning many large partitions) reads a window that doubles, up to ``max_window``, so the
    reads run in parallel while the walk itself stays sequential.
    """

    def __init__(self, source: SummarySource, max_window: int = 8):
        self.source = source  # the partitions the summary pass saw
        self.max_window = max_window
        self.window = 1
        self.cache = {}
        self.last = None

    def __call__(self, k: int) -> pd.DataFrame:
        if k not in self.cache:
            self.window = min(self.window * 2, self.max_window) if self.last == k - 1 else 1
            ddf = self.source.frame
            wanted = range(k, min(k + self.window, ddf.npartitions))
            with self.source.config():
                self.cache = dict(zip(wanted, dask.compute(*[ddf.partitions[j] for j in wanted])))
        self.last = k
        return self.cache.pop(k)


def active_client():
    """The ``distributed.Client`` Dask would use now (None when a local scheduler is configured).

    >>> active_client() is None  # the threaded scheduler
    True
    """
    distributed = sys.modules.get("distributed")
    if distributed is None:  # no Client exists unless distributed was imported (saves 0.2 s)
        return None
    try:
        scheduler = dask.base.get_scheduler()
    except Exception:
        return None
    owner = getattr(scheduler, "__self__", None)
    return owner if isinstance(owner, distributed.Client) else None


def plan_partitions(prep: Prepared, start: Carry | None = None) -> PartitionPlan:
    """Summaries (one pass over the data) and the scan; eager, like ``set_index``'s divisions.

    ``start`` continues from the exact state a previous plan ended in (incremental export).
    The summaries are gathered into one task and scanned in the caller: the graph is flat
    whatever the partition count.
    """
    spec = _spec(prep)
    source = SummarySource(prep.ddf, prep.opts)
    # Locally, whole partitions in the summaries cost no transfer and save the chain tables'
    # CPU; on a cluster they would travel to the gather task and the client.
    prefer_whole = active_client() is None
    head_bytes = head_bytes_for(prep.ddf.npartitions)
    column = in_memory_column(source.frame, prep.opts)
    if column is not None:
        summaries = _gather_column(column, spec, head_bytes, prefer_whole)
    else:
        summaries = _gather(source, _summarize_one, spec, head_bytes, prefer_whole)
    plan = scan(summaries, prep.opts, prep.is_float, _ReadAhead(source), start=start)
    if needs_extra_pass(prep.opts):
        extra = _gather(source, _extra_summary_one, spec, _entry_table(plan))
        plan = scan_extra(extra, plan, prep.opts)
    return plan


def _finish(func):
    def task(df, table, spec, partition_info=None, **extra):
        entry = table.entries[partition_info["number"]]
        return func(df, spec.opts, spec.is_float, entry, **extra)

    task.__name__ = f"cumbatch-{func.__name__.replace('_', '-')}"
    return task


_finish_ids = _finish(finish_ids)
_finish_frame = _finish(finish_frame)
_finish_stats = _finish(finish_stats)


def _entry_table(plan: PartitionPlan) -> Delayed:
    """The plan's entries as one Delayed key; named, not tokenized (hashing 10,000 entries
    took 0.3 s), and a plan is a new object each time anyway."""
    return delayed(EntryTable(plan.entries), name=f"cumbatch-entries-{uuid.uuid4().hex}")


def _map_finish(prep: Prepared, plan: PartitionPlan, task, meta, **kw):
    table = _entry_table(plan)
    mapped = without_idle_string_conversion(prep.ddf).map_partitions(
        task, table, _spec(prep), meta=meta, enforce_metadata=False, align_dataframes=False, **kw
    )
    return renumbered(mapped, source_partitions(prep.ddf.expr))


def ids_series(prep: Prepared, plan: PartitionPlan) -> dd.Series:
    """The finish as a lazy Series of batch ids with the input's divisions."""
    dtype = "Int64" if prep.opts.invalid == "skip" else "int64"
    meta = pd.Series(pd.array([], dtype=dtype), index=prep.ddf._meta.index, name=prep.opts.name)
    return _map_finish(prep, plan, _finish_ids, meta)


def _frame_meta(prep: Prepared) -> pd.DataFrame:
    meta = prep.ddf._meta
    if prep.temp_weight:
        meta = meta.drop(columns=[prep.temp_weight])
    return meta.assign(**{prep.opts.name: np.array([], dtype=np.int64)})


def batch_frame(prep: Prepared, plan: PartitionPlan) -> dd.DataFrame:
    """The input's batched rows with the id column, partition for partition (skipped rows dropped)."""
    kw = {"clear_divisions": True} if prep.opts.sort_window else {}
    return _map_finish(prep, plan, _finish_frame, _frame_meta(prep), weight_column=prep.temp_weight, **kw)


def _from_parts(tasks, meta, divisions):
    return dd.from_delayed(tasks, meta=meta, divisions=divisions, verify_meta=False)


def id_ranges(plan: PartitionPlan) -> list[tuple[int, int]]:
    """For each input partition, the superset ``[lo, hi]`` of batch ids its rows can hold."""
    bases = [e.carry.batches for e in plan.entries] + [plan.end_state.batches]
    return [(bases[j] - 1, bases[j + 1] - 1) for j in range(len(plan.entries))]


def output_ranges(plan: PartitionPlan, batches_per_partition: int | None):
    """The id range ``[lo, hi]`` of each output partition (only ranges holding a batch)."""
    first = plan.entries[0].carry.batches if plan.entries else 0
    end = plan.end_state.batches
    if batches_per_partition:
        return [(lo, min(lo + batches_per_partition, end) - 1) for lo in range(first, end, batches_per_partition)]
    bases = [e.carry.batches for e in plan.entries] + [end]
    return [(bases[k], bases[k + 1] - 1) for k in range(len(plan.entries))]


def _rows_between(f: pd.DataFrame, lo, hi, name) -> pd.DataFrame:
    """The rows of ``f`` whose id is in ``[lo, hi]``: one slice where the ids are sorted, which
    keeps a ``RangeIndex`` (a boolean mask does not on pandas 2, and 8 bytes a row then change
    the partition sizes ``partition_size`` plans for).

    >>> f = pd.DataFrame({"batch": [0, 1, 1, 2]})
    >>> _rows_between(f, 1, 1, "batch").index
    RangeIndex(start=1, stop=3, step=1)
    """
    ids = f[name].to_numpy()
    if len(ids) and bool((ids[1:] >= ids[:-1]).all()):
        return f.iloc[int(np.searchsorted(ids, lo, "left")):int(np.searchsorted(ids, hi, "right"))]
    return f[(ids >= lo) & (ids <= hi)]


def _select(frames, lo, hi, name):
    pieces = [_rows_between(f, lo, hi, name) for f in frames]
    return pd.concat(pieces) if len(pieces) > 1 else pieces[0]


def _select_indexed(frames, lo, hi, name):
    return _select(frames, lo, hi, name).set_index(name)


def repartition(prep: Prepared, plan: PartitionPlan, batches_per_partition=None, index=False):
    """Partitions that hold whole batches, without a shuffle (DESIGN.md "Repartitioning").

    Output partition k takes the batches whose ids fall in its range; it depends on the input
    partitions whose id ranges overlap it (itself and the continuation of its last batch).
    With ``index=True`` the batch id becomes the index and the divisions are known.
    """
    return repartition_ranges(prep, plan, output_ranges(plan, batches_per_partition), index=index)


def repartition_ranges(prep: Prepared, plan: PartitionPlan, ranges, index=False):
    """:func:`repartition` with the output partitions' id ranges ``[(lo, hi), ...]`` given."""
    frames = batch_frame(prep, plan).to_delayed(optimize_graph=True)
    sources = id_ranges(plan)
    meta = _frame_meta(prep)
    name = prep.opts.name
    select = _select_indexed if index else _select
    tasks, kept = [], []
    for lo, hi in ranges:
        if index and hi < lo:
            continue
        deps = [frames[j] for j, (a, b) in enumerate(sources) if _has_rows(plan, j) and a <= hi and b >= lo]
        tasks.append(delayed(select)(deps or [meta], lo, hi, name))
        kept.append((lo, hi))
    if not tasks:
        meta = meta.set_index(name) if index else meta
        return _from_parts([delayed(meta)], meta, (None, None))
    if index:
        divisions = tuple(lo for lo, _ in kept) + (kept[-1][1],)
        return _from_parts(tasks, meta.set_index(name), divisions)
    return _from_parts(tasks, meta, (None,) * (len(tasks) + 1))


def _batch_bytes(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Bytes of each batch in one partition: its rows times the partition's mean row size."""
    if not len(df):
        return pd.DataFrame({"batch": np.array([], dtype=np.int64), "bytes": np.array([], dtype=np.float64)})
    per_row = float(df.memory_usage(deep=True, index=True).sum()) / len(df)
    counts = df[name].value_counts(sort=False)
    return pd.DataFrame({"batch": counts.index.to_numpy(dtype=np.int64),
                         "bytes": counts.to_numpy(dtype=np.float64) * per_row})


def batch_bytes(prep: Prepared, plan: PartitionPlan) -> pd.Series:
    """The in-memory size of every batch, by batch id in order (one pass over the data).

    Sizes are ``memory_usage(deep=True)`` spread evenly over a partition's rows, as
    ``dask.dataframe.DataFrame.repartition(partition_size=)`` estimates them; the id column is
    included.
    """
    meta = _batch_bytes(_frame_meta(prep), prep.opts.name)
    parts = batch_frame(prep, plan).map_partitions(_batch_bytes, prep.opts.name, meta=meta,
                                                     clear_divisions=True).compute()
    return parts.groupby("batch", sort=True)["bytes"].sum()


def size_ranges(sizes: pd.Series, target: float) -> list[tuple[int, int]]:
    """Group consecutive batches (``sizes``: bytes by batch id) into ranges of about ``target`` bytes.

    A range closes before the batch that would take it over ``target``; a batch larger than
    ``target`` gets a range of its own.

    >>> size_ranges(pd.Series([4.0, 4.0, 4.0, 9.0, 1.0], index=range(5)), 8)
    [(0, 1), (2, 2), (3, 3), (4, 4)]
    """
    ranges, lo, total = [], None, 0.0
    for bid, size in zip(sizes.index.tolist(), sizes.to_numpy(dtype=np.float64).tolist()):
        if lo is not None and total + size > target:
            ranges.append((lo, prev))
            lo = None
        if lo is None:
            lo, total = bid, 0.0
        total += size
        prev = bid
    if lo is not None:
        ranges.append((lo, prev))
    return ranges


def _has_rows(plan, j) -> bool:
    entries = plan.entries
    nxt = entries[j + 1].carry.position if j + 1 < len(entries) else plan.end_state.position
    return nxt > entries[j].carry.position


def plan_stats(prep: Prepared, plan: PartitionPlan) -> pd.DataFrame:
    """One row per batch: batch, rows, total, max, start, stop (global row positions)."""
    meta = pd.DataFrame({c: np.array([], dtype=np.int64) for c in ("batch", "rows", "total", "max", "start", "stop")})
    if prep.is_float:
        meta = meta.astype({"total": np.float64, "max": np.float64})
    stats = _map_finish(prep, plan, _finish_stats, meta, clear_divisions=True).compute()
    if stats["batch"].duplicated().any():  # batches spanning partitions
        stats = stats.groupby("batch", sort=True, as_index=False).agg(
            rows=("rows", "sum"), total=("total", "sum"), max=("max", "max"),
            start=("start", "min"), stop=("stop", "max"),
        )
    return stats.reset_index(drop=True)
