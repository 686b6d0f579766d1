"""Floor: the fixed grid of ``floor(S / limit)``, risky rows, and the ``max_rows`` cap pass.

The grid needs only the running sum carried in; the summary keeps the few rows heavy enough
to skip a grid cell so the scan can count cells exactly. With ``max_rows`` a second pass
(``extra_summary``/``scan_extra``) counts the row-cap starts once the grid starts are fixed.
Integer weights against a limit beyond int64: every running sum that fits int64 lies in cell
0 (the float limit becomes infinite), and a sum that does not raises ``OverflowError``.

Cells are exact (docs/design.md, "Exactness"): ``floor(S / limit)`` with ``S`` the real sum of the
weights. Integer sums, and integer-valued float sums below 2**53 against an integer-valued or
power-of-two limit, are exact in int64/float64 and take the plain kernels. Anything else (a
fractional weight, a sum from 2**53 on, another limit) takes the exact kernels
(``floor_exact_walk``, ``floor_exact_risky``): the partition's running sum as an exact
double-double, the carried sum ``S`` exact (a ``Fraction`` where float64 cannot hold it), and
only the rows whose float quotient lies within rounding of an integer decided exactly. Where
even a double-double cannot hold a partition's sums (weights many orders of magnitude apart)
the partition is walked in Python with ``Fraction``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from ..backends import host_backend
from ..backends.results import FloorWalk
from ..partition import row0_group_change, true_groups
from ..state import Carry, PartitionPlan, Summary, input_changed, overflow_error, py_scalar as _py
from . import Step
from .paths import Path, choose_path

FLOAT_GRID_SAFE = 2.0**40  # beyond S/limit of this the float grid is walked, not counted
RISKY_FRACTION = 1.0 - 2.0**-10
I64_MAX = np.iinfo(np.int64).max
CELL_MAX = 1 << 62  # as the kernels' CELL_MAX: grid cells saturate here
SCALAR_RISKY = 16  # up to this many risky rows a partition's skipped cells are counted in Python
PLAIN_SUMS = 2.0**53  # integer-valued float sums below this are exact
PLAIN_LIMIT_RANGE = (2.0**-900, 2.0**900)  # power-of-two limits that divide such sums exactly
EXACT_NEAR = 2.0**-47  # relative slack of a float quotient of an exact sum (see _exact_skips)


@dataclass
class FloorSummary(Summary):
    """A floor partition's summary: its first group segment's sums and risky rows, and the rest.

    >>> FloorSummary(n=2, g_first=2).rest_starts
    0
    """

    g_first: int = 0
    risky_p: np.ndarray | None = None
    risky_w: np.ndarray | None = None
    p_last: float | int = 0
    t_first: float | int = 0
    rest_starts: int = 0
    rest_s: float | int = 0
    rest_cell: float | int = 0
    risky_lo: np.ndarray | None = None  # exact summaries: risky_p + risky_lo is the exact sum


class FloorMode:
    """The hooks of mode "floor" (see :mod:`dask_cumbatch.engine.modes`).

    >>> import pandas as pd, dask_cumbatch
    >>> pd.DataFrame({"w": [3, 3, 3, 3]}).cumbatch.ids("w", 6, mode="floor").tolist()
    [0, 0, 1, 1]
    """

    def summarize(self, arrays, ctx):
        """Sums and risky rows of the first group segment, starts and end state of the rest."""
        summ = FloorSummary()
        _summarize_floor(summ, arrays, ctx)
        if _quick_finish(ctx) and not summ.exact_floor:  # else the scan sums them (NumPy)  # both passes form the running sum: floor_risky's here
            summ.total, summ.total_kind = summ.t_first, "running"
        return summ

    def quick_summary(self, arrays, ctx):
        """:meth:`summarize` of weights not checked yet (see ``engine.scan``), from one kernel
        that checks them as it sums; None where it does not apply or declines."""
        be = ctx.backend
        path = choose_path(SUMMARY_PATHS, SummaryCase(arrays, ctx, unchecked=True), be)
        if path.name not in ("quick_int", "quick_float"):
            return None
        w = arrays.w
        kernel = be.floor_summary_int if path.name == "quick_int" else be.floor_summary_float
        n = len(w)
        p_out, w_out = np.empty(n, dtype=w.dtype), np.empty(n, dtype=w.dtype)
        res = kernel(w, w.dtype.type(_threshold(ctx)), p_out, w_out)
        if not res.done:
            return None
        return FloorSummary(g_first=n, risky_p=p_out[:res.k].copy(), risky_w=w_out[:res.k].copy(),
                            p_last=_py(res.p_last), t_first=_py(res.total), total=_py(res.total), total_kind="running")

    def advance(self, summ, carry, ctx, load) -> Step:
        """The carried running sum and cell after the partition, counting the grid cells."""
        return Step(_scan_floor(summ, carry, ctx, load))

    def finish(self, arrays, entry, ctx):
        """Final ids: the grid from the true running sum (plus the row caps with ``max_rows``)."""
        carry, be = entry.carry, ctx.backend
        path = choose_path(FINISH_PATHS, FinishCase(entry, ctx), be).name
        if path in ("quick_exact", "quick"):
            if path == "quick_exact":
                ids, total = _exact_quick_ids(arrays, ctx, carry,
                                              want_total=entry.total_kind == "running")
            else:
                ids, total = _quick_ids(arrays, ctx, carry)
            _check_running_total(entry, arrays, total)
            return ids
        _check_running_total(entry, arrays, None, be)
        exact = not _plain_finish(entry, ctx)
        if path == "walk":
            return _floor_partition_flags(arrays, ctx, carry, base=carry.batches, exact=exact)
        flags = _floor_partition_flags(arrays, ctx, carry, exact=exact)
        starts = be.asarray(np.zeros(len(flags), dtype=bool))
        be.cap_walk(be.asarray(flags), entry.floor_rows or 0, ctx.opts.max_rows, starts)
        return be.to_numpy(be.starts_to_ids(starts, carry.batches))

    def needs_extra_pass(self, opts) -> bool:
        """Row caps on a grid: a second pass once the running sum at each partition is known."""
        return bool(opts.max_rows)

    def extra_summary(self, arrays, entry, ctx) -> "CapSummary":
        """Second pass for ``max_rows``: grid starts are fixed once the running sum is known."""
        flags = _floor_partition_flags(arrays, ctx, entry.carry,
                                       exact=not _plain_finish(entry, ctx))
        be, n = ctx.backend, len(flags)
        first = int(np.argmax(flags)) if flags.any() else n
        if first == n:
            return CapSummary(n, n, 0, 0)
        out = be.asarray(np.zeros(n - first, dtype=bool))
        caps = be.cap_walk(be.asarray(flags[first:]), 0, ctx.opts.max_rows, out)
        return CapSummary(n, first, int(caps.count) - int(flags[first:].sum()), int(caps.rows))

    def scan_extra(self, caps, plan: PartitionPlan, opts) -> PartitionPlan:
        """Add the row-cap starts to a floor plan; fills ``Entry.floor_rows``."""
        return _scan_caps(caps, plan, opts)


@dataclass
class CapSummary:
    """Floor with ``max_rows``, second pass: where the grid starts fall once S is known.

    >>> CapSummary(n=4, first_flag=4, after_caps=0, after_rows=0).n
    4
    """

    n: int
    first_flag: int  # first grid/group start (n if none)
    after_caps: int  # row-cap starts from first_flag on
    after_rows: int  # rows of the open batch at the end, counted from first_flag on


@dataclass
class SummaryCase:
    """What floor's summary path is chosen by: the partition's weights, the run's options, and
    whether the weights are checked yet (``quick_summary`` sees them unchecked).

    >>> SummaryCase(None, None).unchecked
    False
    """

    arrays: object
    ctx: object
    unchecked: bool = False


def _unchecked_int64(case) -> bool:
    """Int64 weights not checked yet, no ``by`` or ``max_rows`` (the branch-free finish applies)."""
    return case.unchecked and case.arrays.w.dtype.kind == "i" and _quick_finish(case.ctx)


def _unchecked_float64(case) -> bool:
    """Float64 weights not checked yet, no ``by`` or ``max_rows`` (the branch-free finish applies)."""
    return case.unchecked and case.arrays.w.dtype.kind != "i" and _quick_finish(case.ctx)


def _fractional_floats(case) -> bool:
    """Checked float weights, some not integer-valued: cells by the exact kernels."""
    be = case.ctx.backend
    return not case.unchecked and case.ctx.is_float and not _exact_kernels(be).floats_integral(be.to_numpy(case.arrays.w))


def _unchecked(case) -> bool:
    """Weights not checked yet that no quick path takes (``quick_summary`` returns None)."""
    return case.unchecked


def _checked(case) -> bool:
    """Checked weights (the general path: risky rows by ``floor_risky``, the rest by ``floor_walk``)."""
    return not case.unchecked


SUMMARY_PATHS = (
    Path("quick_int", _unchecked_int64, ("floor_ids_quick", "floor_summary_int")),
    Path("quick_float", _unchecked_float64, ("floor_ids_quick", "floor_summary_float")),
    Path("exact", _fractional_floats, ()),  # the exact kernels: the backend's, else the host's
    Path("risky", _checked, ("floor_risky", "floor_walk")),
    Path("declined", _unchecked, ()),  # quick_summary declines: the scan checks the weights first
)


@dataclass
class FinishCase:
    """What floor's finish path is chosen by: the partition's entry and the run's options.

    >>> FinishCase(None, None).entry is None
    True
    """

    entry: object
    ctx: object


def _branch_free_exact(case) -> bool:
    """No ``by`` or ``max_rows``, cells the plain kernels cannot give exactly (fractional floats, a limit like 0.1, sums from 2**53)."""
    return _quick_finish(case.ctx) and not _plain_finish(case.entry, case.ctx)


def _branch_free(case) -> bool:
    """No ``by`` or ``max_rows``: ids by the branch-free kernel."""
    return _quick_finish(case.ctx)


def _without_row_caps(case) -> bool:
    """No ``max_rows``: the grid walk gives the ids."""
    return not case.ctx.opts.max_rows


def _with_row_caps(case) -> bool:
    """``max_rows``: the grid walk's start flags, then the row caps."""
    return bool(case.ctx.opts.max_rows)


