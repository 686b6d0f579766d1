"""Partitions aligned to batch boundaries from the plan's entries alone, without a shuffle.

Output partition k depends only on input partition k and the following partitions its last
batch reaches (docs/how-it-works.md, the repartition figure).
"""
from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask import delayed

from ..engine import PartitionPlan
from .finish import batch_frame, frame_meta
from .prepared import Prepared


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


def _from_parts(tasks, meta, divisions):
    return dd.from_delayed(tasks, meta=meta, divisions=divisions, verify_meta=False)


def repartition(prep: Prepared, plan: PartitionPlan, batches_per_partition=None, index=False):
    """Partitions that hold whole batches, without a shuffle (docs/design.md, "Repartitioning").

    Output partition k takes the batches whose ids fall in its range; it depends on the input
    partitions whose id ranges overlap it (itself and the continuation of its last batch).
    With ``index=True`` the batch id becomes the index and the divisions are known.
    """
    return repartition_ranges(prep, plan, output_ranges(plan, batches_per_partition), index=index)


def repartition_ranges(prep: Prepared, plan: PartitionPlan, ranges, index=False):
    """:func:`repartition` with the output partitions' id ranges ``[(lo, hi), ...]`` given."""
    frames = batch_frame(prep, plan).to_delayed(optimize_graph=True)
    sources = id_ranges(plan)
    meta = frame_meta(prep)
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
    meta = _batch_bytes(frame_meta(prep), prep.opts.name)
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
