"""Greedy and fill: speculative walks, heads, probes and chain tables (docs/design.md, "The parallel algorithm").

Each partition walks speculatively from an empty batch and keeps its first rows (its
*head*). The scan walks the true path over each head from the carried state until it meets
the speculative path; from there on the speculative counts and end state are the true ones.
For integer weights a :class:`Chain` says where the true path leads from wherever it first
starts a batch, so paths that meet late need no second look either. A partition resolved by
neither (periodic data) is loaded again and walked whole.

Integer weights against a limit beyond the int64 range: the kernels compare against
``I64_MAX``, so a cut they make for the limit means a batch cost beyond int64; the finish
finds any such cut (a walk over zero weights cuts only for groups and row caps) and raises
``OverflowError`` rather than return a different batching.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .. import kept as kept_flags
from ..partition import true_groups, row0_group_change
from ..scratch import scratch
from ..state import Carry, Summary, overflow_error, py_scalar as _py
from . import Step
from .paths import Path, choose_path, paths_for

HEAD_ROWS = 4096  # partitions this small keep every row in the summary
HEAD_STARTS = 64  # otherwise keep the rows of the first speculative batches...
HEAD_MAX = 1 << 16  # ...but never more than this many (unless a Chain needs them)
LONG_BATCH_ROWS = 256  # speculative batches this long on average: the finish searches prefix sums
SEARCH_ROWS = 64  # batches this long by the first rows' weights: the summary's walk searches too
I64_MAX = np.iinfo(np.int64).max
NO_POSITION = np.iinfo(np.int64).min


@dataclass
class GreedySummary(Summary):
    """A greedy/fill partition's summary: the head of rows and the speculative walk's result.

    >>> GreedySummary(n=3).spec_overflow
    -1
    """

    w_head: np.ndarray | None = None
    grp_head: np.ndarray | None = None
    spec_head: np.ndarray | None = None  # speculative start flags over the head
    spec_starts: int = 0
    spec_end: tuple | None = None  # (rows, tot, mx, start, tail) at the end, start local
    spec_overflow: int = -1
    chain: "Chain | None" = None  # where the true path leads from a start in the head (see Chain)


class GreedyMode:
    """The hooks of modes "greedy" and "fill" (see :mod:`dask_cumbatch.engine.modes`).

    >>> import pandas as pd, dask_cumbatch
    >>> pd.DataFrame({"w": [3, 3, 3]}).cumbatch.ids("w", 6, mode="fill").tolist()
    [0, 0, 1]
    """

    def summarize(self, arrays, ctx):
        """Speculative walk from an empty batch; keep the head (and a Chain) the scan needs."""
        summ = GreedySummary(total_kind="bits" if ctx.is_float else "sum")  # the total only checks the input
        _summarize_walk(summ, arrays, ctx)
        return summ

    def advance(self, summ, carry, ctx, load) -> Step:
        """The true state after the partition, from the head, the chain or a whole walk."""
        count, backdated, (rows, tot, mx, st, tail) = _scan_walk(summ, carry, ctx, load)
        end = Carry(
            batches=carry.batches + count, rows=rows, tot=tot, mx=mx, start=st, tail=tail,
            has_prev=True, key=summ.last_key, position=carry.position + summ.n,
        )
        return Step(end, backdated)

    def finish(self, arrays, entry, ctx):
        """Final ids: the walk from the true entry state, plus starts later cut-backs placed here."""
        case = FinishCase(arrays, entry, ctx)
        for path in paths_for(FINISH_PATHS, case, ctx.backend):
            ids = _FINISH_RUNS[path.name](case)
            if ids is not None:  # None: the path declined (sums beyond int64)
                break
        for p in sorted(entry.forced):  # starts a later cut-back placed in this partition's tail
            ids[p:] += 1
        return ids


@dataclass
class FinishCase:
    """What the finish's path is chosen by: one partition's arrays and entry, and the call's context.

    >>> FinishCase(None, None, None).entry is None
    True
    """

    arrays: object
    entry: object
    ctx: object

    @cached_property
    def spec(self):
        """The kept speculative flags (looked up once: the store is a bounded LRU)."""
        return _kept_spec(self.entry, self.arrays, self.ctx)


def _long_batches_by_sums(case) -> bool:
    """Long batches (at least 256 rows on average), plain greedy over integer weights without ``by``, a limit within int64."""
    return case.entry.long_batches and _by_sums(case.ctx, "greedy_sums_ids")


def _flags_kept(case) -> bool:
    """This process kept the summary's start flags of the partition (32,768 rows or more, same row count, found in the LRU store)."""
    return case.spec is not None