FINISH_PATHS = (
    Path("quick_exact", _branch_free_exact, ("floor_ids_quick",)),  # exact kernels: the backend's, else the host's
    Path("quick", _branch_free, ("floor_ids_quick",)),
    Path("walk", _without_row_caps, ("floor_walk",)),
    Path("walk_caps", _with_row_caps, ("floor_walk", "cap_walk")),
)


def _ctx(limit, is_float):
    """A floor context on the CPU for the examples here.

    >>> _ctx(6, False).opts.mode
    'floor'
    """
    from ...options import BatchOptions
    from ..context import BatchContext

    return BatchContext(BatchOptions.make("w", limit, mode="floor"), is_float).for_rows(None)


def floor_limits(ctx):
    """(float limit, integer limit or 0): integer cells for integer sums and an integer limit.

    Integer weights against a limit beyond int64 get an infinite float limit: cell 0 always.

    >>> floor_limits(_ctx(6, False)), floor_limits(_ctx(1e19, False))
    ((6.0, 6), (inf, 0))
    """
    return _limits(ctx.opts.limit, ctx.is_float)


@functools.lru_cache(maxsize=64, typed=True)
def _limits(lim, is_float: bool) -> tuple:
    """:func:`floor_limits` of a limit (memoised: it is asked ~14 times a partition)."""
    if not is_float and lim > I64_MAX:
        return math.inf, 0
    exact = not is_float and float(lim).is_integer() and lim < 2**63
    return float(lim), (int(lim) if exact else 0)


