"""Partition summaries, the scan over them, and the partition-wise finish.

This module knows pandas partitions and NumPy arrays, never Dask: the graph module maps
:func:`summarize` over partitions, gathers the summaries into one place, calls :func:`scan`
and maps :func:`finish_ids` with the per-partition :class:`Entry` it returns.

Greedy and fill (DESIGN.md "The parallel algorithm"): each partition walks speculatively
from an empty batch and keeps the first rows (its *head*). The scan walks the true path over
each head from the carried state until it meets the speculative path; from there on the
speculative counts and end state are the true ones. For integer weights a :class:`Chain`
says where the true path leads from wherever it first starts a batch, so paths that meet late
need no second look either. A partition resolved by neither (periodic data) is loaded again
through the ``load`` callback and walked whole.

Floor: the grid of ``floor(S / limit)`` needs only the running sum carried in; the summary
keeps the few rows heavy enough to skip a grid cell so the scan can count cells exactly.
"""
from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field, asdict, replace

import numpy as np
import pandas as pd

from . import kernels
from .options import BatchOptions, hinted

HEAD_ROWS = 4096  # partitions this small keep every row in the summary
HEAD_STARTS = 64  # otherwise keep the rows of the first speculative batches...
HEAD_MAX = 1 << 16  # ...but never more than this many (unless a Chain needs them)
HEAD_BUDGET = 1 << 27  # bytes of weights kept over all partitions together (128 MiB)


