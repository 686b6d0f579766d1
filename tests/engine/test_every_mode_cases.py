"""Cases every mode shares, each checked against the sequential reference (tests/reference.py).

Covers: partitions out of phase with the batches (constant weights over many or one-row
partitions, big partitions with keys and skipped rows, 1,000 partitions), zero weights and empty
frames, oversize rows, keys (``by``) changing at partition edges, every weight dtype, invalid
weights (raised with details, or skipped) and invalid options, which fail before any data is
read. Most cases run in every mode (``ALL_MODES``); the oversize ones in the default mode, as
the mode-agnostic scan finds oversize rows. Each mode's own cases: test_greedy_cases.py and
test_floor_cases.py; the accessor's methods: tests/dask_layer/test_accessor_methods.py.
"""
from __future__ import annotations

import math
import re

import dask.dataframe as dd

import numpy as np
import pandas as pd
import pytest

from conftest import (ALL_MODES, GREEDY_FILL, PIECES_READ, counted_frame, ddf_ids, ids_list, make_ddf,
                      make_pdf, partition_lengths, ref_ids)
from reference import reference_ids

import dask_cumbatch  # noqa: F401  (registers the accessors)

pytestmark = pytest.mark.usefixtures("threaded")


# ------------------------------------------------------------------ partitions out of phase with the batches
@pytest.mark.parametrize("opts", ALL_MODES, ids=str)
def test_constant_weights_many_partitions(opts):
    # batches of 7 rows vs partitions of 97 rows: the speculative path (starting a batch at each
    # partition's first row) is out of phase with the true one for the whole partition
    w = [1] * 97 * 40
    pdf, ddf = make_ddf(w, npartitions=40)
    assert ddf_ids(ddf, 7, **opts) == ref_ids(w, 7, opts)


@pytest.mark.parametrize("opts", GREEDY_FILL + [dict(mode="floor")], ids=str)
def test_constant_float_weights_one_row_partitions(opts):
    # 0.1 summed in float64 drifts (0.1*3 != 0.3): every partition starts mid-batch
    w = [0.1] * 120
    pdf, ddf = make_ddf(w, [1] * 60 + [0, 0] + [2] * 30)
    if opts["mode"] == "floor":
        w = [1.0] * 120  # floor: integer-valued floats only (docs/design.md, "Exactness")
        pdf, ddf = make_ddf(w, [1] * 60 + [0, 0] + [2] * 30)
        assert ddf_ids(ddf, 7, **opts) == ref_ids(w, 7, opts)
    else:
        assert ddf_ids(ddf, 0.7, **opts) == ref_ids(w, 0.7, opts)


@pytest.mark.parametrize("opts", [dict(mode="greedy"), dict(mode="fill", cost="padded"),
                                  dict(mode="floor"), dict(mode="floor", max_rows=4),
                                  dict(mode="greedy", multiple=4, max_rows=9)], ids=str)
def test_big_partitions_with_keys_skips_and_caps(opts):
    # partitions past the summary head, with group changes and skipped rows deep inside them
    n = 30_000
    w = [3.0] * n
    for i in range(7, n, 997):
        w[i] = math.nan
    keys = ["a"] * 5_003 + ["b"] * 9_000 + [None] * 6_000 + ["c"] * (n - 20_003)
    sizes = [4_099, 12_001, 0, 13_900]
    pdf, ddf = make_ddf(w, sizes, keys=keys, extra=False)
    keep = [not math.isnan(x) for x in w]
    it = iter(ref_ids([x for x, ok in zip(w, keep) if ok], 10, opts,
                   keys=[k for k, ok in zip(keys, keep) if ok]))
    want = [next(it) if ok else None for ok in keep]
    assert ddf_ids(ddf, 10, by="k", invalid="skip", **opts) == want


def test_many_partitions_compute_matches_reference():
    rng = np.random.default_rng(17)
    w = rng.integers(0, 5, 3000).tolist()
    pdf, ddf = make_ddf(w, npartitions=1000, extra=False)
    for opts in (dict(), dict(mode="fill"), dict(mode="floor")):
        assert ddf_ids(ddf, 11, **opts) == reference_ids(w, 11, **opts)


