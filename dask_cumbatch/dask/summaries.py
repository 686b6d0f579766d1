"""The summary pass and the scan: :func:`plan_partitions`, eager, one pass over the data.

Maps :func:`~dask_cumbatch.engine.summarize` over the partitions (or, for an in-memory
frame, over slices of its weight column: :mod:`dask_cumbatch.dask.in_memory`), gathers the
small summaries into one place and runs :func:`~dask_cumbatch.engine.scan` through them in the
caller, reading partitions again only for the scan's fallback walk (:class:`_ReadAhead`).
"""
from __future__ import annotations

import sys

import dask
import pandas as pd

from ..engine import Carry, PartitionPlan, extra_summary, head_bytes_for, needs_extra_pass, scan, scan_extra, summarize
from . import in_memory
from .gather import SummarySource, gather
from .prepared import Prepared, entry_table, task_spec
from .scheduler import active_client


def _summarize_one(df, spec, partition_info=None):
    try:
        return summarize(df, spec.ctx)
    finally:
        _release_arrow_memory()


def _extra_summary_one(df, spec, table, partition_info=None):
    try:
        return extra_summary(df, spec.ctx, table.entries[partition_info["number"]])
    finally:
        _release_arrow_memory()


def _release_arrow_memory():
    """Hand the memory Arrow's pool kept after the read back to the system (see
    docs/export.md, "Out of core"): a worker near its limit would otherwise stay paused."""
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()


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


def plan_partitions(prep: Prepared, start: Carry | None = None) -> PartitionPlan:
    """Summaries (one pass over the data) and the scan; eager, like ``set_index``'s divisions.

    ``start`` continues from the exact state a previous plan ended in (incremental export).
    The summaries are gathered into one task and scanned in the caller: the graph is flat
    whatever the partition count.
    """
    source = SummarySource(prep.ddf, prep.opts)
    # Locally, whole partitions in the summaries cost no transfer and save the chain tables'
    # CPU; on a cluster they would travel to the gather task and the client.
    keeping = prep.ctx.keeping(head_bytes_for(prep.ddf.npartitions), prefer_whole=active_client() is None)
    spec = task_spec(prep, keeping)
    column = in_memory.in_memory_column(source.frame, prep.opts)
    if column is not None:
        summaries = in_memory.gather_column(column, spec)
    else:
        summaries = gather(source, _summarize_one, spec)
    plan = scan(summaries, prep.ctx, _ReadAhead(source), start=start)
    if needs_extra_pass(prep.opts):
        extra = gather(source, _extra_summary_one, task_spec(prep), entry_table(plan))
        plan = scan_extra(extra, plan, prep.ctx)
    return plan
