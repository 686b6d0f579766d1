"""Dask graph building: the summary pass, the scan, and the finish as narrow Dask tasks.

Every public operation is three steps (DESIGN.md "The parallel algorithm"):

1. :func:`plan_partitions` maps :func:`~dask_cumbatch.scan.summarize` over the partitions and
   gathers the small summaries into one place (one ``dask.compute``), where
   :func:`~dask_cumbatch.scan.scan` carries the state through them. The graph is flat: one
   task per partition plus the gather, whatever the partition count.
2. The finish (:func:`batch_frame`, :func:`ids_series`) is one task per partition that reads its
   partition again (from the source: nothing is persisted) and its small :class:`Entry`.
3. :func:`repartition` aligns partitions to batch boundaries from the entries alone: output
   partition k depends only on input k and the following partitions its last batch reaches.
"""
from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask import delayed

from . import scan as sc
from .options import BatchOptions, weight_kind

WEIGHT_COLUMN = "__cumbatch_weight__"


@dataclass
class Prepared:
    """A Dask frame ready for batching: the weight is a column, options resolved."""

    ddf: dd.DataFrame
    opts: BatchOptions
    is_float: bool
    temp_weight: str | None  # the temporary weight column to drop from outputs


def prepare_frame(ddf: dd.DataFrame, weight, opts: BatchOptions) -> Prepared:
    """Validate the options against the frame's schema (no data is read)."""
    temp = None
    if isinstance(weight, (dd.Series, pd.Series)):
        temp = WEIGHT_COLUMN
        ddf = ddf.assign(**{WEIGHT_COLUMN: weight})
        opts = opts.with_(weight=WEIGHT_COLUMN)
    meta = ddf._meta
    opts.check_columns(meta.columns, meta.dtypes)
    if opts.device == "gpu":
        from .gpu import require_gpu

        require_gpu()
    return Prepared(ddf, opts, weight_kind(meta.dtypes[opts.weight]) == "float", temp)


def _partitions(prep: Prepared) -> list:
    return prep.ddf.to_delayed(optimize_graph=True)


def plan_partitions(prep: Prepared, start: sc.Carry | None = None) -> sc.PartitionPlan:
    """Summaries (one pass over the data) and the scan; eager, like ``set_index``'s divisions.

    ``start`` continues from the exact state a previous plan ended in (incremental export).
    """
    parts = _partitions(prep)
    opts, is_float = prep.opts, prep.is_float
    summaries = dask.compute(*[delayed(sc.summarize)(p, opts, is_float) for p in parts])

    def load(k):
        return parts[k].compute()

    plan = sc.scan(summaries, opts, is_float, load, start=start)
    if opts.mode == "floor" and opts.max_rows:
        caps = dask.compute(
            *[delayed(sc.floor_cap_summary)(p, opts, is_float, e) for p, e in zip(parts, plan.entries)]
        )
        plan = sc.scan_floor_caps(caps, plan, opts)
    return plan


def _from_parts(tasks, meta, divisions):
    return dd.from_delayed(tasks, meta=meta, divisions=divisions, verify_meta=False)


def ids_series(prep: Prepared, plan: sc.PartitionPlan) -> dd.Series:
    """The finish as a lazy Series of batch ids with the input's divisions."""
    opts, is_float = prep.opts, prep.is_float
    dtype = "Int64" if opts.invalid == "skip" else "int64"
    meta = pd.Series(pd.array([], dtype=dtype), index=prep.ddf._meta.index, name=opts.name)
    tasks = [
        delayed(sc.finish_ids)(p, opts, is_float, e)
        for p, e in zip(_partitions(prep), plan.entries)
    ]
    return _from_parts(tasks, meta, prep.ddf.divisions)


def _finished_frames(prep: Prepared, plan: sc.PartitionPlan) -> list:
    opts, is_float = prep.opts, prep.is_float
    return [
        delayed(sc.finish_frame)(p, opts, is_float, e, prep.temp_weight)
        for p, e in zip(_partitions(prep), plan.entries)
    ]


def _frame_meta(prep: Prepared) -> pd.DataFrame:
    meta = prep.ddf._meta
    if prep.temp_weight:
        meta = meta.drop(columns=[prep.temp_weight])
    return meta.assign(**{prep.opts.name: np.array([], dtype=np.int64)})


def batch_frame(prep: Prepared, plan: sc.PartitionPlan) -> dd.DataFrame:
    """The input's batched rows with the id column, partition for partition (skipped rows dropped)."""
    divisions = prep.ddf.divisions if not prep.opts.sort_window else (None,) * (prep.ddf.npartitions + 1)
    return _from_parts(_finished_frames(prep, plan), _frame_meta(prep), divisions)


