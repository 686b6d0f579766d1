"""A pandas partition -> the weight and key arrays the kernels need: the only pandas code in the engine.

Weights become int64 (ints and bools, exact) or float64, with an invalid mask; ``by`` keys
become group-change flags; ``sort_window`` reorders rows into batching order.

Data placement: the engine keeps host (NumPy) arrays and the backend moves them at the kernel
call (``asarray``/``to_numpy``), so a pandas partition sends only its weight (and group flags)
to the device and gets ids back. A cuDF partition (dask-cudf) keeps its frame on the device:
only its weight and key columns are read (:func:`host_columns`) and the ids go back as a cuDF
column (:func:`like_partition`). cuDF is recognised by module name and never imported here.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..options import BatchOptions, decimal_scale
from .backends import backend_for, backend_of
from .state import same_key

I64_MAX = np.iinfo(np.int64).max

def invalid_mask(weights: pd.Series) -> np.ndarray:
    """Rows whose weight is missing, NaN, infinite or negative.

    >>> invalid_mask(pd.Series([1.0, float("nan"), -2.0, float("inf"), 0.0])).tolist()
    [False, True, True, True, False]
    """
    return weight_values(weights)[1]


_NO_INVALID = np.zeros(0, dtype=bool)  # "no invalid row", without a mask per row


def weight_values(col: pd.Series, check: bool = True, backend=None):
    """(values as int64 or float64 for every row, invalid mask).

    ``check=False`` skips the validity test of plain NumPy columns (a summary already proved
    them valid). ``backend`` runs the validity count; None: the CPU backend (no options name a
    device here: the weights are host arrays).

    >>> values, invalid = weight_values(pd.Series([1, 2]))
    >>> values.tolist(), invalid.tolist()
    ([1, 2], [])
    """
    return _checked_weights(col, check, backend, "cpu")[:2]


def _checked_weights(col: pd.Series, check: bool, backend, device: str):
    """:func:`weight_values` plus the weights' bit total where the validity test formed it
    (float64 weights, all valid), else None; ``backend`` None: ``device``'s (resolved only where
    a validity test runs)."""
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":  # fast path: plain NumPy columns
        if dtype.kind == "u" and dtype.itemsize == 8 and len(col) and col.to_numpy().max() > I64_MAX:
            raise OverflowError(
                f"weight column {col.name!r} holds values above 2**63-1; weights are summed in int64"
            )
        values = col.to_numpy(dtype=np.float64 if dtype.kind == "f" else np.int64)
        return _checked_array(values, check and dtype.kind in "fi", backend, device)
    na = col.isna().to_numpy(dtype=bool)
    if pd.api.types.is_bool_dtype(dtype):  # via bool: bool[pyarrow] refuses an int na_value
        return col.to_numpy(dtype=bool, na_value=False).astype(np.int64), na, None
    if decimal_scale(dtype) is not None or dtype == object:
        values = whole_decimals(col)
        if values is not None:
            return values, na | (values < 0), None
    if pd.api.types.is_integer_dtype(dtype):
        if pd.api.types.is_unsigned_integer_dtype(dtype) and len(col) and not na.all():
            if int(col.max()) > I64_MAX:
                raise OverflowError(
                    f"weight column {col.name!r} holds values above 2**63-1; "
                    "weights are summed in int64"
                )
        values = col.to_numpy(dtype=np.int64, na_value=0)
        return values, na | (values < 0), None
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return values, ~np.isfinite(values) | (values < 0), None


def whole_decimals(col: pd.Series) -> np.ndarray | None:
    """Decimal weights as exact int64 (missing as 0): an Arrow decimal column, or the Python
    ``Decimal`` objects pyarrow's ``to_pandas`` makes of one; None when ``col`` holds none.

    Only whole decimals get here (``check_weight_dtype`` refuses the others): a fraction
    raises, as does a value outside int64. Never a float64 detour.

    >>> from decimal import Decimal
    >>> whole_decimals(pd.Series([Decimal(2**53 + 1), None], dtype=object)).tolist()
    [9007199254740993, 0]
    >>> whole_decimals(pd.Series([True, None], dtype=object)) is None
    True
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arrow = pa.array(col, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if not pa.types.is_decimal(arrow.type):
        return None
    try:
        ints = pc.cast(arrow, pa.int64())
    except pa.ArrowInvalid as exc:
        if "out of bounds" not in str(exc):
            raise
        raise OverflowError(f"weight column {col.name!r} holds decimals outside int64 (beyond 2**63-1); "
                            "weights are summed in int64") from None
    return pc.fill_null(ints, 0).to_numpy()


def array_weight_values(values: np.ndarray, check: bool = True, backend=None):
    """:func:`weight_values` of a float64 or int64 NumPy array (no missing values there).

    >>> array_weight_values(np.array([1.0, -1.0]))[1].tolist()
    [False, True]
    """
    return _checked_array(values, check, backend, "cpu")[:2]


def _checked_array(values: np.ndarray, check: bool, backend, device: str):
    """:func:`array_weight_values` plus the float weights' bit total (:func:`bits_total`) where
    the backend's validity test formed it in the same pass (``valid_bits_total``), else None.
    ``backend`` None: ``device``'s, resolved here (only float weights need one)."""
    if values.dtype.kind == "f":
        if not check:
            return values, _NO_INVALID, None
        be = backend_of(backend) if backend is not None else backend_for(device, len(values))
        if be.valid_bits_total is not None:
            valid, total = be.valid_bits_total(be.asarray(values))
            if valid:
                return values, _NO_INVALID, int(total)
            invalid = _invalid_floats(values)  # the quick test is not repeated by a count
            if not invalid.any():  # -0.0 fails the quick test alone; the total covers every row
                return values, _NO_INVALID, int(total)
            return values, invalid, None
        if be.count_invalid(be.asarray(values)) == 0:
            return values, _NO_INVALID, None
        return values, _invalid_floats(values), None
    if not check or values.min(initial=0) >= 0:
        return values, _NO_INVALID, None
    return values, values < 0, None


def _invalid_floats(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~((values >= 0) & (values < np.inf))


def bits_total(w: np.ndarray) -> int:
    """The sum of a float64 array's bits read as uint64, modulo 2**64: a fingerprint of the
    weights that is exact and the same in any order (the greedy and fill summaries record it,
    their finish checks it; ``Summary.total_kind`` "bits").

    >>> bits_total(np.array([1.0, 2.0])) == bits_total(np.array([2.0, 1.0]))
    True
    >>> bits_total(np.array([1.0, 2.0])) == bits_total(np.array([1.0, np.nextafter(2.0, 3.0)]))
    False
    """
    return int(np.ascontiguousarray(w, dtype=np.float64).view(np.uint64).sum(dtype=np.uint64))


def is_cudf(obj) -> bool:
    """Whether ``obj`` is a cuDF object (a dask-cudf partition), without importing cuDF.

    >>> is_cudf(pd.DataFrame()), is_cudf(type("DataFrame", (), {"__module__": "cudf.core.dataframe"})())
    (False, True)
    """
    return type(obj).__module__.split(".")[0] == "cudf"


def host_columns(df, opts: BatchOptions):
    """The columns the kernels need (weight, ``by`` keys) as pandas; other columns stay put.

    A pandas partition is returned as it is; a cuDF partition copies just those columns (and
    its index) to the host.

    >>> from dask_cumbatch.options import BatchOptions
    >>> df = pd.DataFrame({"w": [1], "x": [2]})
    >>> host_columns(df, BatchOptions.make("w", 5)) is df
    True
    """
    if not is_cudf(df):
        return df
    return df[list(dict.fromkeys((opts.weight, *opts.by)))].to_pandas()


def like_partition(ids: pd.Series, df):
    """``ids`` (pandas) as a Series of ``df``'s kind: a cuDF column for a cuDF partition.

    >>> ids = pd.Series([0, 0, 1], name="batch")
    >>> like_partition(ids, pd.DataFrame({"w": [1, 2, 3]})) is ids
    True
    """
    if not is_cudf(df):
        return ids
    return sys.modules["cudf"].Series.from_pandas(ids)  # cudf is imported: df is one of its frames


def group_codes(df: pd.DataFrame, by: tuple) -> list[np.ndarray]:
    """One integer code array per key column (missing keys share a code).

    >>> [c.tolist() for c in group_codes(pd.DataFrame({"k": ["a", "a", "b"]}), ("k",))]
    [[0, 0, 1]]
    """
    return [pd.factorize(df[k], use_na_sentinel=True)[0] for k in by]


@dataclass
class PartitionArrays:
    """A partition reduced to what the kernels need (rows in batching order).

    >>> from dask_cumbatch.options import BatchOptions
    >>> arrays = prepare(pd.DataFrame({"w": [1.0, float("nan"), 2.0]}), BatchOptions.make("w", 5))
    >>> arrays.w.tolist(), arrays.positions().tolist(), arrays.n_all
    ([1.0, 2.0], [0, 2], 3)
    """

    w: np.ndarray  # valid weights, int64 or float64, in batching order
    newgrp: np.ndarray  # bool, group change from the previous valid row; [0] is False
    keep: np.ndarray | None  # positions of the valid rows in batching order; None: all, in order
    n_all: int
    invalid: np.ndarray | None  # bool mask over all rows (None: every row is valid)
    first_key: tuple
    last_key: tuple
    bits: int | None = None  # bits_total(w), where the validity test formed it (else not known)

    def position(self, i: int) -> int:
        """Position in the partition of the i-th batched row.

        >>> PartitionArrays(np.zeros(1), np.zeros(1, bool), np.array([4]), 5, None, (), ()).position(0)
        4
        """
        return i if self.keep is None else int(self.keep[i])

    def positions(self) -> np.ndarray:
        """Positions in the partition of all batched rows.

        >>> PartitionArrays(np.zeros(2), np.zeros(2, bool), None, 2, None, (), ()).positions().tolist()
        [0, 1]
        """
        return np.arange(len(self.w), dtype=np.int64) if self.keep is None else self.keep.astype(np.int64)


def prepare(df: pd.DataFrame, opts: BatchOptions, checked: bool = False, backend=None) -> PartitionArrays:
    """Extract weights, validity, group changes and the batching order of a partition.

    ``checked``: the summary pass already found no invalid row (``invalid="raise"``).
    ``backend``: the one the caller resolved; None: ``opts.device``'s.

    >>> from dask_cumbatch.options import BatchOptions
    >>> prepare(pd.DataFrame({"w": [1, 2], "k": [0, 1]}), BatchOptions.make("w", 5, by="k")).newgrp.tolist()
    [False, True]
    """
    check = not (checked and opts.invalid == "raise")
    n_all, df = len(df), host_columns(df, opts)
    values, invalid, bits = _checked_weights(df[opts.weight], check, backend, opts.device)
    codes = group_codes(df, opts.by) if opts.by else []
    return _arrays(values, invalid, codes, df, opts, n_all, bits)


def prepare_weights(values: np.ndarray, opts: BatchOptions, backend=None) -> PartitionArrays:
    """:func:`prepare` of a partition given as its weight column alone: a float64 or int64
    NumPy array (no ``by`` keys), for partitions sliced from one in-memory column.

    >>> from dask_cumbatch.options import BatchOptions
    >>> prepare_weights(np.array([1.0, -1.0, 2.0]), BatchOptions.make("w", 5, invalid="skip")).w.tolist()
    [1.0, 2.0]
    """
    if opts.by:
        raise ValueError("prepare_weights: a partition batched by keys needs its key columns (prepare)")
    values, invalid, bits = _checked_array(values, True, backend, opts.device)
    return _arrays(values, invalid, [], None, opts, len(values), bits)


def unchecked_weights(values: np.ndarray) -> PartitionArrays:
    """The arrays of a partition of plain weights (float64 or int64, no keys, in row order)
    whose validity is not checked yet: for a mode's ``quick_summary``, whose kernel checks
    every weight as it reads it. Nothing else may use them before that check passed.

    >>> unchecked_weights(np.array([1.0, 2.0])).invalid is None
    True
    """
    return PartitionArrays(values, np.zeros(len(values), dtype=bool), None, len(values), None, (), ())


def plain_weights(df: pd.DataFrame, opts: BatchOptions) -> np.ndarray | None:
    """A pandas partition's weights as they are, where a quick summary may read them: a
    float64 or int64 NumPy column; else None (which options allow a quick summary, the
    scan decides).

    >>> plain_weights(pd.DataFrame({"w": [1.0]}), BatchOptions.make("w", 5)).tolist()
    [1.0]
    """
    if not isinstance(df, pd.DataFrame):
        return None
    col = df[opts.weight]
    if col.dtype not in (np.dtype(np.float64), np.dtype(np.int64)):
        return None
    return col.to_numpy()


def _arrays(values, invalid, codes, df, opts, n_all, bits=None) -> PartitionArrays:
    if invalid is _NO_INVALID:
        invalid = None
    keep = np.flatnonzero(~invalid) if invalid is not None and invalid.any() else None
    if opts.sort_window:
        keep = window_order(np.arange(len(values)) if keep is None else keep, values, codes, opts.sort_window)
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
    return PartitionArrays(w, newgrp, keep, n_all, invalid, plain_key(first), plain_key(last), bits)


def window_order(keep, values, codes, window):
    """Stable sort by weight inside consecutive windows of ``window`` rows (and group runs).

    >>> window_order(np.arange(4), np.array([3, 1, 2, 0]), [], 2).tolist()
    [1, 0, 3, 2]
    """
    n = len(keep)
    run = np.zeros(n, dtype=np.int64)
    for c in codes:
        ck = c[keep]
        run[1:] += np.cumsum(ck[1:] != ck[:-1])
    order = np.lexsort((values[keep], run, np.arange(n) // window))
    return keep[order]


def plain_key(key: tuple) -> tuple:
    """A key tuple with NumPy scalars as plain Python values.

    >>> plain_key((np.int64(3), "a"))
    (3, 'a')
    """
    return tuple(v.item() if isinstance(v, np.generic) else v for v in key)


def row0_group_change(arrays, carry, opts) -> bool:
    """Whether row 0 (of a summary or partition) starts a new group after the carried key.

    >>> from dask_cumbatch.engine.state import Carry, Summary
    >>> from dask_cumbatch.options import BatchOptions
    >>> row0_group_change(Summary(first_key=("b",)), Carry(has_prev=True, key=("a",)), BatchOptions.make("w", 5, by="k"))
    True
    """
    return bool(opts.by) and carry.has_prev and not same_key(carry.key, arrays.first_key)


def true_groups(arrays, carry, opts) -> np.ndarray:
    """Group-change flags with row 0 compared against the carried last key.

    >>> from dask_cumbatch.engine.state import Carry
    >>> from dask_cumbatch.options import BatchOptions
    >>> arrays = prepare(pd.DataFrame({"w": [1, 2], "k": [0, 1]}), BatchOptions.make("w", 5, by="k"))
    >>> true_groups(arrays, Carry(), BatchOptions.make("w", 5, by="k")).tolist()
    [False, True]
    """
    if not opts.by:  # no group changes at all: the partition's own all-false flags (only read)
        return arrays.newgrp
    grp = arrays.newgrp.copy()
    if len(grp):
        grp[0] = row0_group_change(arrays, carry, opts)
    return grp