def _always(case) -> bool:
    """Always (the general path)."""
    return True


def _finish_by_sums(case):
    """Ids by prefix-sum searches; None where the sums would leave int64."""
    return _sums_ids(case.ctx, case.arrays.w, case.entry.carry)


def _finish_by_walk(case):
    """The walk from the true entry state (up to where it meets the kept flags, if any)."""
    arrays, entry, ctx = case.arrays, case.entry, case.ctx
    be, carry, spec = ctx.backend, entry.carry, case.spec
    grp = true_groups(arrays, carry, ctx.opts)
    res, ids = _walk(ctx, arrays.w, grp, _state(carry), spec=spec, base=carry.batches)
    if res.overflow >= 0:
        raise overflow_error(ctx.opts)
    met = int(res.met)
    if met >= 0:  # the paths met: the kept flags give every id from here on
        be.flags_to_ids(be.asarray(spec), met, carry.batches + int(res.count) - 2, be.asarray(ids))
    if limit_beyond_int64(ctx):
        _refuse_limit_cuts(ctx, arrays.w, grp, carry, ids)
    return ids


FINISH_PATHS = (
    Path("sums_ids", _long_batches_by_sums, ("greedy_walk", "greedy_sums_ids")),
    Path("kept_flags", _flags_kept, ("flags_to_ids", "walk_batches")),
    Path("walk", _always, ()),  # greedy_walk or walk_batches: see WALK_PATHS
)
_FINISH_RUNS = {"sums_ids": _finish_by_sums, "kept_flags": _finish_by_walk, "walk": _finish_by_walk}


def _by_sums(ctx, kernel: str) -> bool:
    """Whether batch ends may be found from prefix sums by ``kernel`` (``greedy_chain``,
    ``greedy_sums_starts``, ``greedy_sums_ids``, ``greedy_sums_end``): plain greedy over
    integer weights without ``by``, a limit within int64, on a backend that offers the kernel."""
    return (not ctx.is_float and _plain_greedy(ctx) and not ctx.opts.by and not limit_beyond_int64(ctx)
            and ctx.backend.offers(kernel))


def _sums_ids(ctx, w, carry):
    """Ids from the carried state by ``greedy_sums_ids``; None when its sums would leave int64."""
    be = ctx.backend
    gt, _ = limits(ctx)
    ids = be.asarray(np.empty(len(w), dtype=np.int64))
    prefix = be.asarray(scratch("prefix", len(w) + 1, np.int64))
    if be.greedy_sums_ids(be.asarray(w), np.int64(carry.tot), carry.rows == 0, gt, prefix, ids, carry.batches) < 0:
        return None
    return be.to_numpy(ids)


def _kept_spec(entry, arrays, ctx):
    """The speculative start flags this process kept for the partition (None: walk every row).

    Only for the arrays the summary walked: same row count, no overflow (else none were kept).
    """
    if limit_beyond_int64(ctx) or ctx.backend.flags_to_ids is None:
        return None
    spec = kept_flags.kept(entry.kept)
    return spec if spec is not None and len(spec) == len(arrays.w) else None


def limit_beyond_int64(ctx) -> bool:
    """Integer weights with a limit no int64 cost can reach: the limit never cuts (no limit).

    >>> from dask_cumbatch.engine.context import BatchContext
    >>> from dask_cumbatch.options import BatchOptions
    >>> [limit_beyond_int64(BatchContext(BatchOptions.make("w", lim), False)) for lim in (1e19, 5)]
    [True, False]
    """
    return not ctx.is_float and ctx.opts.limit > I64_MAX


def _refuse_limit_cuts(ctx, w, grp, carry, ids) -> None:
    """Raise if the walk cut a batch for the limit while the limit lies beyond int64.

    Such a cut means a batch sum (or padded cost) beyond the int64 range: the exact batching
    would need wider sums. Zero weights never reach the limit, so their walk cuts only for
    group changes and row caps: the two walks agree exactly when the limit never cut.
    """
    state = (carry.rows, 0, 0, carry.start - carry.position, (0,) * len(carry.tail))
    _, free = _walk(ctx, np.zeros(len(w), dtype=np.int64), grp, state, base=carry.batches)
    if not np.array_equal(free, ids):
        raise overflow_error(ctx.opts, "batch sum (or padded cost)")