# ------------------------------------------------------------------ zeros, empty frames
@pytest.mark.parametrize("opts", ALL_MODES + [dict(mode="greedy", max_rows=3)], ids=str)
def test_all_zeros(opts):
    w = [0] * 50
    pdf, ddf = make_ddf(w, [0, 10, 0, 1, 39, 0])
    got = ddf_ids(ddf, 5, **opts)
    assert got == ref_ids(w, 5, opts)
    if "max_rows" not in opts:
        assert set(got) == {0}


@pytest.mark.parametrize("opts", ALL_MODES, ids=str)
def test_zeros_around_full_batches(opts):
    w = [5, 0, 0, 5, 0, 5, 5, 0, 0, 0, 1, 4, 0]
    for sizes in ([13], [1] * 13, [2, 0, 3, 0, 8], [6, 7]):
        pdf, ddf = make_ddf(w, sizes)
        assert ddf_ids(ddf, 5, **opts) == ref_ids(w, 5, opts), sizes


def test_empty_frame_and_empty_partitions():
    pdf, ddf = make_ddf([], [0, 0, 0])
    assert ids_list(ddf.cumbatch.ids("w", 5).compute()) == []
    assert ids_list(make_pdf([]).cumbatch.ids("w", 5)) == []


# ------------------------------------------------------------------ oversize
@pytest.mark.parametrize("cost", ["sum", "padded"])
def test_oversize_rows_stand_alone(cost):
    w = [1, 2, 50, 1, 1, 60, 61, 0, 2]
    pdf, ddf = make_ddf(w, [2, 1, 3, 0, 3])
    got = ddf_ids(ddf, 10, cost=cost)
    assert got == ref_ids(w, 10, dict(cost=cost))
    for pos in (2, 5, 6):  # each heavy row is a batch of its own
        assert got.count(got[pos]) == 1


@pytest.mark.parametrize("cost", ["sum", "padded"])
def test_oversize_raise(cost):
    w = [1, 2, 50, 1]
    pdf, ddf = make_ddf(w, [2, 2])
    with pytest.raises(ValueError):
        ddf.cumbatch.ids("w", 10, cost=cost, oversize="raise").compute()
    with pytest.raises(ValueError):
        pdf.cumbatch.ids("w", 10, cost=cost, oversize="raise")
    # without an oversize row, oversize="raise" changes nothing
    ok = [1, 2, 5, 1]
    pdf, ddf = make_ddf(ok, [2, 2])
    assert ddf_ids(ddf, 10, cost=cost, oversize="raise") == ref_ids(ok, 10, dict(cost=cost))


def test_oversize_raise_deep_in_big_partition():
    w = [1] * 20_000
    w[15_000] = 11
    pdf, ddf = make_ddf(w, [5_000, 15_000], extra=False)
    with pytest.raises(ValueError):
        ddf.cumbatch.ids("w", 10, oversize="raise").compute()
    assert ddf_ids(ddf, 10) == ref_ids(w, 10, {})


# ------------------------------------------------------------------ keys at partition edges
@pytest.mark.parametrize("opts", ALL_MODES + [dict(mode="greedy", max_rows=2)], ids=str)
def test_keys_change_at_partition_edges(opts):
    keys = ["a"] * 5 + ["b"] * 5 + ["a"] * 5 + [None] * 5 + [None] * 3 + ["c"] * 2
    w = [1, 2, 3, 1, 2] * 5
    want = ref_ids(w, 4, opts, keys=keys)
    for sizes in ([5, 5, 5, 5, 5], [5, 0, 5, 5, 0, 5, 5], [10, 10, 5], [5, 8, 2, 10]):
        pdf, ddf = make_ddf(w, sizes, keys=keys)
        assert ddf_ids(ddf, 4, by="k", **opts) == want, sizes


def test_by_two_columns_and_numeric_missing_keys():
    k1 = [1.0, 1.0, np.nan, np.nan, np.nan, 2.0, 2.0, 2.0]
    k2 = ["x", "x", "x", "x", "y", "y", "y", None]
    w = [1, 1, 1, 1, 1, 1, 1, 1]
    keys = list(zip(k1, k2))
    pdf, ddf = make_ddf(w, [3, 0, 2, 3], keys={"k1": k1, "k2": k2})
    got = ids_list(ddf.cumbatch.ids("w", 10, by=["k1", "k2"]).compute())
    assert got == reference_ids(w, 10, keys=keys) == [0, 0, 1, 1, 2, 3, 3, 4]
    got1 = ids_list(ddf.cumbatch.ids("w", 10, by="k1").compute())
    assert got1 == reference_ids(w, 10, keys=k1) == [0, 0, 1, 1, 1, 2, 2, 2]


