"""A plain sequential reference for dask-cumbatch batch ids.

This module is deliberately slow and simple: one Python loop over a list of weights that
follows ``docs/design.md`` rule by rule. It is written independently of the library (it
does not import ``dask_cumbatch``) so that the tests compare two separate implementations.

Semantics (see docs/design.md, "Batch ids" and "Modes"):

* Row 0 starts batch 0. Ids are dense: they step by exactly 1 where a new batch starts.
* Row ``i > 0`` starts a new batch when

  - **group change**: ``keys`` is given and ``keys[i]`` differs from ``keys[i - 1]``
    (missing keys -- ``None``, ``NaN``, ``pd.NA``, ``NaT`` -- equal each other);
  - **row cap**: ``max_rows=R`` is given and the current batch already holds ``R`` rows;
  - **mode rule**, with ``tot``/``rows``/``mx`` the running weight, row count and max weight
    of the current batch:

    ============  ===================================  ==================================
    mode          cost="sum"                           cost="padded"
    ============  ===================================  ==================================
    ``greedy``    ``tot + w[i] > limit``               ``max(mx, w[i]) * (rows + 1) > limit``
    ``fill``      ``tot >= limit``                     ``mx * rows >= limit``
    ``floor``     ``S[i] // limit != S[i-1] // limit`` (not allowed)
    ============  ===================================  ==================================

    where ``S`` is the *exclusive* running sum of weights within the group (it resets only at a
    group change, never at a batch start).

* **multiple=m** (greedy only): when row ``i`` would start a new batch by the mode rule or the
  row cap, and the current batch (first row ``p``) holds ``r = i - p >= m`` rows, the batch is
  cut back to its first ``m * (r // m)`` rows; the rows after the cut start the next batch and
  row ``i`` is tested again against that (new, shorter) batch. A group change (or the end of the
  data) ends a batch whatever its row count.

Arithmetic (docs/design.md, "Exactness"):

* Integer (and bool) weights are Python ints, summed exactly; a running sum that an int64
  accumulator would hold and that exceeds ``2**63 - 1`` raises ``ValueError`` (the library
  raises instead of wrapping). Comparisons are exact.
* Float weights (float32 included, widened exactly) are Python floats, i.e. float64, summed
  ``tot = tot + w`` in row order from each batch's first row, so the result is what one
  sequential float64 pass gives.
* ``floor`` uses the exact value of ``floor(S / limit)``, where ``S`` is the exact (real-number)
  running sum of the weights and ``limit`` the exact value of the float64 limit: both are
  ``fractions.Fraction`` (every float64 is a fraction with a power-of-two denominator), so no
  rounding happens anywhere and the cells do not depend on the order of summation.

The weights must already be valid (finite, non-negative, not missing); ``invalid="skip"`` is
modelled by the caller running the reference on the valid rows only.
"""
from __future__ import annotations

import math
from fractions import Fraction

INT64_MAX = 2**63 - 1

__all__ = ["reference_ids", "reference_plan", "INT64_MAX", "normalise_weights", "is_missing"]


def is_missing(value) -> bool:
    """True for ``None``, float ``NaN``, ``pd.NA`` and ``NaT`` (the missing-key values)."""
    if value is None:
        return True
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        return bool(value != value)  # NaN (float or numpy floating) is the only x != x
    except Exception:
        return False