def _floor_flags(ctx, w, newgrp, s_in, cell_prev, has_prev, record, base=None, exact=False):
    """The grid walk of a partition from a carried state: ``(FloorWalk(count, s_out, cell,
    overflow), flags or ids)``; ``exact`` takes the exact kernels (see the module docstring)."""
    is_float, be = ctx.is_float, ctx.backend
    if exact:
        return _exact_flags(ctx, w, newgrp, s_in, cell_prev, has_prev, record, base)
    lim_f, lim_i = floor_limits(ctx)
    out = be.asarray(np.zeros(len(w) if record else 0, dtype=bool))
    ids = be.asarray(np.empty(len(w) if base is not None else 0, dtype=np.int64))
    s_in = np.float64(s_in) if is_float else np.int64(s_in)
    res = be.floor_walk(
        be.asarray(w), be.asarray(newgrp), s_in, np.int64(cell_prev), has_prev, lim_f, lim_i,
        not is_float, out, ids, base or 0,
    )
    return res, be.to_numpy(ids if base is not None else out)


def _cell(s, ctx):
    """The grid cell of running sum ``s``, computed exactly as the kernels' ``grid_cell`` does
    (saturating at ``CELL_MAX``, also where ``s / limit`` overflows to infinity).

    >>> _cell(7, _ctx(2, False)), _cell(1e9, _ctx(1e-300, True)) == CELL_MAX
    (3, True)
    """
    lim_f, lim_i = floor_limits(ctx)
    if lim_i:
        return int(s) // lim_i
    q = float(s) / lim_f  # Python floats divide as float64 does: the kernels' bits
    return CELL_MAX if q >= CELL_MAX else math.floor(q)


def _threshold(ctx):
    """The heaviest weight that cannot make the grid skip a cell."""
    is_float = ctx.is_float
    lim_f, lim_i = floor_limits(ctx)
    threshold = lim_i if lim_i else lim_f * RISKY_FRACTION
    return threshold if is_float else min(threshold, I64_MAX)


def _summarize_floor(summ, prep, ctx):
    opts, is_float, be = ctx.opts, ctx.is_float, ctx.backend
    w, newgrp, n = prep.w, prep.newgrp, len(prep.w)
    threshold = _threshold(ctx)
    changes = np.flatnonzero(newgrp)
    g = int(changes[0]) if len(changes) else n
    if choose_path(SUMMARY_PATHS, SummaryCase(prep, ctx), be).name == "exact":
        _summarize_exact(summ, prep, ctx, g)
        return
    p_out = be.asarray(np.empty(g, dtype=w.dtype))
    w_out = be.asarray(np.empty(g, dtype=w.dtype))
    risky = be.floor_risky(be.asarray(w), g, w.dtype.type(threshold), not is_float, p_out, w_out)
    p_out, w_out = be.to_numpy(p_out), be.to_numpy(w_out)
    if risky.overflow >= 0:
        raise overflow_error(opts)
    summ.g_first = g
    summ.risky_p, summ.risky_w = p_out[:risky.k].copy(), w_out[:risky.k].copy()
    summ.p_last, summ.t_first = _py(risky.p_last), _py(risky.total)
    _summarize_rest(summ, prep, ctx, g, exact=not _plain_cells(ctx))


