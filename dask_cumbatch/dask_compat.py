"""Every private Dask name dask-cumbatch uses, in one place, each with why it remains.

No other module of the package imports a private Dask module (``dask._task_spec``,
``dask.dataframe.dask_expr``) or touches an expression's private attributes; a test scans the
sources for it (tests/dask_layer/test_dask_compat.py). Each behaviour relied on below has a test of its
own in that file, named for it, so that a Dask release that moves one fails one named test.
Public API is used wherever it does the job: ``map_partitions(..., partition_info=...)`` for
the summary pass, ``HighLevelGraph``/``Delayed`` for the gathers, ``dd.from_delayed`` for the
repartition, ``__dask_graph__``/``__dask_keys__`` for the graphs.

Why each private use remains (what the public API lacks), tested on Dask 2025.7 to 2026.x:

- **Task spec** (``dask._task_spec``: :data:`Task`, :data:`TaskRef`, :data:`GraphNode`,
  :data:`DataNode`). Dask's graphs are made of these nodes; the summary pass runs the tasks of
  up to ~20 partitions inside one task (:func:`partition_tasks`, :class:`PartitionTasks`) so that
  10,000 partitions cost a few hundred tasks, which needs a node's ``dependencies`` and its call
  with the dependencies' values. Dask has no public task class (legacy tuples are converted to
  these nodes anyway).
- **Expressions and collections** (``dask.dataframe.dask_expr``: :func:`new_collection`).
  ``dd.from_graph`` makes a collection from a graph but loses the expression (and with it
  projection and the partition selections Dask pushes), so an optimised expression is wrapped
  back into a collection by ``new_collection``.
- **A ``map_partitions`` that numbers partitions by the plan** (:func:`renumbered`, a subclass
  of ``MapPartitions`` that overrides ``_task`` and calls ``_blockwise_arg``). Public
  ``partition_info["number"]`` counts the partitions a task sees from 0 after Dask pushed a
  partition selection below the map (``tail()``, ``.partitions[k]``), but the finish must know
  which planned partition it holds. No public hook gives a task its source partition.
- **Partition selections** (:func:`source_partitions`: ``Partitions``, ``PartitionsFiltered``,
  the ``_partitions`` operand, ``Blockwise._broadcast_dep``). Needed by :func:`renumbered`: which
  source partition each partition of an optimised expression reads. Not public anywhere.
- **An in-memory frame's slices** (:func:`pandas_slices`: ``FromPandas``, its ``_locations()``,
  ``_partitions``, ``_filtered``). The summary pass slices one NumPy column instead of building a
  pandas frame per partition (a cost that grows with the partition count, docs/performance.md);
  the row bounds of ``from_pandas``'s partitions are not public (``divisions`` are index labels,
  not positions).
- **String conversion of an in-memory read** (:func:`without_string_conversion`:
  ``FromPandas``'s ``pyarrow_strings_enabled`` operand, ``substitute_parameters``,
  ``Expr.substitute``). The ``dataframe.convert-string`` setting is read when ``from_pandas``
  is called, not when its tasks are built, so a frame made earlier can only be changed in its
  expression (its conversion costs time per partition even for numeric columns,
  docs/performance.md); :func:`without_idle_string_conversion` turns it off where it would
  convert nothing.
- **A frame's input paths** (:func:`read_paths`: ``Expr.walk``, ``_parameters``, the ``path``
  operand), for the export's fingerprint of a ``read_parquet``/``read_csv`` frame. Dask keeps
  no public record of the files a collection reads.
- **A frame's read restricted to some of its files** (:func:`row_wise_read`,
  :func:`over_files`: ``ReadParquet``, ``IO``, ``Blockwise``, ``MapPartitions``,
  ``substitute_parameters``, the ``_dataset_info_cache`` operand), for an append of a
  ``read_parquet`` frame that exports only the files it has not exported yet. Dask offers no
  public way to rebuild a collection's steps over other files.
- **Unwrapping a trivial map** (:func:`unwrap_map`: ``MapPartitions.func``, ``.frame``), so
  that the summary pass reads a source directly instead of through a copying task.

One workaround here uses public API only but depends on how Dask optimises:
:func:`as_mapped` (the partitions a mapped task sees, which Dask's tuning may fuse only under a
parent expression).
"""
from __future__ import annotations

import functools
from collections import Counter

