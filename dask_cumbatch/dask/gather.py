"""A function mapped over a frame's partitions, its results gathered into one place.

:class:`SummarySource` is the frame a pass reads (only the weight and key columns where Dask
can prune); :func:`gather` runs the function over its partitions in at most about
``FAT_TASKS`` tasks plus one gather, so the graph is flat whatever the partition count.
"""
from __future__ import annotations

import uuid

import dask
import dask.dataframe as dd
import pandas as pd
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from ..dask_compat import Task, TaskRef, as_mapped, partition_tasks, same_frame, unwrap_map
from ..dask_compat import without_idle_string_conversion
from ..options import BatchOptions


FAT_TASKS = 512  # the summary pass collects the summaries in at most about this many tasks


def _collect(*summaries):
    return list(summaries)


def _flatten(groups):
    return [r for group in groups for r in group]


class SummarySource:
    """The frame the summary pass reads: only the weight and key columns where Dask can prune.

    Every pass must see the same partitions as the finish (a task mapped over the frame, see
    :func:`~dask_cumbatch.dask_compat.as_mapped`). The projection to the weight and key
    columns is optimised with Dask's tuning off, so it is not fused, and used only when it has
    as many partitions as the finish sees; otherwise the summary pass reads the frame as the finish does. Each finish
    task also checks its row count against the summary's.

    >>> ddf = dd.from_pandas(pd.DataFrame({"w": [1, 2, 3, 4], "text": list("abcd")}), npartitions=2)
    >>> source = SummarySource(ddf, BatchOptions.make("w", 5))
    >>> list(source.frame.columns), source.frame.npartitions
    (['w'], 2)
    """

    def __init__(self, ddf: dd.DataFrame, opts: BatchOptions):
        full = unwrap_map(as_mapped(ddf), same_frame)  # its tasks only copy
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


def _settings(tune: bool | None):
    # Only weights and keys travel in the summary pass: string conversion buys nothing there.
    settings = {"dataframe.convert-string": False}
    if tune is not None:
        settings["optimization.tune.active"] = tune
    return dask.config.set(settings)


def gather(source: SummarySource, func, *args) -> list:
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
        parts = partition_tasks(frame)
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
    return compute_fat(name, len(parts), graph,
                        lambda key, part: Task(key, _run_each, _Parts(parts[part]), part.start, func, *refs))


def compute_fat(name: str, n: int, graph: dict, task_for, scheduler=None) -> list:
    """The results of ``n`` partitions computed by one task per :func:`_fat_slices` run
    (``task_for(key, run)`` builds it), flattened into one list by one gather task."""
    keys = []
    for g, part in enumerate(_fat_slices(n)):
        keys.append((name, g))
        graph[keys[-1]] = task_for(keys[-1], part)
    graph[name] = (_flatten, keys)
    return Delayed(name, graph).compute(scheduler=scheduler)
