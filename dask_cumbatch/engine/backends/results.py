"""The named results of the backend kernels: what each kernel's tuple holds, field by field.

The kernels themselves (compiled by numba, or launched on a GPU) return plain tuples; the
:class:`~dask_cumbatch.engine.backends.Backend` the engine holds wraps each call once (one
tuple per call, never per row), so the engine reads ``res.met`` rather than ``res[6]``.

>>> Walk(2, NO_POSITION, 1, 3, 3, 4, -1, -1).met
-1
"""
from __future__ import annotations

from typing import Any, NamedTuple

NO_POSITION = -(2**63)  # as the kernels' NO_POSITION: "no such row"


class Walk(NamedTuple):
    """A greedy/fill walk (``walk_batches``, ``greedy_walk``, ``greedy_starts``,
    ``greedy_sums_starts``): ``count`` batch starts, a ``backdated`` start before row 0 (a
    ``multiple`` cut-back; ``NO_POSITION`` if none), the open batch at the end (``rows``,
    weight total ``tot``, maximum ``mx``, first row ``start``, local), the row where the walk
    ``met`` the speculative flags (-1: never) and the first row whose sum left int64
    (``overflow``, -1: none). ``greedy_sums_starts`` reports ``count`` -1 where its prefix sums
    would leave int64.

    >>> Walk(1, NO_POSITION, 2, 5, 3, 0, -1, -1).rows
    2
    """

    count: int
    backdated: int
    rows: int
    tot: Any
    mx: Any
    start: int
    met: int
    overflow: int


class FloorWalk(NamedTuple):
    """``floor_walk``: ``count`` grid/group starts, the running sum ``s_out`` and grid ``cell``
    after the partition, the first row whose int64 sum overflowed (-1: none).

    >>> FloorWalk(2, 12, 2, -1).cell
    2
    """

    count: int
    s_out: Any
    cell: int
    overflow: int


class RiskyRows(NamedTuple):
    """``floor_risky``: ``k`` risky rows written out, the running sum before the segment's last
    row (``p_last``) and after it (``total``), the first overflowing row (-1: none).

    >>> RiskyRows(0, 3, 5, -1).total
    5
    """

    k: int
    p_last: Any
    total: Any
    overflow: int


class QuickSummary(NamedTuple):
    """``floor_summary_float``/``floor_summary_int``: whether every weight was valid (``done``;
    False: declined), then as :class:`RiskyRows` for the whole partition.

    >>> QuickSummary(True, 0, 1.0, 2.0).done
    True
    """

    done: bool
    k: int
    p_last: Any
    total: Any


class QuickIds(NamedTuple):
    """``floor_ids_quick``: the first overflowing row (-1: none) and the partition's running total.

    >>> QuickIds(-1, 7).total
    7
    """

    overflow: int
    total: Any


class CapWalk(NamedTuple):
    """``cap_walk``: ``count`` starts (the mode's and the row caps'), the open batch's ``rows``
    at the end, the first row the mode flagged (``first_flag``; the flags' length if none).

    >>> CapWalk(3, 1, 0).first_flag
    0
    """

    count: int
    rows: int
    first_flag: int


class SumsEnd(NamedTuple):
    """``greedy_sums_end``: ``count`` starts and the ``last`` start (-1: the carried batch takes
    every row); ``count`` -1 where the prefix sums would leave int64.

    >>> SumsEnd(2, 5).last
    5
    """

    count: int
    last: int


class ValidBits(NamedTuple):
    """``valid_bits_total``: whether every float64 weight is finite and >= 0, and the wrapping
    uint64 sum of the weights' bits.

    >>> ValidBits(True, 0).valid
    True
    """

    valid: bool
    total: Any


class BatchStats(NamedTuple):
    """``batch_stats``: per batch its id, row count, weight total and maximum, and the lowest
    and highest position of its rows.

    >>> BatchStats([0], [2], [5], [3], [0], [1]).total
    [5]
    """

    batch: Any
    rows: Any
    total: Any
    max: Any
    first: Any
    last: Any


class ExactWalk(NamedTuple):
    """``floor_exact_walk``: ``count`` starts, the partition's running sum as a double-double
    (``hi`` + ``lo``, from the last group start), whether a group start ``reset`` the carried
    sum, the last ``cell``, whether the exact sums stayed within two floats and the cells within
    the kernel's range (``ok``; else Python walks), and the float running sum ``p``.

    >>> ExactWalk(1, 2.0, 0.0, False, 0, True, 3).ok
    True
    """

    count: int
    hi: float
    lo: float
    reset: bool
    cell: int
    ok: bool
    p: float


class ExactRisky(NamedTuple):
    """``floor_exact_risky``: ``k`` risky rows written out, the exact running sum before the
    segment's last row (``last_hi`` + ``last_lo``) and after it (``total_hi`` + ``total_lo``),
    and whether a double-double held them (``ok``).

    >>> ExactRisky(0, 1.0, 0.0, 2.0, 0.0, True).total_hi
    2.0
    """

    k: int
    last_hi: float
    last_lo: float
    total_hi: float
    total_lo: float
    ok: bool


class ExactSum(NamedTuple):
    """``floor_exact_sum``: the exact sum as a double-double (``hi`` + ``lo``), and whether it held.

    >>> ExactSum(3.0, 0.0, True).hi
    3.0
    """

    hi: float
    lo: float
    ok: bool


# kernel name -> the NamedTuple its tuple becomes at the backend boundary
NAMED_RESULTS = {
    "walk_batches": Walk, "greedy_walk": Walk, "greedy_starts": Walk, "greedy_sums_starts": Walk,
    "floor_walk": FloorWalk, "floor_risky": RiskyRows, "floor_summary_float": QuickSummary,
    "floor_summary_int": QuickSummary, "floor_ids_quick": QuickIds, "cap_walk": CapWalk,
    "greedy_sums_end": SumsEnd, "valid_bits_total": ValidBits, "batch_stats": BatchStats,
    "floor_exact_walk": ExactWalk, "floor_exact_risky": ExactRisky, "floor_exact_sum": ExactSum,
}