def _summarize_rest(summ, prep, ctx, g, exact):
    """Starts, running sum and cell after the partition's first group change (from 0)."""
    opts = ctx.opts
    if g < len(prep.w):
        rest, _ = _floor_flags(ctx, prep.w[g:], prep.newgrp[g:], 0, 0, False, record=False, exact=exact)
        summ.rest_starts, summ.rest_s, summ.rest_cell = int(rest.count), _py(rest.s_out), _py(rest.cell)
        if rest.overflow >= 0:
            raise overflow_error(opts)


def _summarize_exact(summ, prep, ctx, g):
    """:func:`_summarize_floor` of fractional float weights: the risky rows (weight >= limit)
    with their exact running sums, and the exact sums the scan needs."""
    be = ctx.backend
    w = be.to_numpy(prep.w)
    lim_f, _ = floor_limits(ctx)
    ex = _exact_kernels(be)
    if g < 2 or not w[:g - 1].max() >= lim_f:  # no risky row: the exact total alone (in lanes)
        exact_sum = ex.floor_exact_sum(w, 0, g)
        total, ok = Fraction(exact_sum.hi) + Fraction(exact_sum.lo), exact_sum.ok
        summ.risky_p, summ.risky_lo, summ.risky_w = np.empty(0), np.empty(0), np.empty(0)
        last = total - Fraction(float(w[g - 1])) if g else total
    else:
        hi, lo, w_out = np.empty(g), np.empty(g), np.empty(g)
        risky = ex.floor_exact_risky(w, g, lim_f, hi, lo, w_out)
        k, ok = risky.k, risky.ok
        summ.risky_p, summ.risky_lo, summ.risky_w = hi[:k].copy(), lo[:k].copy(), w_out[:k].copy()
        total = Fraction(risky.total_hi) + Fraction(risky.total_lo)
        last = Fraction(risky.last_hi) + Fraction(risky.last_lo)
    if ok:
        summ.p_last, summ.t_first = _exact_out(last, True), _exact_out(total, True)
    else:
        _summarize_exact_py(summ, w[:g].tolist(), lim_f)
    summ.g_first, summ.exact_floor = g, True
    _summarize_rest(summ, prep, ctx, g, exact=True)


def _summarize_exact_py(summ, w: list, lim_f: float) -> None:
    """:func:`_summarize_exact` in Python ``Fraction`` arithmetic (sums beyond a double-double)."""
    p, p_last, risky_p, risky_w = Fraction(0), Fraction(0), [], []
    for i, x in enumerate(w):
        p_last = p
        if i < len(w) - 1 and x >= lim_f:
            risky_p.append(p)
            risky_w.append(x)
        p += Fraction(x)
    summ.risky_p, summ.risky_lo = np.array(risky_p, dtype=object), None
    summ.risky_w = np.array(risky_w, dtype=np.float64)
    summ.p_last, summ.t_first = _exact_out(p_last, True), _exact_out(p, True)


def _scan_floor(summ, carry, ctx, load):
    opts, is_float = ctx.opts, ctx.is_float
    row0_new = not carry.has_prev or row0_group_change(summ, carry, opts)
    base = 0 if row0_new else carry.s
    _check_grid(base, summ, ctx)
    if is_float and max(abs(float(base)), abs(float(base) + float(summ.t_first))) / float(opts.limit) > FLOAT_GRID_SAFE:
        return floor_walk_whole(load(), ctx, carry)
    if not _plain_scan(base, summ, ctx):
        return _scan_exact(summ, carry, base, row0_new, ctx)
    c0 = _cell(base, ctx)
    count = 1 if row0_new or c0 != carry.cell else 0
    add = (lambda a, b: float(a) + float(b)) if is_float else _checked_add(opts)
    c_last = _cell(add(base, summ.p_last), ctx)
    count += c_last - c0 - _skipped_cells(summ.risky_p, summ.risky_w, base, ctx)
    if summ.g_first < summ.n:
        count += summ.rest_starts
        s_out, cell = summ.rest_s, summ.rest_cell
    else:
        s_out, cell = add(base, summ.t_first), c_last
    s_out = float(s_out) if is_float else int(s_out)
    return Carry(
        batches=carry.batches + int(count), s=s_out, cell=cell, has_prev=True,
        key=summ.last_key, position=carry.position + summ.n,
    )