def _keys_equal(a, b) -> bool:
    """Key equality with "missing equals missing"; tuples (several ``by`` columns) elementwise."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_keys_equal(x, y) for x, y in zip(a, b))
    if is_missing(a) or is_missing(b):
        return is_missing(a) and is_missing(b)
    return bool(a == b)


def normalise_weights(weights) -> tuple[list, bool]:
    """Return ``(values, is_int)``: Python ints (ints and bools) or Python floats (float64).

    The kind is decided for the whole column: if any weight is a float the column is float.
    NumPy scalars are widened exactly (float32 -> float64, uint64 -> int).
    """
    values = list(weights)
    is_int = all(
        isinstance(v, (bool, int)) or (hasattr(v, "dtype") and v.dtype.kind in "biu") for v in values
    )
    if is_int:
        return [int(v) for v in values], True
    return [float(v) for v in values], False


class Int64Overflow(OverflowError, ValueError):
    """An int64 sum (or, against a limit beyond int64, a batch cost) leaves the int64 range."""


def _check_int64(value: int, what: str) -> int:
    if value > INT64_MAX:
        raise Int64Overflow(f"int64 overflow in the running {what}: {value} > 2**63 - 1")
    return value


def _check_cost(cost: int, limit, greedy: bool) -> None:
    """Integer weights against a limit beyond int64: the contract allows no cost beyond int64.

    Such a limit never cuts a batch whose cost fits int64; deciding against a cost beyond it
    raises (greedy compares ``cost > limit``, fill ``cost >= limit``, so fill raises from
    ``INT64_MAX`` itself).
    """
    if limit > INT64_MAX and (cost > INT64_MAX or (not greedy and cost >= INT64_MAX)):
        raise Int64Overflow(f"int64 overflow in a batch cost: {cost} against the limit {limit}")


def reference_ids(
    weights,
    limit,
    mode: str = "greedy",
    max_rows: int | None = None,
    keys=None,
    cost: str = "sum",
    multiple: int | None = None,
) -> list[int]:
    """Batch id of every row, by one sequential pass (see the module docstring).

    >>> reference_ids([3, 3, 3, 3], 6)
    [0, 0, 1, 1]
    >>> reference_ids([3, 3, 3, 3], 6, mode="fill")
    [0, 0, 1, 1]
    >>> reference_ids([2, 5, 1, 1], 6, mode="fill")
    [0, 0, 1, 1]
    """
    if mode not in ("greedy", "fill", "floor"):
        raise ValueError(f"unknown mode {mode!r}")
    if cost not in ("sum", "padded"):
        raise ValueError(f"unknown cost {cost!r}")
    if mode == "floor" and cost != "sum":
        raise ValueError("floor needs cost='sum'")
    if multiple is not None and multiple > 1 and mode != "greedy":
        raise ValueError("multiple applies to greedy only")
    if multiple is not None and multiple <= 1:
        multiple = None
    w, is_int = normalise_weights(weights)
    n = len(w)
    if keys is not None:
        keys = list(keys)
        if len(keys) != n:
            raise ValueError("keys and weights differ in length")
    if n == 0:
        return []

    ids = [0] * n

    # ---- floor: a fixed grid of the exclusive running sum, restarted at group changes ----
    if mode == "floor":
        lim = Fraction(limit)
        batch = 0
        s_prev = None  # S[i-1]
        s = Fraction(0)  # exclusive running sum S[i], exact
        for i in range(n):
            if i == 0:
                pass
            elif keys is not None and not _keys_equal(keys[i], keys[i - 1]):
                batch += 1
                s = Fraction(0)
            else:
                new = math.floor(s / lim) != math.floor(s_prev / lim)
                capped = max_rows is not None and rows >= max_rows
                if new or capped:
                    batch += 1
            if i == 0 or batch != ids[i - 1]:
                rows = 0
            ids[i] = batch
            rows += 1
            s_prev = s
            s = s + Fraction(w[i])  # exact for ints and floats alike
            if is_int:
                _check_int64(s, "group sum (floor)")
        return ids

    # ---- greedy / fill: a running state (tot, rows, mx) that restarts at each batch ----
    def state_of(lo: int, hi: int):
        """(tot, rows, mx) of a batch holding rows lo..hi-1, summed in row order."""
        tot = 0 if is_int else 0.0
        mx = 0 if is_int else 0.0
        for j in range(lo, hi):
            tot = tot + w[j]
            if is_int:
                _check_int64(tot, "batch total")
            mx = max(mx, w[j])
        return tot, hi - lo, mx

    def mode_says_new(tot, rows, mx, wi) -> bool:
        if rows == 0:
            return False  # an empty batch takes its first row whatever it weighs
        if is_int:
            _check_cost(cost_of(tot, rows, mx, wi), limit, mode == "greedy")
        if mode == "greedy":
            if cost == "sum":
                return tot + wi > limit
            return max(mx, wi) * (rows + 1) > limit
        # fill
        if cost == "sum":
            return tot >= limit
        return mx * rows >= limit

    def cost_of(tot, rows, mx, wi) -> int:
        if mode == "greedy":
            return tot + wi if cost == "sum" else max(mx, wi) * (rows + 1)
        return tot if cost == "sum" else mx * rows

    batch = 0
    p = 0  # first row of the current batch
    tot, rows, mx = state_of(0, 0)
    for i in range(n):
        if i > 0 and keys is not None and not _keys_equal(keys[i], keys[i - 1]):
            # group change: ends the batch whatever its row count, no cut-back
            batch += 1
            p = i
            tot, rows, mx = state_of(i, i)
        else:
            # test row i against the current batch, possibly several times after cut-backs
            while True:
                capped = max_rows is not None and rows >= max_rows
                if not (capped or mode_says_new(tot, rows, mx, w[i])):
                    break  # row i joins the current batch
                r = i - p
                if multiple is not None and r >= multiple and r % multiple != 0:
                    keep = multiple * (r // multiple)
                    # rows p .. p+keep-1 stay in the batch; p+keep .. i-1 start the next one
                    for j in range(p + keep, i):
                        ids[j] = batch + 1
                    batch += 1
                    p = p + keep
                    tot, rows, mx = state_of(p, i)
                    continue  # test row i again against the shortened batch
                batch += 1
                p = i
                tot, rows, mx = state_of(i, i)
                break
        ids[i] = batch
        tot = tot + w[i]
        if is_int:
            _check_int64(tot, "batch total")
        rows += 1
        mx = max(mx, w[i])
    return ids


def reference_plan(weights, ids) -> list[dict]:
    """Per-batch table from weights and (dense, monotone) ids.

    Returns one dict per batch, in order: ``batch``, ``rows``, ``total`` (summed in row order:
    exact for ints, float64 for floats), ``max``, ``start``, ``stop`` (row positions in the given
    lists, stop exclusive). Rows whose id is ``None`` (skipped) belong to no batch but still count
    in the positions.

    >>> reference_plan([3, 3, 3, 3], [0, 0, 1, 1])  # doctest: +NORMALIZE_WHITESPACE
    [{'batch': 0, 'rows': 2, 'total': 6, 'max': 3, 'start': 0, 'stop': 2},
     {'batch': 1, 'rows': 2, 'total': 6, 'max': 3, 'start': 2, 'stop': 4}]
    """
    w, is_int = normalise_weights(weights)
    out: list[dict] = []
    for pos, (wi, b) in enumerate(zip(w, ids)):
        if b is None or is_missing(b):
            continue
        b = int(b)
        if not out or out[-1]["batch"] != b:
            out.append({"batch": b, "rows": 0, "total": 0 if is_int else 0.0,
                        "max": wi, "start": pos, "stop": pos + 1})
        cur = out[-1]
        cur["rows"] += 1
        cur["total"] = cur["total"] + wi
        cur["max"] = max(cur["max"], wi)
        cur["stop"] = pos + 1
    return out
