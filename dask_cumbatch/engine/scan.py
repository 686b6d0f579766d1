"""The map step and the mode-agnostic scan over partition summaries (docs/design.md, "Step 1: map" and "Step 2: scan").

:func:`summarize` reduces a pandas partition to a summary (the common fields here, the
rest from the mode's ``summarize`` hook). :func:`scan` carries the true state through the
summaries in one place, calling the mode's ``advance`` hook per partition, placing the
starts a cut-back moves into earlier partitions (backdating), and loading a partition again
(``load(k)``) only when its summary cannot decide. Modes are reached only through
:func:`~dask_cumbatch.engine.modes.mode_for`; kernels only through the backend.
"""
from __future__ import annotations

import bisect
from dataclasses import replace

import numpy as np
import pandas as pd

from ..options import BatchOptions, hinted  # noqa: F401  (BatchOptions: the examples)
from .context import BatchContext
from .modes import mode_for, needs_extra_pass
from .partition import bits_total, plain_weights, prepare, prepare_weights, unchecked_weights
from .state import Carry, Entry, OversizeError, PartitionPlan, Summary, WeightError, py_scalar

HEAD_BUDGET = 1 << 27  # bytes of weights kept over all partitions together (128 MiB)


def head_bytes_for(npartitions: int) -> int:
    """Bytes of (compacted) weights a partition's summary may keep.

    A partition whose weights fit is kept whole: the scan then never needs to look at it
    again. Together the summaries stay within ``HEAD_BUDGET`` bytes.

    >>> head_bytes_for(40), head_bytes_for(100_000)
    (3355443, 1342)
    """
    return int(HEAD_BUDGET // max(npartitions, 1))


def weight_total(w: np.ndarray):
    """The total of a partition's valid weights, as the summary records it and the finish checks
    it (``total_kind="sum"``; floor without ``by`` or ``max_rows`` checks its running sum instead).

    int64 weights: the exact int64 sum (modulo 2**64 where it would leave int64); float64:
    NumPy's sum in batching order, the same in both passes.

    >>> weight_total(np.array([2, 3])), weight_total(np.array([0.5, 0.25]))
    (5, 0.75)
    """
    return py_scalar(w.sum()) if len(w) else (0.0 if w.dtype.kind == "f" else 0)


def checked_total(arrays, kind: str):
    """The total of a prepared partition that the summary records and the finish compares, of
    ``kind`` ``"sum"`` (:func:`weight_total`) or ``"bits"`` (the weights' bit total, from the
    validity test's pass where it formed it; see ``Summary.total_kind``).

    >>> from dask_cumbatch.engine.partition import unchecked_weights
    >>> checked_total(unchecked_weights(np.array([0.5, 0.25])), "sum")
    0.75
    >>> checked_total(unchecked_weights(np.array([0.5, 0.25])), "bits") == bits_total(np.array([0.25, 0.5]))
    True
    """
    if kind == "bits":
        return arrays.bits if arrays.bits is not None else bits_total(arrays.w)
    return weight_total(arrays.w)


def summarize(df: pd.DataFrame, ctx: BatchContext) -> Summary:
    """The map step: one partition's summary (docs/design.md, "Step 1: map").

    ``ctx.head_bytes``/``ctx.prefer_whole`` tune how much of the partition the summary keeps
    (modes that keep rows, see :mod:`~dask_cumbatch.engine.modes.greedy`).

    >>> summarize(pd.DataFrame({"w": [3, 3, 3]}), BatchContext(BatchOptions.make("w", 6), False)).total
    9
    """
    ctx = ctx.for_rows(len(df))
    values = plain_weights(df, ctx.opts)
    summ = None if values is None else _quick_summary(values, df.index, ctx)
    if summ is not None:
        return summ
    return summarize_arrays(prepare(df, ctx.opts, backend=ctx.backend), df.index, ctx)


def summarize_weights(values: np.ndarray, index: pd.Index, ctx: BatchContext) -> Summary:
    """:func:`summarize` of a partition given as its weight values (float64 or int64 NumPy, no
    ``by`` keys) and its index: partitions sliced from one in-memory column, no pandas each.

    >>> summarize_weights(np.array([3, 3, 3]), pd.RangeIndex(3), BatchContext(BatchOptions.make("w", 6), False)).total
    9
    """
    ctx = ctx.for_rows(len(values))
    summ = _quick_summary(values, index, ctx)
    if summ is not None:
        return summ
    return summarize_arrays(prepare_weights(values, ctx.opts, backend=ctx.backend), index, ctx)


def _quick_summary(values, index, ctx) -> Summary | None:
    """The summary of plain weights (:func:`~dask_cumbatch.engine.partition.plain_weights`)
    from the mode's ``quick_summary``, whose kernel checks every weight as it reads it instead
    of a pass of its own; None where the mode has none or it declines (an invalid weight, say):
    the checked path then runs as always."""
    opts = ctx.opts
    quick = getattr(mode_for(opts), "quick_summary", None)
    if quick is None or opts.by or opts.sort_window or not len(values):
        return None
    arrays = unchecked_weights(values)
    summ = quick(arrays, ctx)
    if summ is None:
        return None
    return summarize_arrays(arrays, index, ctx, summ)


def summarize_arrays(arrays, index, ctx, summ=None) -> Summary:
    """The summary of a prepared partition (``index``: its row labels, for error messages);
    ``summ``: the mode's summary of it, when already formed."""
    opts = ctx.opts
    n = len(arrays.w)
    if summ is None:
        summ = mode_for(opts).summarize(arrays, ctx) if n else Summary()
    summ.n_all, summ.n = arrays.n_all, n
    if summ.total_kind in ("sum", "bits"):
        summ.total = checked_total(arrays, summ.total_kind)
    summ.first_key, summ.last_key = arrays.first_key, arrays.last_key
    if arrays.invalid is not None and arrays.invalid.any():
        summ.n_invalid = int(arrays.invalid.sum())
        summ.first_invalid = index[int(np.argmax(arrays.invalid))]
    if opts.oversize == "raise" and n:
        heavy = arrays.w > opts.limit
        if heavy.any():
            row = int(np.argmax(heavy))
            summ.first_oversize = (index[arrays.position(row)], arrays.w[row])
    return summ


def check_summaries(summaries, opts) -> int:
    """Raise for invalid or oversize rows (docs/design.md, "Invalid input"); return the skip count.

    >>> check_summaries([Summary(n_invalid=2)], BatchOptions.make("w", 5, invalid="skip"))
    2
    """
    skipped = sum(s.n_invalid for s in summaries)
    if skipped and opts.invalid == "raise":
        first = py_scalar(next(s.first_invalid for s in summaries if s.n_invalid))
        raise hinted(WeightError(
            f"weight column {opts.weight!r} has {skipped} invalid value(s) (NaN, inf, missing "
            f"or negative); the first is at index {first!r}. Clean them or pass invalid='skip'."
        ), ("invalid", "skip"))
    for s in summaries:
        if s.first_oversize is not None:
            label, value = (py_scalar(v) for v in s.first_oversize)
            raise hinted(OversizeError(
                f"row at index {label!r} has weight {value} above the limit {opts.limit} in "
                f"column {opts.weight!r}; pass oversize='allow' to put such rows alone in a batch"
            ), ("oversize", "allow"))
    return skipped


def scan(summaries, ctx: BatchContext, load, start: Carry | None = None) -> PartitionPlan:
    """Carry the true state through the partition summaries (step 2), in one place.

    ``load(k)`` returns partition k as pandas; it is called only for partitions whose
    summary cannot decide (then the mode walks the partition whole from the true state).

    >>> ctx = BatchContext(BatchOptions.make("w", 6), False)
    >>> parts = [pd.DataFrame({"w": [3, 3]}), pd.DataFrame({"w": [3]})]
    >>> plan = scan([summarize(p, ctx) for p in parts], ctx, parts.__getitem__)
    >>> plan.first_ids, plan.n_batches
    ([0, 1], 2)
    """
    opts = ctx.opts
    skipped = check_summaries(summaries, opts)
    mode = mode_for(opts)
    ctx = ctx.for_rows(sum(s.n for s in summaries))
    carry = replace(start) if start is not None else Carry()
    entries, walked = [], []
    offsets = []  # global position (batched rows) of each partition's first row
    all_offset = 0
    backdated_prior = 0
    for k, summ in enumerate(summaries):
        entries.append(Entry(carry=carry, all_offset=all_offset, n_all=summ.n_all, total=summ.total,
                             total_kind=summ.total_kind, partition=k, kept=summ.kept,
                             long_batches=summ.long_batches, exact_floor=summ.exact_floor))
        offsets.append(carry.position)
        all_offset += summ.n_all
        if summ.n == 0:
            continue
        step = mode.advance(summ, carry, ctx, _loader(load, k, ctx, walked))
        carry = step.carry
        if step.backdated is not None:
            backdated_prior = _backdate(entries, offsets, offsets[k] + step.backdated, backdated_prior)
            carry = replace(carry, batches=carry.batches + 1)
    n_rows = carry.position - (start.position if start else 0)
    n_batches = carry.batches - (start.batches if start else 0)
    return PartitionPlan(entries, carry, n_batches, n_rows, skipped, backdated_prior, walked,
                         backend=ctx.backend.name)


def _loader(load, k, ctx, walked):
    """``load()`` for the mode: partition k's arrays read again (by the scan's backend), recorded as walked."""
    def load_arrays():
        walked.append(k)
        return prepare(load(k), ctx.opts, backend=ctx.backend)

    return load_arrays


def _backdate(entries, offsets, pos, backdated_prior) -> int:
    """Place a start that a cut-back moved to global position ``pos`` (before the partition).

    The partition holding ``pos`` gets a forced start and every later entry one more batch;
    a start before the first partition (incremental runs) shifts every entry.
    """
    j = bisect.bisect_right(offsets, pos) - 1
    if j < 0 or pos < offsets[0]:
        for e in entries:
            e.carry = replace(e.carry, batches=e.carry.batches + 1)
        return max(backdated_prior, offsets[0] - pos)
    entries[j].forced = entries[j].forced + (pos - offsets[j],)
    for e in entries[j + 1:]:
        e.carry = replace(e.carry, batches=e.carry.batches + 1)
    return backdated_prior


def extra_summary(df, ctx: BatchContext, entry: Entry):
    """The mode's second summary pass over one partition (see :func:`needs_extra_pass`).

    >>> ctx = BatchContext(BatchOptions.make("w", 6, mode="floor", max_rows=2), False)
    >>> df = pd.DataFrame({"w": [1, 1, 1]})
    >>> plan = scan([summarize(df, ctx)], ctx, lambda k: df)
    >>> extra_summary(df, ctx, plan.entries[0]).after_caps
    1
    """
    ctx = ctx.for_rows(len(df))
    arrays = prepare(df, ctx.opts, checked=True, backend=ctx.backend)
    return mode_for(ctx.opts).extra_summary(arrays, entry, ctx)


def scan_extra(summaries, plan: PartitionPlan, ctx: BatchContext) -> PartitionPlan:
    """Fold the second pass's summaries into the plan (the mode's ``scan_extra`` hook).

    >>> ctx = BatchContext(BatchOptions.make("w", 6, mode="floor", max_rows=2), False)
    >>> df = pd.DataFrame({"w": [1, 1, 1]})
    >>> plan = scan([summarize(df, ctx)], ctx, lambda k: df)
    >>> scan_extra([extra_summary(df, ctx, plan.entries[0])], plan, ctx).n_batches
    2
    """
    return mode_for(ctx.opts).scan_extra(summaries, plan, ctx.opts)


def plan_frame(df: pd.DataFrame, ctx: BatchContext, start: Carry | None = None) -> PartitionPlan:
    """Summary, scan and finish plan of one pandas frame, without Dask (pandas input).

    >>> plan_frame(pd.DataFrame({"w": [3, 3, 3]}), BatchContext(BatchOptions.make("w", 6), False)).n_batches
    2
    """
    # nothing travels: keep the frame whole in its summary rather than build a chain table
    summ = summarize(df, ctx.keeping(HEAD_BUDGET, prefer_whole=True))
    plan = scan([summ], ctx, lambda k: df, start=start)
    if needs_extra_pass(ctx.opts):
        plan = scan_extra([extra_summary(df, ctx, plan.entries[0])], plan, ctx)
    return plan
