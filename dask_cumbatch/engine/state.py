"""The engine's state: the exact carry between partitions, the scan's plan, and the error
builders (the exception classes live in :mod:`dask_cumbatch.errors`).

Nothing here runs a kernel; every other engine module builds on these types.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

from ..errors import InputChangedError, OversizeError, WeightError  # re-exported: the old paths


@dataclass
class Carry:
    """The exact state between two rows: what partition k-1 hands to partition k.

    ``batches`` is the number of batches started so far (so the next new batch gets id
    ``batches``); ``rows/tot/mx`` describe the open batch, ``start`` is the global position
    (among batched rows) of its first row and ``tail`` its last ``multiple - 1`` weights;
    ``key`` is the last row's group key; ``s``/``cell`` the floor mode's running sum and
    grid cell (``s`` exact: a ``Fraction`` where float64 cannot hold it); ``position`` the
    global position of the next row.

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
    if isinstance(v, Fraction):  # floor's exact running sum of fractional weights
        return {"q": f"{v.numerator}/{v.denominator}"}
    if isinstance(v, (float, np.floating)):
        return {"f": float(v).hex()}
    return int(v)


def _num_in(v):
    if isinstance(v, dict) and set(v) == {"f"}:
        return float.fromhex(v["f"])
    if isinstance(v, dict) and set(v) == {"q"} and isinstance(v["q"], str):
        try:
            return Fraction(v["q"])
        except (ValueError, ZeroDivisionError):
            pass
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
    """Group keys equal, missing values equal to each other (docs/design.md, "Batch ids").

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

def input_changed(entry, n_all: int, total=None) -> InputChangedError:
    """The error for a partition whose rows or weight total differ from its summary's
    (``total`` None: the rows alone were compared).

    >>> str(input_changed(Entry(Carry(), n_all=2, total=4, partition=3), 3))
    'partition 3 changed between the summary and the finish pass: 3 rows where the summary saw 2 rows; the input changed while it was being batched'
    """
    if total is None:
        seen, saw = f"{n_all} rows", f"{entry.n_all} rows"
    elif entry.total_kind == "bits":  # a fingerprint, not a number anyone adds up
        seen, saw = (f"{n_all} rows / weights' bit total {total:#018x}",
                     f"{entry.n_all} rows / weights' bit total {entry.total:#018x}")
    else:
        seen, saw = f"{n_all} rows / total {total}", f"{entry.n_all} rows / total {entry.total}"
    return InputChangedError(
        f"partition {entry.partition} changed between the summary and the finish pass: {seen} "
        f"where the summary saw {saw}; the input changed while it was being batched",
        partition=entry.partition,
    )


def overflow_error(opts, what: str = "running sum") -> OverflowError:
    """The error for an int64 sum (or padded cost) that leaves the int64 range.

    >>> from dask_cumbatch.options import BatchOptions
    >>> str(overflow_error(BatchOptions.make("w", 5)))[:38]
    'the int64 running sum of weight column'
    """
    return OverflowError(
        f"the int64 {what} of weight column {opts.weight!r} overflows; "
        "use a smaller limit or float weights"
    )


def py_scalar(x):
    """A NumPy or numba scalar as a plain Python number.

    >>> type(py_scalar(np.int64(3))).__name__
    'int'
    """
    return x.item() if isinstance(x, np.generic) else x


@dataclass
class Summary:
    """What every partition tells the scan, whatever the mode; modes subclass it.

    ``total`` is the exact total of the valid weights, checked by the finish with ``n_all``:
    ``total_kind`` ``"sum"``, summed by NumPy in batching order (int64 exact; float64 the
    same bits in both passes); ``"bits"``, for float64 weights of greedy and fill (which use
    the total for nothing else), the sum of the weights' bits modulo 2**64
    (:func:`~dask_cumbatch.engine.partition.bits_total`: exact in any order, and formed by the
    summary's validity test in the same pass); or ``"running"``, the sequential running sum
    the mode's kernels form anyway in both passes (``floor`` without ``by`` or ``max_rows``: no
    pass of its own), which the mode's finish checks.

    >>> Summary(n_all=3, n=2, total=5).n_invalid
    0
    """

    n_all: int = 0
    n: int = 0
    total: object = 0
    total_kind: str = "sum"
    n_invalid: int = 0
    first_invalid: object = None
    first_oversize: object = None
    first_key: tuple = ()
    last_key: tuple = ()
    kept: str | None = None  # key of start flags kept in the summarising process (engine.kept)
    long_batches: bool = False  # the mode's finish may find batch ends by search, not row by row
    exact_floor: bool = False  # floor: float64 running sums of the partition round (cells decided exactly)


@dataclass
class Entry:
    """What the finish of one partition needs: the carried state and forced starts.

    >>> Entry(Carry(batches=4), partition=2).carry.batches
    4
    """

    carry: Carry
    forced: tuple = ()  # local positions of starts placed here by a later cut-back
    all_offset: int = 0  # global position (all rows) of the partition's first row
    floor_rows: int | None = None  # floor with max_rows: rows of the open batch before row 0
    n_all: int | None = None  # rows the summary pass saw (None: not checked)
    total: object = None  # exact total of the valid weights the summary pass saw (None: not checked)
    total_kind: str = "sum"  # how both passes sum it (Summary.total_kind); "running": the mode checks it
    partition: int | None = None  # the partition's number, for error messages
    kept: str | None = None  # the summary's kept start flags (engine.kept), if any
    long_batches: bool = False  # the summary's hint (Summary.long_batches)
    exact_floor: bool = False  # the summary's Summary.exact_floor


@dataclass
class PartitionPlan:
    """The scan's result: one :class:`Entry` per partition and totals.

    >>> PartitionPlan([Entry(Carry())], Carry(batches=1), 1, 3, 0).first_ids
    [0]
    """

    entries: list
    end_state: Carry
    n_batches: int
    n_rows: int
    skipped: int
    backdated_prior: int = 0
    walked: list = field(default_factory=list)  # partitions the scan had to walk whole
    backend: str = "cpu"  # the backend the scan ran on (Backend.name: "cpu", "python", "gpu"...)

    @property
    def first_ids(self) -> list:
        """The id of each partition's first batch (its entry's ``batches``).

        >>> PartitionPlan([Entry(Carry()), Entry(Carry(batches=2))], Carry(batches=3), 3, 5, 0).first_ids
        [0, 2]
        """
        return [e.carry.batches for e in self.entries]
