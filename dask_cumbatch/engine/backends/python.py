"""The tiny-input backend: the CPU kernels of :mod:`.kernels` run as plain Python (no numba).

Importing numba and loading its cache of compiled kernels costs about half a second per
process; a walk over a few thousand rows in plain Python costs less. ``backend_for`` picks
this module for such inputs while numba is not loaded yet (see ``TINY_ROWS`` there). The
functions are the very ones :mod:`.cpu` compiles, so the results are identical.

>>> import numpy as np
>>> starts_to_ids(np.array([True, False, True]), 0).tolist()
[0, 0, 1]
"""
from __future__ import annotations

import numpy as np

from . import kernels
from .kernels import (  # noqa: F401
    CELL_MAX,
    I64_MAX,
    NO_POSITION,
    batch_stats,
    cap_walk,
    chain_table,
    flags_to_ids,
    floats_integral,
    floor_exact_ids,
    floor_exact_risky,
    floor_exact_sum,
    floor_exact_walk,
    floor_risky,
    floor_ids_quick,
    floor_walk,
    greedy_chain,
    greedy_sums_end,
    greedy_sums_ids,
    greedy_sums_starts,
    greedy_starts,
    greedy_walk,
    grid_cell,
    starts_to_ids,
    walk_batches,
)


def floor_summary_float(w, threshold, p_out, w_out):
    """:func:`.kernels.floor_summary_float`, quietly: its block sums may meet infinities of
    both signs (then it declines), which NumPy's scalars warn of and compiled code does not.

    >>> floor_summary_float(np.array([1.0, np.inf]), 4.0, np.zeros(2), np.zeros(2))[0]
    False
    """
    with np.errstate(all="ignore"):
        return kernels.floor_summary_float(w, threshold, p_out, w_out)


def floor_summary_int(w, threshold, p_out, w_out):
    """:func:`.kernels.floor_summary_int`, quietly: a block with a weight of 2**54 or more may
    overflow its (then unused) sum, which NumPy's scalars warn of and compiled code does not.

    >>> floor_summary_int(np.array([2**62, 2**62]), 4, np.zeros(2, np.int64), np.zeros(2, np.int64))[0]
    False
    """
    with np.errstate(all="ignore"):
        return kernels.floor_summary_int(w, threshold, p_out, w_out)


def asarray(array: np.ndarray) -> np.ndarray:
    """Host array -> backend array: the same array (NumPy on the CPU).

    >>> a = np.arange(3); asarray(a) is a
    True
    """
    return array


def to_numpy(array) -> np.ndarray:
    """Backend array -> host array: the same array.

    >>> a = np.arange(3); to_numpy(a) is a
    True
    """
    return array


def check_available() -> None:
    """Plain Python always runs.

    >>> check_available()
    """


def valid_bits_total(w):
    """:func:`.kernels.valid_bits_total`, quietly: its uint64 sum wraps by design, which NumPy's
    scalars warn of and compiled code does not.

    >>> bool(valid_bits_total(np.array([-1.0, 2.0]))[0])
    False
    """
    with np.errstate(over="ignore"):
        return kernels.valid_bits_total(w)


def count_invalid(w):
    """:func:`.kernels.count_invalid`, quietly (its quick test sums the bits, see
    :func:`valid_bits_total`).

    >>> int(count_invalid(np.array([1.0, -1.0, np.nan, 2.0])))
    2
    """
    with np.errstate(over="ignore"):
        return kernels.count_invalid(w)