def head_bytes_for(npartitions: int) -> int:
    """Bytes of (compacted) weights a partition's summary may keep.

    A partition whose weights fit is kept whole: the scan then never needs to look at it
    again. Together the summaries stay within ``HEAD_BUDGET`` bytes.

    >>> head_bytes_for(40), head_bytes_for(100_000)
    (3355443, 1342)
    """
    return int(HEAD_BUDGET // max(npartitions, 1))


FLOAT_GRID_SAFE = 2.0**40  # beyond S/limit of this the float grid is walked, not counted
RISKY_FRACTION = 1.0 - 2.0**-10


class WeightError(ValueError):
    """Invalid weights (NaN, inf, missing, negative) with ``invalid="raise"``.

    >>> import pandas as pd, dask_cumbatch
    >>> pd.DataFrame({"w": [1.0, -2.0]}).cumbatch.ids("w", 5)
    Traceback (most recent call last):
    dask_cumbatch.scan.WeightError: weight column 'w' has 1 invalid value(s) (NaN, inf, missing or negative); the first is at index 1. Clean them or pass invalid='skip'.
    """


class OversizeError(ValueError):
    """A single row heavier than the limit with ``oversize="raise"``.

    >>> import pandas as pd, dask_cumbatch
    >>> pd.DataFrame({"w": [1, 9]}).cumbatch.ids("w", 5, oversize="raise")
    Traceback (most recent call last):
    dask_cumbatch.scan.OversizeError: row at index 1 has weight 9 above the limit 5 in column 'w'; pass oversize='allow' to put such rows alone in a batch
    """


# --------------------------------------------------------------------------- carry


@dataclass
class Carry:
    """The exact state between two rows: what partition k-1 hands to partition k.

    ``batches`` is the number of batches started so far (so the next new batch gets id
    ``batches``); ``rows/tot/mx`` describe the open batch, ``start`` is the global position
    (among batched rows) of its first row and ``tail`` its last ``multiple - 1`` weights;
    ``key`` is the last row's group key; ``s``/``cell`` the floor mode's running sum and
    grid cell; ``position`` the global position of the next row.

    >>> Carry.from_json(Carry(batches=3, rows=2, tot=0.5).to_json()).tot
    0.5
    """

    batches: int = 0
    rows: int = 0
    tot: float | int = 0
    mx: float | int = 0
    start: int = 0
    tail: tuple = ()
    has_prev: bool = False
    key: tuple = ()
    s: float | int = 0
    cell: float | int = 0
    position: int = 0

    def to_json(self) -> str:
        """Serialise exactly (floats as hex) to a JSON string.

        >>> '"tot": {"f": "0x1.8000000000000p+0"}' in Carry(tot=1.5).to_json()
        True
        """
        d = asdict(self)
        d["tot"], d["mx"], d["s"], d["cell"] = (_num_out(d[k]) for k in ("tot", "mx", "s", "cell"))
        d["tail"] = [_num_out(v) for v in self.tail]
        d["key"] = [_key_out(v) for v in self.key]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Carry":
        """Read a :meth:`to_json` string back; rejects anything that is not a carry.

        >>> Carry.from_json(Carry(batches=7, key=("a", None)).to_json()).key
        ('a', None)
        """
        d = json.loads(text)
        if not isinstance(d, dict) or set(d) != {f for f in cls.__dataclass_fields__}:
            raise ValueError("not a dask-cumbatch carry state")
        for k in ("tot", "mx", "s", "cell"):
            d[k] = _num_in(d[k])
        d["tail"] = tuple(_num_in(v) for v in d["tail"])
        d["key"] = tuple(_key_in(v) for v in d["key"])
        for k in ("batches", "rows", "start", "position"):
            if not isinstance(d[k], int):
                raise ValueError(f"carry field {k} must be an integer")
        return cls(**d)


def _num_out(v):
    if isinstance(v, (float, np.floating)):
        return {"f": float(v).hex()}
    return int(v)


def _num_in(v):
    if isinstance(v, dict) and set(v) == {"f"}:
        return float.fromhex(v["f"])
    if isinstance(v, int):
        return v
    raise ValueError(f"bad number in carry state: {v!r}")


def _key_out(v):
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return {"na": True}
    if isinstance(v, (bool, np.bool_)):
        return {"b": bool(v)}
    if isinstance(v, (int, np.integer)):
        return {"i": int(v)}
    if isinstance(v, (float, np.floating)):
        return {"f": float(v).hex()}
    if isinstance(v, str):
        return {"s": v}
    if isinstance(v, pd.Timestamp):
        return {"t": v.isoformat()}
    return {"s": str(v)}


def _key_in(v):
    if not isinstance(v, dict) or len(v) != 1:
        raise ValueError(f"bad key in carry state: {v!r}")
    (tag, val), = v.items()
    return {"na": lambda x: None, "b": bool, "i": int, "f": float.fromhex, "s": str,
            "t": pd.Timestamp}[tag](val)


def same_key(a: tuple, b: tuple) -> bool:
    """Group keys equal, missing values equal to each other (DESIGN.md "group change").

    >>> same_key((1, None), (1, float("nan"))), same_key(("a",), ("b",))
    (True, False)
    """
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        nx = x is None or (not isinstance(x, str) and bool(pd.isna(x)))
        ny = y is None or (not isinstance(y, str) and bool(pd.isna(y)))
        if nx or ny:
            if not (nx and ny):
                return False
        elif not bool(x == y):
            return False
    return True


# --------------------------------------------------------------------------- preparing a partition


def invalid_mask(weights: pd.Series) -> np.ndarray:
    """Rows whose weight is missing, NaN, infinite or negative.

    >>> invalid_mask(pd.Series([1.0, float("nan"), -2.0, float("inf"), 0.0])).tolist()
    [False, True, True, True, False]
    """
    return _weights(weights)[1]


_NO_INVALID = np.zeros(0, dtype=bool)  # "no invalid row", without a mask per row


def _weights(col: pd.Series, check: bool = True):
    """(values as int64 or float64 for every row, invalid mask).

    ``check=False`` skips the validity test of plain NumPy columns (a summary already proved
    them valid).
    """
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":  # fast path: plain NumPy columns
        if dtype.kind == "f":
            values = col.to_numpy(dtype=np.float64)
            if not check or kernels.count_invalid(values) == 0:
                return values, _NO_INVALID
            with np.errstate(invalid="ignore"):
                return values, ~((values >= 0) & (values < np.inf))
        if dtype.kind == "u" and dtype.itemsize == 8 and len(col) and col.to_numpy().max() > kernels.I64_MAX:
            raise OverflowError(
                f"weight column {col.name!r} holds values above 2**63-1; weights are summed in int64"
            )
        values = col.to_numpy(dtype=np.int64)
        if not check or dtype.kind in "ub" or values.min(initial=0) >= 0:
            return values, _NO_INVALID
        return values, values < 0
    na = col.isna().to_numpy(dtype=bool)
    if pd.api.types.is_bool_dtype(dtype):
        return col.to_numpy(dtype=np.int64, na_value=0), na
    if pd.api.types.is_integer_dtype(dtype):
        if pd.api.types.is_unsigned_integer_dtype(dtype) and len(col) and not na.all():
            if int(col.max()) > kernels.I64_MAX:
                raise OverflowError(
                    f"weight column {col.name!r} holds values above 2**63-1; "
                    "weights are summed in int64"
                )
        values = col.to_numpy(dtype=np.int64, na_value=0)
        return values, na | (values < 0)
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return values, ~np.isfinite(values) | (values < 0)


def _group_codes(df: pd.DataFrame, by: tuple) -> list[np.ndarray]:
    return [pd.factorize(df[k], use_na_sentinel=True)[0] for k in by]


@dataclass
class Prepared:
    """A partition reduced to what the kernels need (rows in batching order)."""

    w: np.ndarray  # valid weights, int64 or float64, in batching order
    newgrp: np.ndarray  # bool, group change from the previous valid row; [0] is False
    keep: np.ndarray | None  # positions of the valid rows in batching order; None: all, in order
    n_all: int
    invalid: np.ndarray | None  # bool mask over all rows (None: every row is valid)
    first_key: tuple
    last_key: tuple

    def position(self, i: int) -> int:
        """Position in the partition of the i-th batched row."""
        return i if self.keep is None else int(self.keep[i])

    def positions(self) -> np.ndarray:
        """Positions in the partition of all batched rows."""
        return np.arange(len(self.w), dtype=np.int64) if self.keep is None else self.keep.astype(np.int64)


def prepare(df: pd.DataFrame, opts: BatchOptions, checked: bool = False) -> Prepared:
    """Extract weights, validity, group changes and the batching order of a partition.

    ``checked``: the summary pass already found no invalid row (``invalid="raise"``).
    """
    values, invalid = _weights(df[opts.weight], check=not (checked and opts.invalid == "raise"))
    if invalid is _NO_INVALID:
        invalid = None
    keep = np.flatnonzero(~invalid) if invalid is not None and invalid.any() else None
    codes = _group_codes(df, opts.by) if opts.by else []
    if opts.sort_window:
        keep = _window_order(np.arange(len(values)) if keep is None else keep, values, codes, opts.sort_window)
    w = values if keep is None else values[keep]
    newgrp = np.zeros(len(w), dtype=bool)
    for c in codes:
        ck = c if keep is None else c[keep]
        newgrp[1:] |= ck[1:] != ck[:-1]
    if opts.by and len(w):
        first_row, last_row = (0, len(w) - 1) if keep is None else (keep[0], keep[-1])
        first = tuple(df[k].iloc[first_row] for k in opts.by)
        last = tuple(df[k].iloc[last_row] for k in opts.by)
    else:
        first = last = ()
    return Prepared(w, newgrp, keep, len(df), invalid, _plain(first), _plain(last))


def _py(x):
    """A NumPy or numba scalar as a plain Python number."""
    return x.item() if isinstance(x, np.generic) else x


def _plain(key: tuple) -> tuple:
    return tuple(v.item() if isinstance(v, np.generic) else v for v in key)


def _window_order(keep, values, codes, window):
    """Stable sort by weight inside consecutive windows of ``window`` rows (and group runs)."""
    n = len(keep)
    run = np.zeros(n, dtype=np.int64)
    for c in codes:
        ck = c[keep]
        run[1:] += np.cumsum(ck[1:] != ck[:-1])
    order = np.lexsort((values[keep], run, np.arange(n) // window))
    return keep[order]


# --------------------------------------------------------------------------- kernel wrappers


def _limits(opts: BatchOptions, is_float: bool):
    """Thresholds for the '>' and '>=' tests, exact for integer weights."""
    lim = opts.limit
    if is_float:
        return float(lim), float(lim)
    big = float(kernels.I64_MAX)
    gt = kernels.I64_MAX if lim >= big else int(math.floor(lim))
    ge = kernels.I64_MAX if lim >= big else int(math.ceil(lim))
    return gt, ge


def _walk(w, newgrp, carry_state, opts, is_float, spec=None, record=0, base=None):
    """Run :func:`kernels.walk_batches`; ``record`` rows of start flags, or ids from ``base``."""
    rows, tot, mx, start, tail = carry_state
    gt, ge = _limits(opts, is_float)
    dtype = np.float64 if is_float else np.int64
    out = np.zeros(min(record, len(w)), dtype=bool)
    ids = np.empty(len(w) if base is not None else 0, dtype=np.int64)
    res = kernels.walk_batches(
        w, newgrp, np.asarray(tail, dtype=dtype), rows, dtype(tot), dtype(mx), start,
        opts.mode == "greedy", opts.cost == "padded", is_float, gt, ge,
        opts.max_rows or 0, opts.multiple or 0,
        spec if spec is not None else np.zeros(0, dtype=bool), out, ids, base or 0,
    )
    return res, (ids if base is not None else out)


def _tail(prev_tail, w, rows, multiple) -> tuple:
    keep = min(rows, (multiple or 1) - 1)
    if keep <= 0:
        return ()
    ext = np.concatenate([np.asarray(prev_tail, dtype=w.dtype), w])
    return tuple(ext[len(ext) - keep:].tolist())


def _floor_limits(opts, is_float):
    """(float limit, integer limit or 0): integer cells for integer sums and an integer limit."""
    lim = opts.limit
    exact = not is_float and float(lim).is_integer() and lim < 2**63
    return float(lim), (int(lim) if exact else 0)


def _floor_flags(w, newgrp, s_in, cell_prev, has_prev, opts, is_float, record, base=None):
    lim_f, lim_i = _floor_limits(opts, is_float)
    out = np.zeros(len(w) if record else 0, dtype=bool)
    ids = np.empty(len(w) if base is not None else 0, dtype=np.int64)
    s_in = np.float64(s_in) if is_float else np.int64(s_in)
    res = kernels.floor_walk(
        w, newgrp, s_in, np.int64(cell_prev), has_prev, lim_f, lim_i, not is_float, out, ids, base or 0
    )
    return res, (ids if base is not None else out)


def _cell(s, opts, is_float):
    """The grid cell of running sum ``s``, computed exactly as :func:`kernels.grid_cell` does."""
    lim_f, lim_i = _floor_limits(opts, is_float)
    if lim_i:
        return int(s) // lim_i
    q = math.floor(float(np.float64(s) / np.float64(lim_f)))
    return min(q, kernels.CELL_MAX)


# --------------------------------------------------------------------------- summaries (map)


@dataclass
class Summary:
    """What one partition tells the scan: O(1) plus a head of rows (see module docstring)."""

    n_all: int
    n: int
    n_invalid: int = 0
    first_invalid: object = None
    first_oversize: object = None
    first_key: tuple = ()
    last_key: tuple = ()
    # greedy / fill
    w_head: np.ndarray | None = None
    grp_head: np.ndarray | None = None
    spec_head: np.ndarray | None = None  # speculative start flags over the head
    spec_starts: int = 0
    spec_end: tuple | None = None  # (rows, tot, mx, start, tail) at the end, start local
    spec_overflow: int = -1
    chain: "Chain | None" = None  # where the true path leads from a start in the head (see Chain)
    # floor
    g_first: int = 0
    risky_p: np.ndarray | None = None
    risky_w: np.ndarray | None = None
    p_last: float | int = 0
    t_first: float | int = 0
    rest_starts: int = 0
    rest_s: float | int = 0
    rest_cell: float | int = 0


def summarize(df: pd.DataFrame, opts: BatchOptions, is_float: bool, head_bytes: int = 0,
              prefer_whole: bool = False) -> Summary:
    """The map step: one partition's summary (DESIGN.md "The parallel algorithm", step 1).

    Partitions of at most ``HEAD_ROWS`` rows are kept whole; so are those whose compacted
    weights take at most ``head_bytes`` and that a short head does not resolve, before a chain
    table is tried when ``prefer_whole`` (summaries that need not travel), after it otherwise.
    """
    prep = prepare(df, opts)
    w, n = prep.w, len(prep.w)
    summ = Summary(n_all=prep.n_all, n=n, first_key=prep.first_key, last_key=prep.last_key)
    if prep.invalid is not None and prep.invalid.any():
        summ.n_invalid = int(prep.invalid.sum())
        summ.first_invalid = df.index[int(np.argmax(prep.invalid))]
    if opts.oversize == "raise" and n:
        heavy = w > opts.limit
        if heavy.any():
            row = int(np.argmax(heavy))
            summ.first_oversize = (df.index[prep.position(row)], w[row])
    if n == 0:
        return summ
    if opts.mode == "floor":
        _summarize_floor(summ, prep, opts, is_float)
    else:
        _summarize_walk(summ, prep, opts, is_float, head_bytes, prefer_whole)
    return summ


def _summarize_walk(summ, prep, opts, is_float, head_bytes, prefer_whole):
    """Speculative walk and head: partitions of at most ``HEAD_ROWS`` rows are kept whole,
    longer ones as :func:`_long_head` decides."""
    w, newgrp, n = prep.w, prep.newgrp, len(prep.w)
    # start flags for every row (n bytes): a head that grows later needs no second walk
    (count, _, rows, tot, mx, start, _, overflow), spec = _walk(
        w, newgrp, (0, 0, 0, 0, ()), opts, is_float, record=n
    )
    dtype = _compact_dtype(w)
    h = n
    if overflow >= 0:
        summ.spec_overflow = int(overflow)
        if n > HEAD_ROWS:
            h = max(min(n, HEAD_MAX), int(overflow) + 1)
    else:
        summ.spec_end = (int(rows), _py(tot), _py(mx), int(start), _tail((), w, int(rows), opts.multiple))
        summ.spec_starts = int(count)
        if n > HEAD_ROWS:
            h = _long_head(summ, prep, opts, is_float, spec, head_bytes // dtype.itemsize, prefer_whole)
    summ.w_head = w[:h].astype(dtype)  # a copy, whatever the dtype
    summ.grp_head = newgrp[:h].copy() if opts.by else None
    summ.spec_head = spec[:h].copy()


def _long_head(summ, prep, opts, is_float, spec, max_rows, prefer_whole) -> int:
    """Head rows of a long partition, attaching a :class:`Chain` if needed.

    A short head (the first ``HEAD_STARTS`` speculative batches) when probe paths meet the
    speculative one inside it; else a chain table; the whole partition when neither resolves
    it and it has at most ``max_rows`` rows (the budget), before any table when
    ``prefer_whole`` (summaries that need not travel).
    """
    n = len(prep.w)
    positions = np.flatnonzero(spec[:HEAD_MAX])
    h = int(positions[HEAD_STARTS]) if len(positions) > HEAD_STARTS else HEAD_MAX
    h = min(n, max(h, HEAD_ROWS))
    if _probes_meet(prep, opts, is_float, spec, h):
        return h
    fits = n <= max_rows
    chainable = not is_float and (opts.multiple or 0) <= 1 and summ.spec_starts >= CHAIN_MIN_BATCHES
    if chainable and not (prefer_whole and fits):
        h = _chain_head(summ, prep, opts, h, spec, max_rows)
        if summ.chain is not None:
            return h
    return n if fits else h


def _probes_meet(prep, opts, is_float, spec, h) -> bool:
    """Whether paths first starting at a few rows of the first batch meet the speculative one
    inside the head. Then a chain table (about five walks' work) is likely not needed; should
    the true path still miss, the scan's fallback walk keeps the result exact."""
    starts = np.flatnonzero(spec[1:h])
    if not len(starts):
        return False
    s1 = int(starts[0]) + 1
    for j in sorted({1, s1 // 2, s1 - 1} - {0}):
        res, _ = _walk(prep.w[j:h], prep.newgrp[j:h], (0, 0, 0, 0, ()), opts, is_float, spec=spec[j:h])
        if res[6] < 0:
            return False
    return True


def _chain_head(summ, prep, opts, h, spec, max_rows) -> int:
    """Attach a :class:`Chain`; the head grows to cover its candidate rows (up to ``max_rows``)."""
    s1 = int(np.argmax(spec[1:])) + 1 if spec[1:].any() else len(spec)  # the second start
    h = max(h, min(s1 + 1, max_rows, len(spec)))
    summ.chain = chain_of(prep.w, prep.newgrp, opts, spec[:h])
    return h


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

    >>> from dask_cumbatch.options import BatchOptions
    >>> w = np.array([3, 4, 2, 5, 1, 3, 4, 2, 2, 3])
    >>> spec = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0], dtype=bool)  # the batches from row 0
    >>> chain = chain_of(w, np.zeros(10, bool), BatchOptions.make("w", 7), spec)
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
        """(starts, (rows, tot, mx, start)) of the path whose first start is row j < m."""
        r = int(np.searchsorted(self.run_start, j, side="right")) - 1
        last = int(self.last[r])
        return int(self.cnt[r]), (n - last, int(self.tot[r]), int(self.mx[r]), last)


def chain_of(w, newgrp, opts, spec_head) -> Chain | None:
    """The :class:`Chain` of a partition's integer weights ``w`` (None: overflow or too many runs)."""
    n = len(w)
    idx = np.int32 if n < 2**31 - 1 else np.int64
    nxt, cnt = np.empty(n, dtype=idx), np.empty(n, dtype=idx)
    dq = np.empty(n if opts.cost == "padded" else 1, dtype=idx)
    gt, ge = _limits(opts, False)
    if not kernels.chain_table(w, newgrp, opts.mode == "greedy", opts.cost == "padded", gt, ge,
                               opts.max_rows or 0, nxt, cnt, dq):
        return None
    del dq
    starts = np.flatnonzero(spec_head[1:])
    m = int(starts[0]) + 2 if len(starts) else len(spec_head)  # j <= the second speculative start
    last, cnt = nxt[:m].astype(np.int64), cnt[:m].astype(np.int64)
    del nxt
    change = np.flatnonzero((last[1:] != last[:-1]) | (cnt[1:] != cnt[:-1])) + 1
    if len(change) >= CHAIN_RUNS:
        return None
    run_start = np.concatenate([[0], change]).astype(np.int64)
    lasts = last[run_start]
    lo = int(lasts.min())
    suffix_sum = np.cumsum(w[lo:][::-1])[::-1]
    suffix_max = np.maximum.accumulate(w[lo:][::-1])[::-1]
    return Chain(m, run_start, cnt[run_start], lasts, suffix_sum[lasts - lo], suffix_max[lasts - lo])


def _compact_dtype(w: np.ndarray) -> np.dtype:
    """The smallest integer dtype that holds the weights ``w`` (floats keep theirs).

    >>> _compact_dtype(np.array([1, 59, 3]))
    dtype('uint8')
    """
    if w.dtype.kind == "f" or not len(w) or w.min() < 0:
        return w.dtype
    return np.min_scalar_type(int(w.max()))


def _summarize_floor(summ, prep, opts, is_float):
    w, newgrp, n = prep.w, prep.newgrp, len(prep.w)
    changes = np.flatnonzero(newgrp)
    g = int(changes[0]) if len(changes) else n
    lim_f, lim_i = _floor_limits(opts, is_float)
    threshold = lim_i if lim_i else lim_f * RISKY_FRACTION
    p_out = np.empty(g, dtype=w.dtype)
    w_out = np.empty(g, dtype=w.dtype)
    k, p_last, total, overflow = kernels.floor_risky(w, g, w.dtype.type(threshold), not is_float, p_out, w_out)
    if overflow >= 0:
        raise _overflow(opts)
    summ.g_first = g
    summ.risky_p, summ.risky_w = p_out[:k].copy(), w_out[:k].copy()
    summ.p_last, summ.t_first = _py(p_last), _py(total)
    if g < n:
        rest = w[g:]
        (count, s_out, cell, overflow), _ = _floor_flags(
            rest, newgrp[g:], 0, 0, False, opts, is_float, record=False
        )
        summ.rest_starts, summ.rest_s, summ.rest_cell = int(count), _py(s_out), _py(cell)
        if overflow >= 0:
            raise _overflow(opts)


# --------------------------------------------------------------------------- the scan


@dataclass
class Entry:
    """What the finish of one partition needs: the carried state and forced starts."""

    carry: Carry
    forced: tuple = ()  # local positions of starts placed here by a later cut-back
    all_offset: int = 0  # global position (all rows) of the partition's first row
    floor_rows: int | None = None  # floor with max_rows: rows of the open batch before row 0
    n_all: int | None = None  # rows the summary pass saw (None: not checked)


@dataclass
class PartitionPlan:
    """The scan's result: one :class:`Entry` per partition and totals."""

    entries: list
    end_state: Carry
    n_batches: int
    n_rows: int
    skipped: int
    backdated_prior: int = 0
    walked: list = field(default_factory=list)  # partitions the scan had to walk whole

    @property
    def first_ids(self) -> list:
        return [e.carry.batches for e in self.entries]


def check_summaries(summaries, opts) -> int:
    """Raise for invalid or oversize rows (DESIGN.md "Invalid input"); return the skip count."""
    skipped = sum(s.n_invalid for s in summaries)
    if skipped and opts.invalid == "raise":
        first = _py(next(s.first_invalid for s in summaries if s.n_invalid))
        raise hinted(WeightError(
            f"weight column {opts.weight!r} has {skipped} invalid value(s) (NaN, inf, missing "
            f"or negative); the first is at index {first!r}. Clean them or pass invalid='skip'."
        ), ("invalid", "skip"))
    for s in summaries:
        if s.first_oversize is not None:
            label, value = (_py(v) for v in s.first_oversize)
            raise OversizeError(
                f"row at index {label!r} has weight {value} above the limit {opts.limit} in "
                f"column {opts.weight!r}; pass oversize='allow' to put such rows alone in a batch"
            )
    return skipped


def scan(summaries, opts, is_float, load, start: Carry | None = None) -> PartitionPlan:
    """Carry the true state through the partition summaries (step 2), in one place.

    ``load(k)`` returns partition k as pandas; it is called only for partitions whose paths
    do not meet inside the head (then the partition is walked whole from the true state).
    """
    skipped = check_summaries(summaries, opts)
    carry = replace(start) if start is not None else Carry()
    entries, walked = [], []
    offsets = []  # global position (batched rows) of each partition's first row
    all_offset = 0
    backdated_prior = 0
    for k, summ in enumerate(summaries):
        entry = Entry(carry=carry, all_offset=all_offset, n_all=summ.n_all)
        entries.append(entry)
        offsets.append(carry.position)
        all_offset += summ.n_all
        if summ.n == 0:
            continue
        if opts.mode == "floor":
            carry = _scan_floor(summ, carry, opts, is_float, k, load, walked)
            continue
        count, backdated, end = _scan_walk(summ, carry, opts, is_float, k, load, walked)
        if backdated is not None:
            pos = carry.position + backdated
            j = bisect.bisect_right(offsets, pos) - 1
            if j < 0 or pos < offsets[0]:
                backdated_prior = max(backdated_prior, offsets[0] - pos)
                for e in entries:
                    e.carry = replace(e.carry, batches=e.carry.batches + 1)
            else:
                entries[j].forced = entries[j].forced + (pos - offsets[j],)
                for e in entries[j + 1:]:
                    e.carry = replace(e.carry, batches=e.carry.batches + 1)
            count += 1
        rows, tot, mx, st, tail = end
        carry = Carry(
            batches=carry.batches + count, rows=rows, tot=tot, mx=mx, start=st, tail=tail,
            has_prev=True, key=summ.last_key, position=carry.position + summ.n,
        )
    n_rows = carry.position - (start.position if start else 0)
    n_batches = carry.batches - (start.batches if start else 0)
    return PartitionPlan(entries, carry, n_batches, n_rows, skipped, backdated_prior, walked)


def _row0_group_change(summ, carry, opts) -> bool:
    return bool(opts.by) and carry.has_prev and not same_key(carry.key, summ.first_key)


def _true_groups(prep, carry, opts) -> np.ndarray:
    """Group-change flags with row 0 compared against the carried last key."""
    grp = prep.newgrp.copy()
    if len(grp):
        grp[0] = _row0_group_change(prep, carry, opts)
    return grp


def _scan_walk(summ, carry, opts, is_float, k, load, walked):
    """True starts, backdated start and end state of one partition (greedy/fill)."""
    w_head = summ.w_head.astype(np.float64 if is_float else np.int64, copy=False)
    grp = summ.grp_head.copy() if summ.grp_head is not None else np.zeros(len(w_head), dtype=bool)
    grp[0] = _row0_group_change(summ, carry, opts)
    state = (carry.rows, carry.tot, carry.mx, carry.start - carry.position, carry.tail)
    (count, backdated, rows, tot, mx, st, met, overflow), starts = _walk(
        w_head, grp, state, opts, is_float, spec=summ.spec_head,
        record=len(w_head) if summ.chain is not None else 0,
    )
    if overflow >= 0:
        raise _overflow(opts)
    backdated = None if backdated == kernels.NO_POSITION else int(backdated)
    h = len(w_head)
    if met >= 0:
        if summ.spec_overflow >= 0:
            raise _overflow(opts)
        count = int(count) + summ.spec_starts - int(summ.spec_head[: met + 1].sum())
        rows, tot, mx, st, tail = summ.spec_end
        return count, backdated, (rows, tot, mx, carry.position + st, tail)
    if h == summ.n:
        tail = _tail(carry.tail, w_head, int(rows), opts.multiple)
        return int(count), backdated, (int(rows), _py(tot), _py(mx), carry.position + int(st), tail)
    if summ.chain is not None and count > 0:
        j = int(np.argmax(starts))  # the true path's first start
        if j < summ.chain.m:
            count, (rows, tot, mx, st) = summ.chain.outcome(j, summ.n)
            return count, None, (rows, tot, mx, carry.position + st, ())
    walked.append(k)
    return walk_whole(load(k), opts, is_float, carry)


def walk_whole(df, opts, is_float, carry):
    """Walk a whole partition from the true state (the scan's fallback): same return as _scan_walk."""
    prep = prepare(df, opts)
    grp = _true_groups(prep, carry, opts)
    state = (carry.rows, carry.tot, carry.mx, carry.start - carry.position, carry.tail)
    (count, backdated, rows, tot, mx, st, _, overflow), _ = _walk(prep.w, grp, state, opts, is_float)
    if overflow >= 0:
        raise _overflow(opts)
    backdated = None if backdated == kernels.NO_POSITION else int(backdated)
    tail = _tail(carry.tail, prep.w, int(rows), opts.multiple)
    return int(count), backdated, (int(rows), _py(tot), _py(mx), carry.position + int(st), tail)


def _overflow(opts):
    return OverflowError(
        f"the int64 running sum of weight column {opts.weight!r} overflows; "
        "use a smaller limit or float weights"
    )


def _scan_floor(summ, carry, opts, is_float, k, load, walked):
    row0_new = not carry.has_prev or _row0_group_change(summ, carry, opts)
    base = 0 if row0_new else carry.s
    c0 = _cell(base, opts, is_float)
    count = 1 if row0_new or c0 != carry.cell else 0
    if is_float and max(abs(float(base)), abs(float(base) + float(summ.t_first))) / float(opts.limit) > FLOAT_GRID_SAFE:
        walked.append(k)
        return floor_walk_whole(load(k), opts, is_float, carry)
    add = (lambda a, b: np.float64(a) + np.float64(b)) if is_float else _checked_add(opts)
    c_last = _cell(add(base, summ.p_last), opts, is_float)
    count += c_last - c0
    for p, w in zip(summ.risky_p.tolist(), summ.risky_w.tolist()):
        a = _cell(add(base, p), opts, is_float)
        b = _cell(add(base, (np.float64(p) + np.float64(w)) if is_float else p + w), opts, is_float)
        if b - a > 1:
            count -= b - a - 1
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


def _checked_add(opts):
    def add(a, b):
        total = int(a) + int(b)
        if total > kernels.I64_MAX:
            raise _overflow(opts)
        return total
    return add


def floor_walk_whole(df, opts, is_float, carry):
    """Walk a whole floor partition from the true state (fallback for huge running sums)."""
    prep = prepare(df, opts)
    grp = _true_groups(prep, carry, opts)
    (count, s_out, cell, overflow), _ = _floor_flags(
        prep.w, grp, carry.s, carry.cell, carry.has_prev, opts, is_float, record=False
    )
    if overflow >= 0:
        raise _overflow(opts)
    return Carry(
        batches=carry.batches + int(count), s=_py(s_out), cell=_py(cell), has_prev=True,
        key=prep.last_key, position=carry.position + len(prep.w),
    )


def plan_frame(df: pd.DataFrame, opts, is_float, start: Carry | None = None) -> PartitionPlan:
    """Summary, scan and finish plan of one pandas frame, without Dask (pandas input).

    >>> opts = BatchOptions.make("w", 6)
    >>> plan_frame(pd.DataFrame({"w": [3, 3, 3]}), opts, False).n_batches
    2
    """
    # nothing travels: keep the frame whole in its summary rather than build a chain table
    summ = summarize(df, opts, is_float, head_bytes=HEAD_BUDGET, prefer_whole=True)
    plan = scan([summ], opts, is_float, lambda k: df, start=start)
    if opts.mode == "floor" and opts.max_rows:
        plan = scan_floor_caps([floor_cap_summary(df, opts, is_float, plan.entries[0])], plan, opts)
    return plan


# --------------------------------------------------------------------------- floor with max_rows


@dataclass
class CapSummary:
    """Floor with ``max_rows``, second pass: where the grid starts fall once S is known."""

    n: int
    first_flag: int  # first grid/group start (n if none)
    after_caps: int  # row-cap starts from first_flag on
    after_rows: int  # rows of the open batch at the end, counted from first_flag on


def floor_cap_summary(df, opts, is_float, entry: Entry) -> CapSummary:
    """Second pass for floor + max_rows: grid starts are fixed once the running sum is known."""
    flags, prep = _floor_partition_flags(df, opts, is_float, entry.carry)
    n = len(flags)
    first = int(np.argmax(flags)) if flags.any() else n
    if first == n:
        return CapSummary(n, n, 0, 0)
    out = np.zeros(n - first, dtype=bool)
    count, rows, _ = kernels.cap_walk(flags[first:], 0, opts.max_rows, out)
    return CapSummary(n, first, int(count) - int(flags[first:].sum()), int(rows))


def scan_floor_caps(caps, plan: PartitionPlan, opts) -> PartitionPlan:
    """Add the row-cap starts to a floor plan; fills ``Entry.floor_rows``."""
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


# --------------------------------------------------------------------------- finish


def _floor_partition_flags(df, opts, is_float, carry, base=None):
    prep = prepare(df, opts, checked=True)
    grp = _true_groups(prep, carry, opts)
    (_, _, _, overflow), out = _floor_flags(
        prep.w, grp, carry.s, carry.cell, carry.has_prev, opts, is_float,
        record=base is None, base=base,
    )
    if overflow >= 0:
        raise _overflow(opts)
    return out, prep


def batch_ids(df, opts, is_float, entry: Entry):
    """Final batch ids of a partition's batched rows from its true entry state, and the prep."""
    carry = entry.carry
    if entry.n_all is not None and len(df) != entry.n_all:
        raise RuntimeError(
            f"a partition has {len(df)} rows where the summary pass saw {entry.n_all}: "
            "the input changed while it was being batched"
        )
    if opts.mode == "floor":
        if not opts.max_rows:
            return _floor_partition_flags(df, opts, is_float, carry, base=carry.batches)
        flags, prep = _floor_partition_flags(df, opts, is_float, carry)
        starts = np.zeros(len(flags), dtype=bool)
        kernels.cap_walk(flags, entry.floor_rows or 0, opts.max_rows, starts)
        return kernels.starts_to_ids(starts, carry.batches), prep
    prep = prepare(df, opts, checked=True)
    grp = _true_groups(prep, carry, opts)
    state = (carry.rows, carry.tot, carry.mx, carry.start - carry.position, carry.tail)
    res, ids = _walk(prep.w, grp, state, opts, is_float, base=carry.batches)
    if res[7] >= 0:
        raise _overflow(opts)
    for p in sorted(entry.forced):  # starts a later cut-back placed in this partition's tail
        ids[p:] += 1
    return ids, prep


def finish_ids(df, opts, is_float, entry: Entry) -> pd.Series:
    """Step 3: the final batch ids of a partition (``Int64`` with <NA> for skipped rows)."""
    ids, prep = batch_ids(df, opts, is_float, entry)
    if opts.invalid == "skip":
        values = np.zeros(prep.n_all, dtype=np.int64)
        values[prep.positions()] = ids
        mask = np.ones(prep.n_all, dtype=bool)
        mask[prep.positions()] = False
        return pd.Series(pd.arrays.IntegerArray(values, mask), index=df.index, name=opts.name)
    if prep.keep is not None:
        out = np.empty(prep.n_all, dtype=np.int64)
        out[prep.keep] = ids
        ids = out
    return pd.Series(ids, index=df.index, name=opts.name, copy=False)


def finish_frame(df, opts, is_float, entry: Entry, weight_column=None) -> pd.DataFrame:
    """The partition's batched rows in batching order with the id column (skipped rows dropped)."""
    ids, prep = batch_ids(df, opts, is_float, entry)
    out = df if prep.keep is None else df.iloc[prep.keep]
    if weight_column is not None:
        out = out.drop(columns=[weight_column])
    return out.assign(**{opts.name: ids})


def finish_stats(df, opts, is_float, entry: Entry) -> pd.DataFrame:
    """Per-batch rows/total/max/start/stop of a partition's rows (combined across partitions later)."""
    ids, prep = batch_ids(df, opts, is_float, entry)
    positions = prep.positions() + entry.all_offset
    batch, rows, total, mx, first, last = kernels.batch_stats(ids, prep.w, positions)
    return pd.DataFrame(
        {"batch": batch, "rows": rows, "total": total, "max": mx, "start": first, "stop": last + 1}
    )