def _check_grid(base, summ, ctx) -> None:
    """Raise where a running sum of this partition may reach ``CELL_MAX`` grid cells.

    Cells that far out no longer fit the kernels' int64 cells (they saturate), so the grid
    would stop starting batches where the Floor rule of docs/design.md starts them: an error, never a
    silently different result. ``base + total`` bounds every running sum of the partition
    (weights are >= 0); the margin covers the rounding of the float sums. Integer cells (an
    integer limit with integer weights) never saturate.

    >>> _check_grid(0.0, Summary(total=1e8), _ctx(1e-300, True))
    Traceback (most recent call last):
    ValueError: mode='floor' cannot cut weight column 'w' at limit 1e-300: its running sums may reach 1e+08, 1e+308 times the limit, and floor tells at most 2**62 grid cells apart; use a larger limit or mode='greedy'
    """
    opts = ctx.opts
    lim_f, lim_i = floor_limits(ctx)
    if lim_i:
        return
    reach = max(float(base), 0.0) + float(summ.total)
    if reach / lim_f >= CELL_MAX * (1.0 - 2.0**-20):
        raise ValueError(
            f"mode='floor' cannot cut weight column {opts.weight!r} at limit {opts.limit}: its "
            f"running sums may reach {reach:.6g}, {reach / lim_f:.3g} times the limit, and floor tells "
            f"at most 2**62 grid cells apart; use a larger limit or mode='greedy'"
        )


def _skipped_cells(p, w, base, ctx) -> int:
    """How many grid cells the risky rows skip: a row moving the sum from cell a to cell
    b > a + 1 starts one batch, not b - a (vectorised :func:`_cell`, with the same arithmetic).

    >>> _skipped_cells(np.array([1, 4]), np.array([9, 1]), 0, _ctx(2, False))
    4
    """
    opts, is_float = ctx.opts, ctx.is_float
    if not len(p):
        return 0
    if len(p) <= SCALAR_RISKY:
        return _skipped_cells_scalar(p.tolist(), w.tolist(), base, ctx)
    if is_float:
        lo = np.float64(base) + p.astype(np.float64)
        hi = np.float64(base) + (p.astype(np.float64) + w.astype(np.float64))
    else:
        if int((p + w).max()) > I64_MAX - int(base):  # p + w fits: the segment's sums did
            raise overflow_error(opts)
        lo = np.int64(base) + p.astype(np.int64)
        hi = lo + w.astype(np.int64)
    jump = _cells(hi, ctx) - _cells(lo, ctx)
    return int((jump[jump > 1] - 1).sum())


def _skipped_cells_scalar(p: list, w: list, base, ctx) -> int:
    """:func:`_skipped_cells` for a few risky rows, in Python numbers (the same float64 and
    int64 arithmetic; NumPy calls on arrays of one or two rows cost the scan more:
    docs/performance.md, "Measured while building").

    >>> _skipped_cells_scalar([1, 4], [9, 1], 0, _ctx(2, False))
    4
    """
    opts, is_float = ctx.opts, ctx.is_float
    skipped = 0
    if is_float:
        base = float(base)
        for p_i, w_i in zip(p, w):
            jump = _cell(base + (p_i + w_i), ctx) - _cell(base + p_i, ctx)
            skipped += max(jump - 1, 0)
        return skipped
    base = int(base)
    for p_i, w_i in zip(p, w):
        if base + p_i + w_i > I64_MAX:  # p + w fits: the segment's sums did
            raise overflow_error(opts)
        jump = _cell(base + p_i + w_i, ctx) - _cell(base + p_i, ctx)
        skipped += max(jump - 1, 0)
    return skipped


def _cells(s: np.ndarray, ctx) -> np.ndarray:
    """:func:`_cell` of every running sum in ``s`` (int64 or float64), elementwise."""
    lim_f, lim_i = floor_limits(ctx)
    if lim_i:
        return s // lim_i
    with np.errstate(over="ignore"):
        q = np.floor(s.astype(np.float64) / np.float64(lim_f))
    return np.minimum(q, float(CELL_MAX)).astype(np.int64)


def _checked_add(opts):
    def add(a, b):
        total = int(a) + int(b)
        if total > I64_MAX:
            raise overflow_error(opts)
        return total
    return add


def floor_walk_whole(prep, ctx, carry):
    """Walk a whole floor partition's arrays from the true state (fallback for huge running sums)."""
    opts = ctx.opts
    grp = true_groups(prep, carry, opts)
    res, _ = _floor_flags(
        ctx, prep.w, grp, carry.s, carry.cell, carry.has_prev, record=False,
        exact=not _int_grid(ctx),  # rare: sums this far out are walked exactly
    )
    if res.overflow >= 0:
        raise overflow_error(opts)
    return Carry(
        batches=carry.batches + int(res.count), s=_py(res.s_out), cell=_py(res.cell), has_prev=True,
        key=prep.last_key, position=carry.position + len(prep.w),
    )