def test_by_nullable_int_keys_across_partitions():
    k = pd.array([1, 1, None, None, 2, 2, None, 3, 3, 3], dtype="Int64")
    w = [1, 2, 3, 1, 1, 1, 5, 2, 2, 2]
    pdf, ddf = make_ddf(w, [3, 1, 0, 4, 2], keys={"k": k})
    keys = [None if x is pd.NA else int(x) for x in k]
    for opts in (dict(), dict(mode="fill"), dict(mode="floor")):
        want = reference_ids(w, 4, keys=keys, **opts)
        assert ddf_ids(ddf, 4, by="k", **opts) == want
        assert ids_list(pdf.cumbatch.ids("w", 4, by="k", **opts)) == want


# ------------------------------------------------------------------ dtypes
DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool",
          "float32", "float64", "Int64", "Float64", "boolean", "int64[pyarrow]",
          "double[pyarrow]"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [dict(mode="greedy"), dict(mode="fill", cost="padded"),
                                  dict(mode="floor")], ids=str)
def test_every_dtype(dtype, opts):
    rng = np.random.default_rng(3)
    if dtype in ("bool", "boolean"):
        w = rng.integers(0, 2, 300).astype(bool).tolist()
        limit = 5
    elif dtype in ("float32", "float64", "Float64", "double[pyarrow]") and opts["mode"] != "floor":
        w = (rng.random(300) * 100).tolist()
        limit = 150.5
    else:
        w = rng.integers(0, 100, 300).tolist()
        limit = 150
    pdf, ddf = make_ddf(w, [0, 100, 1, 99, 0, 100], dtype=dtype)
    assert str(pdf["w"].dtype) == dtype or dtype == "int64[pyarrow]"
    # the reference sees the stored values (float32 rounds), widened exactly
    stored = [float(x) if isinstance(x, (float, np.floating)) else x for x in pdf["w"].tolist()]
    if dtype == "float32":
        stored = [float(x) for x in pdf["w"].to_numpy()]
    want = ref_ids(stored, limit, opts)
    assert ddf_ids(ddf, limit, **opts) == want
    assert ids_list(pdf.cumbatch.ids("w", limit, **opts)) == want


@pytest.mark.parametrize("dtype", ["Int64", "Float64", "boolean", "int64[pyarrow]",
                                   "double[pyarrow]"])
def test_nullable_missing_is_invalid(dtype):
    w = pd.array([1, None, 1, 1, None, 0], dtype=dtype)
    pdf = make_pdf(list(w), dtype=dtype)
    ddf = dd.from_pandas(pdf, npartitions=3)
    with pytest.raises(ValueError, match="2"):
        ddf.cumbatch.ids("w", 2).compute()
    got = ids_list(ddf.cumbatch.ids("w", 2, invalid="skip").compute())
    valid = [int(x) for x in w if x is not pd.NA]
    it = iter(reference_ids(valid, 2))
    assert got == [None if x is pd.NA else next(it) for x in w]


def test_uint64_above_int64_raises():
    pdf = make_pdf([1, 2**63 + 5, 1], dtype="uint64")
    with pytest.raises((ValueError, OverflowError)):
        pdf.cumbatch.ids("w", 10)


# ------------------------------------------------------------------ invalid weights
BAD = [
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("negative", -2.0),
]


@pytest.mark.parametrize("label,bad", BAD, ids=[b[0] for b in BAD])
def test_invalid_weight_raises_with_details(label, bad):
    w = [1.0, 2.0, bad, 1.0, bad, 3.0, bad]
    pdf = make_pdf(w)
    pdf.index = pd.Index([101, 102, 7777, 7778, 7779, 7780, 7781], name="idx")
    ddf = dd.from_pandas(pdf, npartitions=3)
    for run in (lambda: pdf.cumbatch.ids("w", 5),
                lambda: ddf.cumbatch.ids("w", 5).compute()):
        with pytest.raises(ValueError) as err:
            run()
        msg = str(err.value)
        assert "'w'" in msg or '"w"' in msg or " w " in msg or "w:" in msg, msg
        assert re.search(r"\b3\b", msg), msg  # the count
        assert "7777" in msg, msg  # the first offending row's index label


