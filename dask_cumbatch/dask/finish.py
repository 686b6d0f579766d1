"""The finish: one task per partition that reads its partition again and its plan entry.

:func:`ids_series`, :func:`batch_frame` and :func:`plan_stats` map the engine's finish
(``finish_ids``, ``finish_frame``, ``finish_stats``) over the frame, each task numbered by the
planned partition it reads, also after Dask pushed a partition selection below it.
"""
from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd

from ..dask_compat import renumbered, source_partitions, without_idle_string_conversion
from ..engine import PartitionPlan, finish_frame, finish_ids, finish_stats
from .prepared import Prepared, entry_table, task_spec


def _finish(func):
    def task(df, table, spec, partition_info=None, **extra):
        entry = table.entries[partition_info["number"]]
        return func(df, spec.ctx, entry, **extra)

    task.__name__ = f"cumbatch-{func.__name__.replace('_', '-')}"
    return task


_finish_ids = _finish(finish_ids)
_finish_frame = _finish(finish_frame)
_finish_stats = _finish(finish_stats)


def _map_finish(prep: Prepared, plan: PartitionPlan, task, meta, **kw):
    table = entry_table(plan)
    mapped = without_idle_string_conversion(prep.ddf).map_partitions(
        task, table, task_spec(prep), meta=meta, enforce_metadata=False, align_dataframes=False, **kw
    )
    return renumbered(mapped, source_partitions(prep.ddf.expr))


def ids_series(prep: Prepared, plan: PartitionPlan) -> dd.Series:
    """The finish as a lazy Series of batch ids with the input's divisions."""
    dtype = "Int64" if prep.opts.invalid == "skip" else "int64"
    meta = pd.Series(pd.array([], dtype=dtype), index=prep.ddf._meta.index, name=prep.opts.name)
    return _map_finish(prep, plan, _finish_ids, meta)


def frame_meta(prep: Prepared) -> pd.DataFrame:
    meta = prep.ddf._meta
    if prep.temp_weight:
        meta = meta.drop(columns=[prep.temp_weight])
    return meta.assign(**{prep.opts.name: np.array([], dtype=np.int64)})


def batch_frame(prep: Prepared, plan: PartitionPlan) -> dd.DataFrame:
    """The input's batched rows with the id column, partition for partition (skipped rows dropped)."""
    kw = {"clear_divisions": True} if prep.opts.sort_window else {}
    return _map_finish(prep, plan, _finish_frame, frame_meta(prep), weight_column=prep.temp_weight, **kw)


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