def _state(carry):
    return (carry.rows, carry.tot, carry.mx, carry.start - carry.position, carry.tail)


def limits(ctx):
    """Thresholds for the '>' and '>=' tests, exact for integer weights (clamped to int64).

    >>> from dask_cumbatch.engine.context import BatchContext
    >>> from dask_cumbatch.options import BatchOptions
    >>> limits(BatchContext(BatchOptions.make("w", 7.5), False))
    (7, 8)
    """
    lim = ctx.opts.limit
    if ctx.is_float:
        return float(lim), float(lim)
    big = float(I64_MAX)
    gt = I64_MAX if lim >= big else int(math.floor(lim))
    ge = I64_MAX if lim >= big else int(math.ceil(lim))
    return gt, ge


@dataclass
class WalkCase:
    """What greedy's walk is chosen by: the weights, the state it starts from, what it records.

    >>> WalkCase(None, np.zeros(2), 0, 2, None, np.zeros(0, bool)).summary_walk
    True
    """

    ctx: object
    w: np.ndarray
    rows: int
    record: int
    base: int | None
    spec: np.ndarray

    @property
    def summary_walk(self) -> bool:
        """From an empty batch, every start flag, no ids: the summary's speculative walk."""
        return self.rows == 0 and self.record == len(self.w) and self.base is None


def _plain_summary_with_long_batches(case) -> bool:
    """The summary's walk, plain greedy over integer weights without ``by`` (limit within int64), the first 4,096 rows' mean weight at most 1/64 of the limit."""
    return (case.summary_walk and not len(case.spec) and bool(len(case.w))
            and _by_sums(case.ctx, "greedy_sums_starts")
            and float(case.w[:4096].mean(dtype=np.float64)) * SEARCH_ROWS <= limits(case.ctx)[0])


def _plain_summary(case) -> bool:
    """The summary's walk, plain greedy (by the sum alone: no padded cost, ``max_rows`` or ``multiple``)."""
    return case.summary_walk and not len(case.spec) and _plain_greedy(case.ctx)


def _plain_without_flags(case) -> bool:
    """Plain greedy, walking without kept flags to meet."""
    return not len(case.spec) and _plain_greedy(case.ctx)


WALK_PATHS = (
    Path("sums_starts", _plain_summary_with_long_batches, ("greedy_walk", "greedy_sums_starts")),
    Path("greedy_starts", _plain_summary, ("greedy_walk", "greedy_starts")),
    Path("greedy_walk", _plain_without_flags, ("greedy_walk",)),
    Path("walk_batches", _always, ("walk_batches",)),
)


def _walk(ctx, w, newgrp, carry_state, spec=None, record=0, base=None):
    """Run the first path of :data:`WALK_PATHS` that applies (``walk_batches`` in general);
    ``record`` rows of start flags, or ids from ``base``."""
    be, opts, is_float = ctx.backend, ctx.opts, ctx.is_float
    rows, tot, mx, start, tail = carry_state
    gt, ge = limits(ctx)
    dtype = np.float64 if is_float else np.int64
    out = be.asarray(np.zeros(min(record, len(w)), dtype=bool))
    ids = be.asarray(np.empty(len(w) if base is not None else 0, dtype=np.int64))
    spec = spec if spec is not None else _NO_FLAGS
    for path in paths_for(WALK_PATHS, WalkCase(ctx, w, rows, record, base, spec), be):
        if path.name == "sums_starts":
            res = be.greedy_sums_starts(be.asarray(w), gt, be.asarray(scratch("prefix", len(w) + 1, np.int64)), out)
            if res.count < 0:  # sums beyond int64: the next path
                continue
        elif path.name == "greedy_starts":
            res = be.greedy_starts(be.asarray(w), be.asarray(newgrp), bool(opts.by), is_float, gt, out)
        elif path.name == "greedy_walk":
            res = be.greedy_walk(be.asarray(w), be.asarray(newgrp), rows, dtype(tot), dtype(mx), start,
                                 is_float, gt, out, ids, base or 0)
        else:
            res = be.walk_batches(
                be.asarray(w), be.asarray(newgrp), be.asarray(np.asarray(tail, dtype=dtype)), rows,
                dtype(tot), dtype(mx), start, opts.mode == "greedy", opts.cost == "padded", is_float,
                gt, ge, opts.max_rows or 0, opts.multiple or 0, be.asarray(spec), out, ids, base or 0,
            )
        return res, be.to_numpy(ids if base is not None else out)
    raise AssertionError("WALK_PATHS ends with a path that always applies")