import dask.dataframe as dd
import pandas as pd
from dask._task_spec import DataNode, GraphNode, Task, TaskRef  # noqa: F401 (re-exported)
from dask.dataframe.dask_expr._collection import new_collection  # noqa: F401 (re-exported)
from dask.dataframe.dask_expr._expr import Blockwise, MapPartitions, Partitions, PartitionsFiltered

__all__ = [
    "DataNode", "GraphNode", "Task", "TaskRef", "new_collection", "is_task_graph", "unwrap_map",
    "from_pandas_reads", "without_string_conversion", "pandas_slices", "source_partitions",
    "renumbered", "read_paths", "row_wise_read", "over_files", "partition_tasks", "PartitionTasks",
    "same_frame", "as_mapped", "without_idle_string_conversion",
]


def _from_pandas_class():
    from dask.dataframe.dask_expr.io.io import FromPandas  # imported late: dask's io modules load slowly

    return FromPandas


def is_task_graph(graph) -> bool:
    """Whether every node of a collection's graph is a task-spec node (a legacy tuple is not).

    >>> import dask.dataframe as dd, pandas as pd
    >>> is_task_graph(dd.from_pandas(pd.DataFrame({"w": [1]}), npartitions=1).__dask_graph__())
    True
    """
    return all(isinstance(node, GraphNode) for node in graph.values())


def partition_tasks(frame: dd.DataFrame) -> list | None:
    """For each partition of ``frame``, the tasks that compute it (a small graph and its output
    key); None unless no task serves two partitions (then each partition can run alone).

    >>> import dask.dataframe as dd, pandas as pd
    >>> ddf = dd.from_pandas(pd.DataFrame({"w": range(6)}), npartitions=3)
    >>> [part.run().w.tolist() for part in partition_tasks(ddf)]
    [[0, 1], [2, 3], [4, 5]]
    """
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
        parts.append(PartitionTasks(own, key))
    return parts