def _scan_caps(caps, plan: PartitionPlan, opts) -> PartitionPlan:
    R = opts.max_rows
    rows = plan.entries[0].carry.rows if plan.entries else 0
    extra = 0
    for entry, cap in zip(plan.entries, caps):
        entry.carry = replace(entry.carry, batches=entry.carry.batches + extra)
        entry.floor_rows = rows
        if cap.n == 0:
            continue
        if cap.first_flag == 0:
            before = 0
        else:
            before = (min(cap.first_flag, cap.n) + rows - 1) // R
        extra += before
        if cap.first_flag < cap.n:
            extra += cap.after_caps
            rows = cap.after_rows
        else:
            rows = (rows + cap.n - 1) % R + 1
    end = replace(plan.end_state, batches=plan.end_state.batches + extra, rows=rows)
    return replace(plan, end_state=end, n_batches=plan.n_batches + extra)


def _quick_finish(ctx) -> bool:
    """Whether the finish runs the branch-free kernel (no ``by`` or ``max_rows``, a backend that
    has it). Its running sum is then formed in both passes, so the summary records that as the
    total (``total_kind="running"``) instead of summing the weights once more."""
    opts, be = ctx.opts, ctx.backend
    return not opts.by and not opts.max_rows and be.floor_ids_quick is not None


def _check_running_total(entry, prep, total, be=None) -> None:
    """Raise if a ``"running"`` total differs from the summary's (``total`` None: sum it here
    with the summary's kernel, for a finish that did not form it)."""
    if entry.total_kind != "running" or entry.total is None or entry.n_all is None:
        return
    if total is None:
        w, is_int = prep.w, prep.w.dtype.kind != "f"
        never = np.int64(I64_MAX) if is_int else np.float64(np.inf)  # no row is recorded as risky
        none = be.asarray(np.empty(0, dtype=w.dtype))
        total = be.floor_risky(be.asarray(w), len(w), never, is_int, none, none).total if len(w) else 0
    if _py(total) != entry.total:
        raise input_changed(entry, prep.n_all, _py(total))


def _quick_ids(prep, ctx, carry):
    """Ids of a partition from the branch-free kernel (where :func:`_quick_finish`), and the
    partition's running total."""
    opts, is_float, be = ctx.opts, ctx.is_float, ctx.backend
    lim_f, lim_i = floor_limits(ctx)
    ids = be.asarray(np.empty(len(prep.w), dtype=np.int64))
    s_in = carry.s if carry.has_prev else 0
    s_in = np.float64(s_in) if is_float else np.int64(s_in)
    res = be.floor_ids_quick(be.asarray(prep.w), s_in, np.int64(carry.cell), carry.has_prev,
                             lim_f, lim_i, not is_float, carry.batches, ids)
    if res.overflow >= 0:
        raise overflow_error(opts)
    return be.to_numpy(ids), res.total


def _floor_partition_flags(prep, ctx, carry, base=None, exact=False):
    opts = ctx.opts
    grp = true_groups(prep, carry, opts)
    res, out = _floor_flags(
        ctx, prep.w, grp, carry.s, carry.cell, carry.has_prev,
        record=base is None, base=base, exact=exact,
    )
    if res.overflow >= 0:
        raise overflow_error(opts)
    return out


# --------------------------------------------------------------------------- exact cells
def _int_grid(ctx) -> bool:
    """Integer weights whose cells are integer arithmetic (an integer limit, or one beyond int64)."""
    is_float = ctx.is_float
    lim_f, lim_i = floor_limits(ctx)
    return not is_float and (lim_i > 0 or lim_f == math.inf)


def _limit_plain(lim_f: float) -> bool:
    """Whether float64 division gives exact cells of integer sums below ``PLAIN_SUMS``: an
    integer-valued limit (the quotient cannot round up to the next integer), or a power of two
    (the quotient is exact).

    >>> _limit_plain(4096.0), _limit_plain(0.5), _limit_plain(0.1)
    (True, True, False)
    """
    lo, hi = PLAIN_LIMIT_RANGE
    return lim_f.is_integer() or (math.frexp(lim_f)[0] == 0.5 and lo < lim_f < hi)


def _plain_cells(ctx) -> bool:
    """Whether the plain kernels' cells are exact for exact sums (integer-valued below 2**53)."""
    is_float = ctx.is_float
    return _int_grid(ctx) or (is_float and _limit_plain(floor_limits(ctx)[0]))


def _plain_float(x) -> bool:
    """An integer-valued float sum below ``PLAIN_SUMS`` (or the int 0 of a fresh group)."""
    return (isinstance(x, float) and x.is_integer() and x < PLAIN_SUMS) or (type(x) is int and x == 0)


def _plain_scan(base, summ, ctx) -> bool:
    """Whether the scan's plain arithmetic is exact for this partition from ``base``."""
    is_float = ctx.is_float
    if not is_float:
        return _int_grid(ctx)
    return (not summ.exact_floor and _plain_cells(ctx) and _plain_float(base)
            and float(base) + float(summ.t_first) < PLAIN_SUMS)


