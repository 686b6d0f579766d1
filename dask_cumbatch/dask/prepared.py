"""A frame ready for batching (:class:`Prepared`) and what every task of a pass carries.

:func:`prepare_frame` checks the options against the frame's schema before any data is read;
:func:`task_spec` is the data-free part of a :class:`Prepared` that travels with each task, and
:func:`entry_table` ships a plan's entries to the tasks as one shared key.
"""
from __future__ import annotations

import uuid

import dask.dataframe as dd
import pandas as pd
from dask import delayed
from dask.delayed import Delayed

from ..engine import BatchContext, PartitionPlan, backend_for
from ..options import BatchOptions, weight_kind


WEIGHT_COLUMN = "__cumbatch_weight__"


class Prepared:
    """A Dask frame ready for batching: the weight is a column, options resolved, and the
    call's :class:`~dask_cumbatch.engine.BatchContext` (``ctx``) that every engine step takes.

    A plain class (not a dataclass) so Dask passes it to tasks as-is, without traversing it.
    """

    __slots__ = ("ddf", "ctx", "temp_weight")

    def __init__(self, ddf, ctx: BatchContext, temp_weight):
        self.ddf = ddf
        self.ctx = ctx
        self.temp_weight = temp_weight  # the temporary weight column to drop from outputs

    @property
    def opts(self) -> BatchOptions:
        """The call's options (``ctx.opts``)."""
        return self.ctx.opts

    @property
    def is_float(self) -> bool:
        """Whether the weights are floats (``ctx.is_float``)."""
        return self.ctx.is_float

    def __getstate__(self):
        return {"ddf": None, "ctx": self.ctx, "temp_weight": self.temp_weight}

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
    return Prepared(ddf, BatchContext(opts, weight_kind(meta.dtypes[opts.weight]) == "float"), temp)


def task_spec(prep: Prepared, ctx: BatchContext | None = None) -> Prepared:
    """The data-free part of ``prep`` that travels with every task (with ``ctx`` instead of
    its own context, where given: a summary pass's head budget, say)."""
    return Prepared(None, ctx or prep.ctx, prep.temp_weight)


def entry_table(plan: PartitionPlan) -> Delayed:
    """The plan's entries as one Delayed key; named, not tokenized (hashing the entries costs
    time that grows with the partition count, docs/performance.md), and a plan is a new object
    each time anyway."""
    return delayed(EntryTable(plan.entries), name=f"cumbatch-entries-{uuid.uuid4().hex}")