class PartitionTasks:
    """The tasks of one partition, run by a fat task itself (Dask does not run them first).

    >>> PartitionTasks({"a": DataNode("a", 3), "b": Task("b", abs, TaskRef("a"))}, "b").run()
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


def unwrap_map(ddf, func):
    """``ddf``'s input when ``ddf`` is exactly ``map_partitions(func)`` over it, else ``ddf``.

    >>> import dask.dataframe as dd, pandas as pd
    >>> base = dd.from_pandas(pd.DataFrame({"w": [1]}), npartitions=1)
    >>> unwrap_map(base.map_partitions(abs), abs).expr._name == base.expr._name
    True
    """
    expr = ddf.expr
    if isinstance(expr, MapPartitions) and expr.func is func:
        return new_collection(expr.frame)
    return ddf


def from_pandas_reads(ddf) -> list:
    """The ``from_pandas`` reads under ``ddf``'s expression.

    >>> import dask.dataframe as dd, pandas as pd
    >>> len(from_pandas_reads(dd.from_pandas(pd.DataFrame({"w": [1]}), npartitions=1) + 1))
    1
    """
    return list(ddf.expr.find_operations(_from_pandas_class()))


def without_string_conversion(ddf, keep):
    """``ddf`` with string conversion turned off in each ``from_pandas`` read where it is on and
    ``keep(before_meta, after_meta)`` says the read's schema stays the same.

    >>> import dask.dataframe as dd, pandas as pd
    >>> ddf = dd.from_pandas(pd.DataFrame({"w": [1.0]}), npartitions=1)
    >>> [r.operand("pyarrow_strings_enabled") for r in
    ...  from_pandas_reads(without_string_conversion(ddf, lambda a, b: True))]
    [False]
    """
    expr = ddf.expr
    for read in from_pandas_reads(ddf):
        if not read.operand("pyarrow_strings_enabled"):
            continue
        plain = read.substitute_parameters({"pyarrow_strings_enabled": False})
        if keep(read._meta, plain._meta):
            expr = expr.substitute(read, plain)
    return ddf if expr is ddf.expr else new_collection(expr)


def same_frame(df):
    """``df`` itself: the function of a trivial ``map_partitions`` (:func:`as_mapped`,
    :func:`unwrap_map`).

    >>> same_frame(3)
    3
    """
    return df


def as_mapped(ddf: dd.DataFrame) -> dd.DataFrame:
    """``ddf`` optimised with the partitions a task mapped over it sees.

    Dask's tuning fuses the partitions of a read whose columns are projected
    (``FusedParquetIO``), but only under a parent expression: ``ddf.optimize()`` alone may
    have more partitions than ``ddf.map_partitions(f)`` computes. Every pass uses this.

    >>> import dask.dataframe as dd, pandas as pd
    >>> ddf = dd.from_pandas(pd.DataFrame({"w": range(6)}), npartitions=3)
    >>> as_mapped(ddf).npartitions
    3
    """
    return ddf.map_partitions(same_frame, meta=ddf._meta, enforce_metadata=False,
                              align_dataframes=False).optimize()


def without_idle_string_conversion(ddf: dd.DataFrame) -> dd.DataFrame:
    """``ddf`` with Dask's string conversion turned off in its in-memory reads where it would
    convert nothing (no object column or index among the columns read).

    ``from_pandas`` converts each partition as its task is built, at a cost per partition
    (docs/performance.md), even for numeric columns, which it then leaves as they are.

    >>> import dask.dataframe as dd, pandas as pd
    >>> ddf = dd.from_pandas(pd.DataFrame({"w": [1.0, 2.0]}), npartitions=1)
    >>> [r.operand("pyarrow_strings_enabled") for r in from_pandas_reads(without_idle_string_conversion(ddf))]
    [False]
    """
    return without_string_conversion(ddf, _same_schema)


def _same_schema(a, b) -> bool:
    dtypes = (lambda m: list(m.dtypes)) if isinstance(a, pd.DataFrame) else (lambda m: [m.dtype])
    return type(a) is type(b) and dtypes(a) == dtypes(b) and a.index.dtype == b.index.dtype


def pandas_slices(ddf):
    """``(data, bounds)`` when ``ddf`` is exactly a ``from_pandas`` read: the pandas object its
    partitions are sliced from (sorted as they are) and each partition's ``(start, stop)``
    row positions there, in order (after any partition selection); else None.

    >>> import dask.dataframe as dd, pandas as pd
    >>> pandas_slices(dd.from_pandas(pd.DataFrame({"w": [1, 2, 3]}), npartitions=2))[1]
    [(0, 2), (2, 3)]
    """
    expr = ddf.expr
    if not isinstance(expr, _from_pandas_class()):
        return None
    data = expr.frame
    data = getattr(data, "_data", data)  # a frame wrapped so that it is tokenized once
    locations = list(expr._locations())
    chosen = list(expr._partitions) if expr._filtered else range(len(locations) - 1)
    return data, [(locations[p], locations[p + 1]) for p in chosen]


def source_partitions(expr) -> list:
    """For each partition of ``expr``, the partition of its source it is computed from.

    Follows the partition selections (``Partitions``, a read's own ``_partitions``) down a
    chain of blockwise expressions, where Dask pushes them (``tail()``, ``.partitions[k]``).

    >>> import dask.dataframe as dd, pandas as pd
    >>> ddf = dd.from_pandas(pd.DataFrame({"w": range(6)}), npartitions=3)
    >>> source_partitions(ddf.expr), source_partitions((ddf + 1).partitions[[2, 0]].optimize().expr)
    ([0, 1, 2], [2, 0])
    """
    chosen = list(range(expr.npartitions))
    while True:
        if isinstance(expr, Partitions):
            picked = expr.partitions
        else:  # an operand, not getattr: an expression without a _meta (from_delayed's) raises there
            picked = expr.operand("_partitions") if "_partitions" in expr._parameters else None
        if isinstance(expr, (Partitions, PartitionsFiltered)) and picked:
            picked = list(picked)
            chosen = [picked[i] for i in chosen]
        if isinstance(expr, Partitions):
            expr = expr.frame
            continue
        below = [d for d in expr.dependencies() if not expr._broadcast_dep(d)] if isinstance(expr, Blockwise) else []
        if not below:
            return chosen
        expr = below[0]  # a selection pushed below a blockwise expression reaches all its inputs alike


def renumbered(mapped, planned: list):
    """``mapped`` (a ``map_partitions`` with ``partition_info``) whose tasks get
    ``partition_info["number"]`` = the position in ``planned`` of the source partition they
    read, also after Dask pushed a partition selection below the map.

    >>> import dask.dataframe as dd, pandas as pd
    >>> ddf = dd.from_pandas(pd.DataFrame({"w": range(6)}), npartitions=3)
    >>> number = lambda df, partition_info=None: pd.Series([partition_info["number"]])
    >>> m = renumbered(ddf.map_partitions(number, meta=(None, int)), [0, 1, 2])
    >>> m.partitions[[2, 0]].compute().tolist()
    [2, 0]
    """
    expr = mapped.expr
    kwargs = dict(expr.kwargs or {}, _planned=tuple(planned))
    operands = [kwargs if name == "kwargs" else expr.operand(name) for name in expr._parameters]
    return new_collection(_PlannedPartitions(*operands, *expr.operands[len(operands):]))


class _PlannedPartitions(MapPartitions):
    """The finish's ``map_partitions``: ``partition_info["number"]`` is the partition's number in
    the plan, also after Dask pushed a partition selection below it (where plain
    ``MapPartitions`` would number the selected partitions from 0)."""

    @functools.cached_property
    def _plan_numbers(self) -> list:
        where = {p: i for i, p in enumerate(self.kwargs["_planned"])}
        current = source_partitions(self.frame)
        if len(current) != self.frame.npartitions or any(p not in where for p in current):
            raise RuntimeError(
                "dask-cumbatch cannot tell which planned partitions this selection holds; "
                "select partitions of the frame before batching it, or compute the whole result"
            )
        return [where[p] for p in current]

    def _task(self, name, index: int) -> Task:
        args = [self._blockwise_arg(op, index) for op in self.args]
        kwargs = {k: v for k, v in (self.kwargs or {}).items() if k != "_planned"}
        kwargs["partition_info"] = {"number": self._plan_numbers[index], "division": self.divisions[index]}
        return Task(name, self.func, *args, **kwargs)


def read_paths(ddf) -> list:
    """The ``path`` operands of the reads (``read_parquet``, ``read_csv``) under ``ddf``.

    >>> import dask.dataframe as dd, pandas as pd
    >>> read_paths(dd.from_pandas(pd.DataFrame({"w": [1]}), npartitions=1))
    []
    """
    paths = []
    for node in ddf.expr.walk():
        if "path" in getattr(node, "_parameters", ()):
            value = node.operand("path")
            paths.extend([value] if isinstance(value, str) else list(value))
        elif "iterables" in getattr(node, "_parameters", ()):  # read_csv: blocks of opened files
            paths.extend(dict.fromkeys(_opened_paths(node.operand("iterables"))))
    return paths


def _opened_paths(value, depth: int = 0):
    """The paths of the fsspec files that ``read_csv``'s block tasks open, in order."""
    from fsspec.core import OpenFile

    if isinstance(value, OpenFile):
        protocol = value.fs.protocol if isinstance(value.fs.protocol, str) else value.fs.protocol[0]
        yield value.path if protocol in ("file", "local") else value.fs.unstrip_protocol(value.path)
    elif depth < 4 and isinstance(value, (list, tuple)):
        for v in value:
            yield from _opened_paths(v, depth + 1)
    elif depth < 4 and hasattr(value, "args") and hasattr(value, "func"):  # a task: its arguments
        yield from _opened_paths(list(value.args), depth + 1)


def row_wise_read(ddf):
    """The one ``read_parquet`` expression under ``ddf`` when every other step is row-wise
    (blockwise, not a ``map_partitions`` nor another read), else None. Dask has no public way to
    ask which reads a collection is made of, nor whether its steps are row-wise.

    >>> import dask.dataframe as dd, pandas as pd
    >>> row_wise_read(dd.from_pandas(pd.DataFrame({"w": [1]}), npartitions=1)) is None
    True
    """
    from dask.dataframe.dask_expr.io.io import IO
    from dask.dataframe.dask_expr.io.parquet import ReadParquet

    reads = []
    for node in ddf.expr.walk():
        if isinstance(node, ReadParquet):
            reads.append(node)
        elif isinstance(node, (IO, MapPartitions)) or not isinstance(node, Blockwise):
            return None
    if len(reads) != 1 or reads[0].operand("_partitions"):
        return None
    return reads[0]


def over_files(ddf, paths: list):
    """``ddf``, whose one read :func:`row_wise_read` finds, over ``paths`` instead of its own files
    (the read's ``path`` operand substituted, its cached dataset info dropped); a frame without
    such a read raises ``ValueError``."""
    read = row_wise_read(ddf)
    if read is None:
        raise ValueError("this DataFrame is not one read_parquet under row-wise steps: "
                         "it cannot be restricted to some of its files")
    changes = {"path": list(paths), "_dataset_info_cache": None}
    new = read.substitute_parameters({k: v for k, v in changes.items() if k in read._parameters})
    return new_collection(ddf.expr.substitute(read, new))