def _plain_finish(entry, ctx) -> bool:
    """Whether the finish may run the plain kernels: their cells are the exact ones."""
    is_float = ctx.is_float
    if _int_grid(ctx):
        return True
    if not is_float or entry.exact_floor or not _plain_cells(ctx) or entry.total is None:
        return False
    base = entry.carry.s if entry.carry.has_prev else 0.0
    return _plain_float(base) and float(base) + float(entry.total) < PLAIN_SUMS


def _exact_out(x, is_float):
    """An exact sum as the carry keeps it: a float where float64 holds it (an int for integer
    weights), else the ``Fraction``.

    >>> _exact_out(Fraction(3, 4), True), _exact_out(Fraction(1, 10), True)
    (0.75, Fraction(1, 10))
    """
    if not is_float:
        return int(x)
    try:
        f = float(x)
    except OverflowError:
        return x
    return f if f == x else x


def _exact_cell(s: Fraction, lim: Fraction) -> int:
    return min(math.floor(s / lim), CELL_MAX)


def _scan_exact(summ, carry, base, row0_new, ctx):
    """:func:`_scan_floor` in exact arithmetic (``Fraction``), O(1) but the risky rows."""
    opts, is_float = ctx.opts, ctx.is_float
    lim = Fraction(floor_limits(ctx)[0])
    b = Fraction(base)
    c0 = _exact_cell(b, lim)
    count = 1 if row0_new or c0 != carry.cell else 0
    c_last = _exact_cell(b + Fraction(summ.p_last), lim)
    count += c_last - c0 - _exact_skips(summ, b, lim)
    if summ.g_first < summ.n:
        count += summ.rest_starts
        s_out, cell = summ.rest_s, summ.rest_cell
    else:
        s_out, cell = b + Fraction(summ.t_first), c_last
        if not is_float and s_out > I64_MAX:
            raise overflow_error(opts)
    return Carry(
        batches=carry.batches + int(count), s=_exact_out(s_out, is_float), cell=int(cell), has_prev=True,
        key=summ.last_key, position=carry.position + summ.n,
    )


def _exact_skips(summ, b: Fraction, lim: Fraction) -> int:
    """How many cells the risky rows skip (:func:`_skipped_cells`), exactly: their float
    quotients decide every row not within ``EXACT_NEAR`` of an integer (a few roundings of
    float64 sums and one division: some 8 ulps at most), ``Fraction`` the others.

    >>> s = FloorSummary(risky_p=np.array([0.0]), risky_w=np.array([0.7]))
    >>> _exact_skips(s, Fraction(0), Fraction(0.1))  # float64's 0.7 is below seven of its 0.1s
    5
    """
    p, w, lo = summ.risky_p, summ.risky_w, summ.risky_lo
    if p is None or not len(p):
        return 0
    skipped, rows = 0, range(len(p))
    if p.dtype != object and len(p) > SCALAR_RISKY:
        h, wf, lim_f, b_f = p.astype(np.float64), w.astype(np.float64), float(lim), float(b)
        with np.errstate(all="ignore"):
            q1, q2 = (b_f + h) / lim_f, (b_f + h + wf) / lim_f
            sure = _sure(q1) & _sure(q2)
        jump = np.floor(q2[sure]) - np.floor(q1[sure])
        skipped, rows = int((jump[jump > 1] - 1).sum()), np.flatnonzero(~sure).tolist()
    for i in rows:  # Python numbers (_py): a Fraction of NumPy ints would overflow
        s = b + Fraction(_py(p[i])) + (Fraction(_py(lo[i])) if lo is not None else 0)
        skipped += max(_exact_cell(s + Fraction(_py(w[i])), lim) - _exact_cell(s, lim) - 1, 0)
    return skipped


def _sure(q: np.ndarray) -> np.ndarray:
    """Where a float quotient's floor is that of the exact one (see :func:`_exact_skips`)."""
    return (q < 2.0**52) & (np.floor(q * (1 - EXACT_NEAR)) == np.floor(q * (1 + EXACT_NEAR)))


def _exact_kernels(be):
    """The backend with the exact kernels: ``be`` where it offers them, else the host's (the
    GPU's are not written: its exact decisions run on the host, on the same code; see
    ``backends.GPU_LACKS``)."""
    if be.floor_exact_walk is not None:
        return be
    return host_backend()


def _expansion(b: Fraction) -> np.ndarray:
    """``b`` as an expansion: non-overlapping float64s of increasing magnitude that sum to it
    exactly (each the nearest float to what is left: 53 bits at a time).

    ``b`` is a sum of float64s (a power-of-two denominator), so what is left reaches 0.

    >>> b = Fraction(0.1) + Fraction(0.2)
    >>> parts = _expansion(b); len(parts), sum(map(Fraction, parts.tolist())) == b
    (2, True)
    """
    parts = []
    while b:
        f = float(b)
        parts.append(f)
        b -= Fraction(f)
    return np.array(parts[::-1] or [0.0], dtype=np.float64)