def id_ranges(plan: sc.PartitionPlan) -> list[tuple[int, int]]:
    """For each input partition, the superset ``[lo, hi]`` of batch ids its rows can hold."""
    bases = [e.carry.batches for e in plan.entries] + [plan.end_state.batches]
    return [(bases[j] - 1, bases[j + 1] - 1) for j in range(len(plan.entries))]


def output_ranges(plan: sc.PartitionPlan, batches_per_partition: int | None):
    """The id range ``[lo, hi]`` of each output partition (only ranges holding a batch)."""
    first = plan.entries[0].carry.batches if plan.entries else 0
    end = plan.end_state.batches
    if batches_per_partition:
        return [(lo, min(lo + batches_per_partition, end) - 1) for lo in range(first, end, batches_per_partition)]
    bases = [e.carry.batches for e in plan.entries] + [end]
    return [(bases[k], bases[k + 1] - 1) for k in range(len(plan.entries))]


def _select(frames, lo, hi, name):
    pieces = [f[(f[name].to_numpy() >= lo) & (f[name].to_numpy() <= hi)] for f in frames]
    return pd.concat(pieces) if len(pieces) > 1 else pieces[0]


def _select_indexed(frames, lo, hi, name):
    return _select(frames, lo, hi, name).set_index(name)


def repartition(prep: Prepared, plan: sc.PartitionPlan, batches_per_partition=None, index=False):
    """Partitions that hold whole batches, without a shuffle (DESIGN.md "Repartitioning").

    Output partition k takes the batches whose ids fall in its range; it depends on the input
    partitions whose id ranges overlap it (itself and the continuation of its last batch).
    With ``index=True`` the batch id becomes the index and the divisions are known.
    """
    frames = _finished_frames(prep, plan)
    ranges = output_ranges(plan, batches_per_partition)
    sources = id_ranges(plan)
    sizes = [e for e in range(len(plan.entries))]
    nonempty = [_has_rows(plan, j) for j in sizes]
    meta = _frame_meta(prep)
    name = prep.opts.name
    tasks, kept = [], []
    for lo, hi in ranges:
        if index and hi < lo:
            continue
        deps = [frames[j] for j, (a, b) in enumerate(sources) if nonempty[j] and a <= hi and b >= lo]
        if not deps:
            deps = [delayed(meta.copy)()]
        tasks.append(delayed(_select_indexed if index else _select)(deps, lo, hi, name))
        kept.append((lo, hi))
    if not tasks:
        return _from_parts([delayed(meta.copy)()], meta.set_index(name) if index else meta, (None, None))
    if index:
        divisions = tuple(lo for lo, _ in kept) + (kept[-1][1],)
        return _from_parts(tasks, meta.set_index(name), divisions)
    return _from_parts(tasks, meta, (None,) * (len(tasks) + 1))


def _has_rows(plan, j) -> bool:
    entries = plan.entries
    nxt = entries[j + 1].carry.position if j + 1 < len(entries) else plan.end_state.position
    return nxt > entries[j].carry.position


def plan_stats(prep: Prepared, plan: sc.PartitionPlan) -> pd.DataFrame:
    """One row per batch: batch, rows, total, max, start, stop (global row positions)."""
    opts, is_float = prep.opts, prep.is_float
    parts = dask.compute(
        *[delayed(sc.finish_stats)(p, opts, is_float, e) for p, e in zip(_partitions(prep), plan.entries)]
    )
    stats = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {c: np.array([], dtype=np.int64) for c in ("batch", "rows", "total", "max", "start", "stop")}
    )
    if stats["batch"].duplicated().any():  # batches spanning partitions
        stats = stats.groupby("batch", sort=True, as_index=False).agg(
            rows=("rows", "sum"), total=("total", "sum"), max=("max", "max"),
            start=("start", "min"), stop=("stop", "max"),
        )
    return stats.reset_index(drop=True)


def iter_output_partitions(collection: dd.DataFrame, prefetch: int = 1):
    """Compute the partitions of ``collection`` in order, ``prefetch`` of them ahead.

    At most ``prefetch + 1`` computed partitions are held at once.
    """
    parts = collection.to_delayed(optimize_graph=True)
    if prefetch < 0:
        raise ValueError(f"prefetch must be >= 0, got {prefetch}")
    if prefetch == 0:
        for p in parts:
            yield p.compute()
        return
    with cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cumbatch-prefetch") as pool:
        pending = [pool.submit(p.compute) for p in parts[:prefetch]]
        for k in range(len(parts)):
            if k + prefetch < len(parts):
                pending.append(pool.submit(parts[k + prefetch].compute))
            yield pending.pop(0).result()


def split_batches(frame: pd.DataFrame, name: str):
    """Yield ``(batch_id, rows)`` for consecutive runs of the id column of ``frame``."""
    if len(frame) == 0:
        return
    ids = frame[name].to_numpy()
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [len(ids)]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield int(ids[a]), frame.iloc[a:b]