def test_invalid_first_offending_row_is_first_in_row_order():
    w = [1.0] * 30
    w[25] = math.nan  # partition 2
    w[12] = -1.0  # partition 1: the first in row order
    w[13] = math.inf
    pdf = make_pdf(w)
    pdf.index = pd.Index(np.arange(30) * 3 + 1000, name="idx")
    ddf = dd.from_pandas(pdf, npartitions=3)
    assert partition_lengths(ddf) == [10, 10, 10]
    with pytest.raises(ValueError) as err:
        ddf.cumbatch.ids("w", 5).compute()
    assert "1036" in str(err.value) and re.search(r"\b3\b", str(err.value)), str(err.value)
    with pytest.raises(ValueError, match="1036"):
        ddf.cumbatch.plan("w", 5)


def test_invalid_int_negative_raises_and_skip():
    w = [1, -1, 2, 3, -5, 2]
    pdf, ddf = make_ddf(w, [2, 0, 4])
    with pytest.raises(ValueError):
        ddf.cumbatch.ids("w", 4).compute()
    got = ids_list(ddf.cumbatch.ids("w", 4, invalid="skip").compute())
    it = iter(reference_ids([1, 2, 3, 2], 4))
    assert got == [next(it) if x >= 0 else None for x in w]


def test_skip_with_keys_across_partitions():
    w = [1.0, math.nan, 1.0, 1.0, -1.0, 1.0, 1.0, math.nan]
    keys = ["a", "a", "b", "b", "b", "b", "a", "a"]
    pdf, ddf = make_ddf(w, [1, 1, 3, 0, 3], keys=keys)
    keep = [math.isfinite(x) and x >= 0 for x in w]
    it = iter(reference_ids([x for x, ok in zip(w, keep) if ok], 2,
                            keys=[k for k, ok in zip(keys, keep) if ok]))
    want = [next(it) if ok else None for ok in keep]
    res = ddf.cumbatch.ids("w", 2, by="k", invalid="skip").compute()
    assert str(res.dtype) == "Int64"
    assert ids_list(res) == want


# ------------------------------------------------------------------ invalid options
@pytest.mark.parametrize("limit", [0, -1, math.nan, math.inf, "abc", -0.5])
def test_bad_limit_fails_before_work(limit):
    _, ddf = counted_frame([1, 2, 3, 4], size=2)
    PIECES_READ.clear()
    for call in (ddf.cumbatch.ids, ddf.cumbatch.assign, ddf.cumbatch.plan,
                 ddf.cumbatch.repartition):
        with pytest.raises(ValueError, match="limit"):
            call("w", limit)
    with pytest.raises(ValueError, match="limit"):
        make_pdf([1, 2]).cumbatch.ids("w", limit)
    assert PIECES_READ == []


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        (dict(max_rows=0), ValueError),
        (dict(max_rows=-3), ValueError),
        (dict(mode="fill", multiple=4), ValueError),
        (dict(mode="floor", multiple=8), ValueError),
        (dict(mode="floor", cost="padded"), ValueError),
        (dict(mode="nope"), ValueError),
        (dict(by="missing"), KeyError),
    ],
    ids=str,
)
def test_bad_options_fail_before_work(kwargs, exc):
    _, ddf = counted_frame([1, 2, 3, 4], size=2)
    PIECES_READ.clear()
    for call in (ddf.cumbatch.ids, ddf.cumbatch.plan, ddf.cumbatch.repartition):
        with pytest.raises(exc):
            call("w", 10, **kwargs)
    with pytest.raises(exc):
        make_pdf([1, 2]).cumbatch.ids("w", 10, **kwargs)
    assert PIECES_READ == []


@pytest.mark.parametrize(
    "weight,exc,match", [("nope", KeyError, "nope"), ("s", TypeError, "'s'")],
    ids=["missing-column-keyerror", "string-weight-typeerror"],
)
def test_bad_weight_column(weight, exc, match):
    _, ddf = counted_frame([1, 2, 3, 4], size=2)
    PIECES_READ.clear()
    with pytest.raises(exc, match=match):
        ddf.cumbatch.ids(weight, 10)
    with pytest.raises(exc, match=match):
        make_pdf([1]).cumbatch.ids(weight, 10)
    assert PIECES_READ == []