_NO_FLAGS = np.zeros(0, dtype=bool)


def _plain_greedy(ctx) -> bool:
    """Whether the backend's branch-free ``greedy_walk`` applies (greedy by the sum alone)."""
    opts = ctx.opts
    return (opts.mode == "greedy" and opts.cost != "padded" and not opts.max_rows
            and (opts.multiple or 0) <= 1 and ctx.backend.greedy_walk is not None)


def _tail(prev_tail, w, rows, multiple) -> tuple:
    keep = min(rows, (multiple or 1) - 1)
    if keep <= 0:
        return ()
    ext = np.concatenate([np.asarray(prev_tail, dtype=w.dtype), w])
    return tuple(ext[len(ext) - keep:].tolist())


def _summarize_walk(summ, prep, ctx):
    """Speculative walk and head: partitions of at most ``HEAD_ROWS`` rows are kept whole,
    longer ones as :data:`HEAD_PATHS` decides."""
    opts, be = ctx.opts, ctx.backend
    w, newgrp, n = prep.w, prep.newgrp, len(prep.w)
    # start flags for every row (n bytes): a head that grows later needs no second walk
    res, spec = _walk(ctx, w, newgrp, (0, 0, 0, 0, ()), record=n)
    dtype = _compact_dtype(w)
    h = n
    if res.overflow >= 0:
        summ.spec_overflow = int(res.overflow)
        if n > HEAD_ROWS:
            h = max(min(n, HEAD_MAX), int(res.overflow) + 1)
    else:
        rows = int(res.rows)
        summ.spec_end = (rows, _py(res.tot), _py(res.mx), int(res.start), _tail((), w, rows, opts.multiple))
        summ.spec_starts = int(res.count)
        summ.long_batches = not ctx.is_float and n >= LONG_BATCH_ROWS * max(int(res.count), 1)
        if n >= kept_flags.KEEP_MIN_ROWS and be.flags_to_ids is not None and opts.extra.get("keep_flags", True) \
                and not (summ.long_batches and _by_sums(ctx, "greedy_sums_ids")):
            summ.kept = kept_flags.keep(be.to_numpy(spec))
        if n > HEAD_ROWS:
            h = _long_head(summ, prep, ctx, spec, ctx.head_bytes // dtype.itemsize)
    summ.w_head = w[:h].astype(dtype)  # a copy, whatever the dtype
    summ.grp_head = newgrp[:h].copy() if opts.by else None
    summ.spec_head = spec[:h].copy()


@dataclass
class HeadCase:
    """What a long partition's head is chosen by: its arrays, start flags and summary, the
    call's context, the short head (the first ``HEAD_STARTS`` speculative batches) and the rows
    the budget lets it keep (``max_rows``).

    >>> HeadCase(None, None, None, np.zeros(5000, bool), 4096, 10).fits
    False
    """

    summ: GreedySummary
    prep: object
    ctx: object
    spec: np.ndarray
    short: int
    max_rows: int

    @property
    def n(self) -> int:
        return len(self.spec)

    @property
    def fits(self) -> bool:
        """The whole partition fits the budget."""
        return self.n <= self.max_rows


def _probes_meet(case) -> bool:
    """Paths first starting at a few rows of the first batch meet the speculative one inside the
    short head: a chain table (about five walks' work) is likely not needed; should the true
    path still miss, the scan's fallback walk keeps the result exact."""
    head = case.spec[:case.short]
    s1 = _second_start(head)
    if s1 == len(head):
        return False
    w, newgrp, h = case.prep.w, case.prep.newgrp, case.short
    for j in sorted({1, s1 // 2, s1 - 1} - {0}):
        res, _ = _walk(case.ctx, w[j:h], newgrp[j:h], (0, 0, 0, 0, ()), spec=case.spec[j:h])
        if res.met < 0:
            return False
    return True


def _whole_preferred(case) -> bool:
    """The summary need not travel (``prefer_whole``: one in-memory frame) and the partition fits the budget."""
    return case.ctx.prefer_whole and case.fits


def _chainable(case) -> bool:
    """Integer weights without ``multiple`` over at least ``CHAIN_MIN_BATCHES`` speculative batches."""
    return (not case.ctx.is_float and (case.ctx.opts.multiple or 0) <= 1
            and case.summ.spec_starts >= CHAIN_MIN_BATCHES)


def _fits(case) -> bool:
    """The whole partition fits the budget."""
    return case.fits


HEAD_PATHS = (
    Path("short", _probes_meet, ()),
    Path("whole_preferred", _whole_preferred, ()),
    Path("chain", _chainable, ("chain_table",)),  # declines where the chain has too many runs
    Path("whole", _fits, ()),
    Path("short_unresolved", _always, ()),  # the scan walks the partition again if it must
)


def _long_head(summ, prep, ctx, spec, max_rows) -> int:
    """Head rows of a long partition: the first path of :data:`HEAD_PATHS` that applies and does
    not decline (a chain attaches a :class:`Chain` to ``summ``)."""
    n = len(prep.w)
    short = min(n, max(_start_number(spec, HEAD_STARTS, HEAD_MAX), HEAD_ROWS))
    case = HeadCase(summ, prep, ctx, spec, short, max_rows)
    for path in paths_for(HEAD_PATHS, case, ctx.backend):
        if path.name in ("short", "short_unresolved"):
            return short
        if path.name in ("whole_preferred", "whole"):
            return n
        h = max(short, min(_second_start(spec) + 1, max_rows, n))  # the chain's candidate rows
        summ.chain = chain_of(prep.w, prep.newgrp, ctx, spec[:h])
        if summ.chain is not None:
            return h
    raise AssertionError("HEAD_PATHS ends with a path that always applies")


def _start_number(spec, k: int, limit: int) -> int:
    """The row of start ``k`` (from 0) among the flags ``spec[:limit]``, else ``limit``; looks at
    4,096 rows first, then four times as many each time (finding every start of 65,536 rows
    costs a tenth of the summary's walk: docs/performance.md, "Measured while building").

    >>> _start_number(np.array([1, 0, 1, 1, 0], dtype=bool), 2, 5), _start_number(np.ones(3, bool), 5, 8)
    (3, 8)
    """
    window = 4096
    while True:
        positions = np.flatnonzero(spec[:min(window, limit)])
        if len(positions) > k:
            return int(positions[k])
        if window >= limit or window >= len(spec):
            return limit
        window *= 4


def _second_start(spec) -> int:
    """The row of the second start among the speculative flags ``spec`` (``len(spec)`` if none).

    >>> _second_start(np.array([1, 0, 0, 1, 1], dtype=bool)), _second_start(np.array([1, 0], dtype=bool))
    (3, 2)
    """
    return int(np.argmax(spec[1:])) + 1 if spec[1:].any() else len(spec)


CHAIN_RUNS = 4096  # a chain with more runs than this (no coalescing: periodic data) is not kept
CHAIN_MIN_BATCHES = 8  # paths over fewer batches than this rarely coalesce: no chain is tried


@dataclass
class Chain:
    """Where the true path of a partition leads, for each row where it may first start a batch.

    The true path's first start j lies within the first speculative batch (the carried batch
    is at least as full as an empty one), and from j on it is the fresh path from j. Paths
    from neighbouring rows coalesce, so the outcomes over ``j < m`` form a few runs: run r
    covers ``run_start[r] <= j < run_start[r + 1]`` and gives the number of starts from j to
    the end of the partition and the open batch there (its first row ``last``, weight total
    ``tot`` and maximum ``mx``). Integer weights only, without ``multiple``.

    >>> from dask_cumbatch.engine.context import BatchContext
    >>> from dask_cumbatch.options import BatchOptions
    >>> ctx = BatchContext(BatchOptions.make("w", 7), is_float=False).for_rows(None)
    >>> w = np.array([3, 4, 2, 5, 1, 3, 4, 2, 2, 3])
    >>> spec = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0], dtype=bool)  # the batches from row 0
    >>> chain = chain_of(w, np.zeros(10, bool), ctx, spec)
    >>> chain.outcome(1, 10)  # first start at row 1: [4 2] [5 1] [3 4], then [2 2 3] is open
    (4, (3, 7, 3, 7))
    """

    m: int
    run_start: np.ndarray
    cnt: np.ndarray
    last: np.ndarray
    tot: np.ndarray
    mx: np.ndarray

    def outcome(self, j: int, n: int):
        """(starts, (rows, tot, mx, start)) of the path whose first start is row j < m.

        >>> Chain(2, np.array([0]), np.array([3]), np.array([5]), np.array([9]), np.array([4])).outcome(1, 7)
        (3, (2, 9, 4, 5))
        """
        r = int(np.searchsorted(self.run_start, j, side="right")) - 1
        last = int(self.last[r])
        return int(self.cnt[r]), (n - last, int(self.tot[r]), int(self.mx[r]), last)


def chain_of(w, newgrp, ctx, spec_head) -> Chain | None:
    """The :class:`Chain` of a partition's integer weights ``w`` (None: overflow, too many runs,
    or a backend without chain tables where ``greedy_chain`` does not apply).

    ``ctx.backend`` runs ``greedy_chain`` (plain greedy without ``by``, where it offers it) or
    ``chain_table``, on working arrays this thread keeps for the next partition
    (:mod:`~dask_cumbatch.engine.scratch`).
    """
    be = ctx.backend
    starts = np.flatnonzero(spec_head[1:])
    m = int(starts[0]) + 2 if len(starts) else len(spec_head)  # j <= the second speculative start
    gt, ge = limits(ctx)
    runs = _greedy_runs(be, w, gt, m) if _by_sums(ctx, "greedy_chain") else None
    if runs is None and be.chain_table is not None:
        runs = _table_runs(be, w, newgrp, ctx.opts, gt, ge, m)
    if runs is None or len(runs[0]) > CHAIN_RUNS:
        return None
    run_start, cnt, lasts = runs
    lo = int(lasts.min())
    suffix_sum = np.cumsum(w[lo:][::-1])[::-1]
    suffix_max = np.maximum.accumulate(w[lo:][::-1])[::-1]
    return Chain(m, run_start, cnt, lasts, suffix_sum[lasts - lo], suffix_max[lasts - lo])


def _greedy_runs(be, w, gt, m):
    """The chain's runs ``(first j, starts, last start)`` by ``greedy_chain``; None when its
    prefix sums would leave int64."""
    prefix = be.asarray(scratch("prefix", len(w) + 1, np.int64))
    pos, first, run_first, run_cnt, run_last = (be.asarray(np.empty(m, np.int64)) for _ in range(5))
    k = be.greedy_chain(be.asarray(w), gt, m, prefix, pos, first, run_first, run_cnt, run_last)
    if k < 0:
        return None
    run_first, run_cnt, run_last = (be.to_numpy(a)[:k] for a in (run_first, run_cnt, run_last))
    order = np.argsort(run_first, kind="stable")  # the runs in order of j
    return run_first[order], run_cnt[order], run_last[order]


def _table_runs(be, w, newgrp, opts, gt, ge, m):
    """The chain's runs from ``chain_table`` (every rule); None on int64 overflow."""
    n = len(w)
    idx = np.int32 if n < 2**31 - 1 else np.int64
    nxt, cnt = be.asarray(scratch("chain_nxt", n, idx)), be.asarray(scratch("chain_cnt", n, idx))
    dq = be.asarray(np.empty(n if opts.cost == "padded" else 1, dtype=idx))
    if not be.chain_table(be.asarray(w), be.asarray(newgrp), opts.mode == "greedy", opts.cost == "padded",
                          gt, ge, opts.max_rows or 0, nxt, cnt, dq):
        return None
    last, cnt = be.to_numpy(nxt)[:m].astype(np.int64), be.to_numpy(cnt)[:m].astype(np.int64)
    change = np.flatnonzero((last[1:] != last[:-1]) | (cnt[1:] != cnt[:-1])) + 1
    run_start = np.concatenate([[0], change]).astype(np.int64)
    return run_start, cnt[run_start], last[run_start]


def _compact_dtype(w: np.ndarray) -> np.dtype:
    """The smallest integer dtype that holds the weights ``w`` (floats keep theirs).

    >>> _compact_dtype(np.array([1, 59, 3]))
    dtype('uint8')
    """
    if w.dtype.kind == "f" or not len(w) or w.min() < 0:
        return w.dtype
    return np.min_scalar_type(int(w.max()))


@dataclass
class ScanCase:
    """What the scan's path is chosen by: the partition's summary and the call's context.

    >>> ScanCase(GreedySummary(n=0), None).summ.n
    0
    """

    summ: GreedySummary
    ctx: object


def _whole_with_long_batches(case) -> bool:
    """The summary kept every row, its batches are long, plain greedy over integer weights without ``by`` (limit within int64)."""
    summ = case.summ
    return summ.long_batches and len(summ.w_head) == summ.n and _by_sums(case.ctx, "greedy_sums_end")


SCAN_PATHS = (
    Path("sums_end", _whole_with_long_batches, ("greedy_walk", "greedy_sums_end")),
    Path("head_walk", _always, ()),  # then the meeting row, the chain table or a whole walk; see WALK_PATHS
)


def _scan_walk(summ, carry, ctx, load):
    """True starts, backdated start and end state of one partition (greedy/fill)."""
    opts = ctx.opts
    if choose_path(SCAN_PATHS, ScanCase(summ, ctx), ctx.backend).name == "sums_end":
        found = _sums_end(ctx, summ.w_head.astype(np.int64, copy=False), carry)
        if found is not None:
            return found
    w_head = summ.w_head.astype(np.float64 if ctx.is_float else np.int64, copy=False)
    grp = summ.grp_head.copy() if summ.grp_head is not None else np.zeros(len(w_head), dtype=bool)
    grp[0] = row0_group_change(summ, carry, opts)
    res, starts = _walk(ctx, w_head, grp, _state(carry), spec=summ.spec_head,
                        record=len(w_head) if summ.chain is not None else 0)
    if res.overflow >= 0:
        raise overflow_error(opts)
    backdated = None if res.backdated == NO_POSITION else int(res.backdated)
    h = len(w_head)
    if res.met >= 0:
        if summ.spec_overflow >= 0:
            raise overflow_error(opts)
        count = int(res.count) + summ.spec_starts - int(summ.spec_head[: res.met + 1].sum())
        rows, tot, mx, st, tail = summ.spec_end
        return count, backdated, (rows, tot, mx, carry.position + st, tail)
    if h == summ.n:
        return int(res.count), backdated, _open_batch(res, carry, w_head, opts)
    if summ.chain is not None and res.count > 0:
        j = int(np.argmax(starts))  # the true path's first start
        if j < summ.chain.m:
            count, (rows, tot, mx, st) = summ.chain.outcome(j, summ.n)
            return count, None, (rows, tot, mx, carry.position + st, ())
    return walk_whole(load(), ctx, carry)


def _sums_end(ctx, w, carry):
    """:func:`_scan_walk` over a partition kept whole whose batches are long, by
    ``greedy_sums_end`` (a search per batch, not a walk per row); None when its sums would
    leave int64."""
    be, n = ctx.backend, len(w)
    gt, _ = limits(ctx)
    prefix = scratch("prefix", n + 1, np.int64)
    count, last = be.greedy_sums_end(be.asarray(w), np.int64(carry.tot), carry.rows == 0, gt, be.asarray(prefix))
    if count < 0:
        return None
    if last < 0:  # the carried batch takes every row
        mx = max(carry.mx, int(w.max())) if n else carry.mx
        return 0, None, (carry.rows + n, carry.tot + int(prefix[n]), mx, carry.start, ())
    last = int(last)
    return int(count), None, (n - last, int(prefix[n] - prefix[last]), int(w[last:].max()), carry.position + last, ())


def walk_whole(prep, ctx, carry):
    """Walk a whole partition's arrays from the true state (the scan's fallback): as _scan_walk."""
    grp = true_groups(prep, carry, ctx.opts)
    res, _ = _walk(ctx, prep.w, grp, _state(carry))
    if res.overflow >= 0:
        raise overflow_error(ctx.opts)
    backdated = None if res.backdated == NO_POSITION else int(res.backdated)
    return int(res.count), backdated, _open_batch(res, carry, prep.w, ctx.opts)


def _open_batch(res, carry, w, opts) -> tuple:
    """The open batch after a walk over all of a partition's weights ``w`` from ``carry``:
    ``(rows, tot, mx, start, tail)``, its start global."""
    rows = int(res.rows)
    return rows, _py(res.tot), _py(res.mx), carry.position + int(res.start), _tail(carry.tail, w, rows, opts.multiple)