def _exact_base(w, s_in, has_prev, lim_f, is_float):
    """``(b, expansion of b, nearest float)`` of the carried exact sum for the exact kernels, or
    None where they cannot run (a limit beyond their products, int64 weights or sums beyond
    float64's integers or near overflow, a sum beyond float64): then Python walks."""
    b = Fraction(_py(s_in)) if has_prev else Fraction(0)
    if not (2.0**-960 <= lim_f <= 2.0**990) or (not is_float and len(w) and int(w.max()) >= 2**53):
        return None
    try:
        b_exp, b_f = _expansion(b), float(b)
    except OverflowError:
        return None
    if not is_float and len(w) and b_f + float(w.sum(dtype=np.float64)) >= 2.0**62:
        return None  # int64 sums near overflow: the Python walk finds the row that overflows
    return b, b_exp, b_f


def _exact_flags(ctx, w, newgrp, s_in, cell_prev, has_prev, record, base, want_sum=True):
    """:func:`_floor_flags` by the exact kernel, on the host; Python where it declines.
    Without ``want_sum`` the running sum after the partition is not formed (None)."""
    is_float, be = ctx.is_float, ctx.backend
    lim_f = floor_limits(ctx)[0]
    w, newgrp = be.to_numpy(w), be.to_numpy(newgrp)
    n = len(w)
    carried = _exact_base(w, s_in, has_prev, lim_f, is_float)
    if carried is not None:
        b, b_exp, b_f = carried
        out = np.zeros(n if record else 0, dtype=bool)
        ids = np.empty(n if base is not None else 0, dtype=np.int64)
        res = _exact_kernels(be).floor_exact_walk(
            w.astype(np.float64, copy=False), newgrp, b_exp, len(b_exp) if b else 0, b_f, np.int64(cell_prev),
            has_prev, lim_f, out, ids, base or 0, np.empty(len(b_exp) + 4), want_sum)
        if res.ok:
            s_out = None
            if want_sum:
                s_out = _exact_out(Fraction(res.hi) + Fraction(res.lo) + (0 if res.reset else b), is_float)
            return FloorWalk(int(res.count), s_out, int(res.cell), -1), (ids if base is not None else out)
    b = Fraction(_py(s_in)) if has_prev else Fraction(0)
    return _exact_flags_py(ctx, w, newgrp, b, cell_prev, has_prev, record, base)


def _exact_flags_py(ctx, w, newgrp, b, cell_prev, has_prev, record, base):
    """:func:`_exact_flags` in Python ``Fraction`` arithmetic, row by row (the rare sums that
    a double-double cannot hold, or cells beyond 2**52)."""
    opts, is_float = ctx.opts, ctx.is_float
    lim = Fraction(floor_limits(ctx)[0])
    n = len(w)
    out = np.zeros(n if record else 0, dtype=bool)
    ids = np.empty(n if base is not None else 0, dtype=np.int64)
    s, c, count = b, int(cell_prev), 0
    for i, x in enumerate(w.tolist()):
        if newgrp[i] or not has_prev:
            s, c_new, start, has_prev = Fraction(0), 0, True, True
        else:
            c_new = _exact_cell(s, lim)
            start = c_new != c
        count += start
        if record and start:
            out[i] = True
        if base is not None:
            ids[i] = base + count - 1
        c = c_new
        s += Fraction(x)
        if not is_float and s > I64_MAX:
            raise overflow_error(opts)
    return FloorWalk(count, _exact_out(s, is_float), c, -1), (ids if base is not None else out)


def _exact_ids(ctx, w, carry):
    """Ids of a partition without group changes by ``floor_exact_ids``; None where it declines
    (then :func:`_exact_flags` walks it, or Python)."""
    is_float, be = ctx.is_float, ctx.backend
    lim_f = floor_limits(ctx)[0]
    w = be.to_numpy(w)
    carried = _exact_base(w, carry.s, carry.has_prev, lim_f, is_float)
    if carried is None:
        return None
    b, b_exp, b_f = carried
    ids = np.empty(len(w), dtype=np.int64)
    done = _exact_kernels(be).floor_exact_ids(
        w.astype(np.float64, copy=False), b_exp, len(b_exp) if b else 0, b_f, np.int64(carry.cell),
        carry.has_prev, lim_f, carry.batches, ids, np.empty(len(b_exp) + 4))
    return ids if done else None


def _exact_quick_ids(prep, ctx, carry, want_total):
    """:func:`_quick_ids` with exact cells: the ids, and the partition's exact total where
    ``want_total`` (else None)."""
    is_float = ctx.is_float
    w = prep.w
    if not want_total:
        ids = _exact_ids(ctx, w, carry)
        if ids is not None:
            return ids, None
    res, ids = _exact_flags(ctx, w, np.zeros(len(w), dtype=bool), carry.s, carry.cell, carry.has_prev,
                            record=False, base=carry.batches, want_sum=want_total)
    if not want_total:
        return ids, None
    b = Fraction(_py(carry.s)) if carry.has_prev else 0
    return ids, _exact_out(Fraction(res.s_out) - b, is_float)
