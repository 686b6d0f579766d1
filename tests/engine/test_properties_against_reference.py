"""Property tests: the library equals the sequential reference, for every partitioning.

Each property draws weights (ints, floats, float32, bools, zeros, rows above the limit), a limit,
options (every mode/cost/max_rows/by/multiple combination that docs/design.md allows) and a
partitioning (``dd.from_pandas``, explicit partition sizes with empty and one-row partitions,
known or unknown divisions), and asserts that ``cumbatch.ids`` gives exactly the ids of
``tests/reference.py``. Float weights are compared bitwise (the ids are equal); ``floor`` with
non-integer floats too, as its cells are those of the exact sums.
"""
from __future__ import annotations

import math
import os
from unittest import mock

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import assert_whole_batches, ids_list, make_ddf, make_pdf, partition_lengths
from reference import reference_ids, reference_plan

import dask_cumbatch  # noqa: F401  (registers the accessors)

# CUMBATCH_EXAMPLES_SCALE=10 runs ten times as many examples (a longer hunt for rare cases)
SCALE = float(os.environ.get("CUMBATCH_EXAMPLES_SCALE", "1"))


def examples(n: int) -> int:
    return max(5, int(n * SCALE))


SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# decimals whose float64 sums round (0.1 + 0.2 != 0.3): they make order of summation visible
NASTY = [0.1, 0.2, 0.3, 0.7, 1 / 3, 2 / 3, 0.0, 1.1, 0.01, 5e-17]


@pytest.fixture(autouse=True)
def _sync_scheduler():
    # the graphs are tiny: the synchronous scheduler keeps hypothesis fast and deterministic
    with dask.config.set(scheduler="sync"):
        yield


# ------------------------------------------------------------------------------ strategies
@st.composite
def weights_and_limit(draw, kind=None, mode="greedy", n_max=120):
    """(weights as python/numpy scalars, numpy dtype for the column, limit)."""
    kind = kind or draw(st.sampled_from(["int", "int", "float", "float32", "bool", "nasty"]))
    if mode == "floor" and kind in ("float", "float32", "nasty") and draw(st.booleans()):
        kind = draw(st.sampled_from(["intfloat", "intfloat32"]))
    n = draw(st.integers(1, n_max))
    if kind == "bool":
        w = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        limit = draw(st.sampled_from([1, 2, 3, 5, 1.5, 7]))
        return w, "bool", limit
    if kind in ("int", "intfloat", "intfloat32"):
        limit = draw(st.integers(1, 40))
        big = limit * 2
        w = draw(
            st.lists(
                st.one_of(st.integers(0, max(1, limit // 3)), st.just(0), st.integers(0, big)),
                min_size=n,
                max_size=n,
            )
        )
        if mode == "floor":
            limit = draw(st.sampled_from([limit, limit + 0.5, limit / 4 + 0.25]))
        else:
            limit = draw(st.sampled_from([limit, limit, limit + 0.5]))
        if kind == "int":
            return w, "int64", limit
        if kind == "intfloat":
            return [float(x) for x in w], "float64", limit
        return [np.float32(x) for x in w], "float32", limit
    limit = draw(st.sampled_from([0.6, 1.0, 2.5, 3.3, 10.0, 1e-3]))
    if kind == "nasty":
        w = draw(st.lists(st.sampled_from(NASTY + [limit, limit * 1.5]), min_size=n, max_size=n))
    else:
        w = draw(
            st.lists(
                st.one_of(
                    st.floats(0, limit, allow_nan=False, allow_infinity=False),
                    st.floats(0, limit / 5, allow_nan=False, allow_infinity=False),
                    st.just(0.0),
                    st.floats(limit, limit * 3, allow_nan=False, allow_infinity=False),
                ),
                min_size=n,
                max_size=n,
            )
        )
    if kind == "float32":
        return [np.float32(x) for x in w], "float32", limit
    return w, "float64", limit


@st.composite
def options(draw, mode=None):
    mode = mode or draw(st.sampled_from(["greedy", "fill", "floor"]))
    cost = "sum" if mode == "floor" else draw(st.sampled_from(["sum", "padded"]))
    max_rows = draw(st.one_of(st.none(), st.integers(1, 9)))
    multiple = draw(st.one_of(st.none(), st.integers(2, 5))) if mode == "greedy" else None
    use_by = draw(st.booleans())
    return dict(mode=mode, cost=cost, max_rows=max_rows, multiple=multiple), use_by


@st.composite
def keys_for(draw, n):
    """Keys in runs (so groups span rows and partitions), missing keys included."""
    alphabet = ["a", "b", "c", None]
    keys = []
    while len(keys) < n:
        key = draw(st.sampled_from(alphabet))
        run = draw(st.integers(1, 25))
        keys.extend([key] * run)
    return keys[:n]


@st.composite
def partition_sizes(draw, n):
    """k partition sizes summing to n: empty and one-row partitions are likely."""
    k = draw(st.integers(1, 12))
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=k - 1, max_size=k - 1)))
    bounds = [0] + cuts + [n]
    sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    if draw(st.booleans()) and n > 3:
        # sprinkle one-row partitions
        ones = draw(st.integers(1, min(5, n - 1)))
        sizes = [1] * ones + [n - ones] if draw(st.booleans()) else [n - ones] + [1] * ones
    return sizes


@st.composite
def frames(draw, weights, dtype, keys):
    how = draw(st.sampled_from(["from_pandas", "sizes", "sizes", "unknown"]))
    n = len(weights)
    if how == "from_pandas":
        k = draw(st.integers(1, max(1, min(n, 10))))
        pdf, ddf = make_ddf(weights, keys=keys, dtype=dtype, npartitions=k)
        sizes = None
    else:
        sizes = draw(partition_sizes(n))
        pdf, ddf = make_ddf(weights, sizes, keys=keys, dtype=dtype,
                            known_divisions=(how == "sizes"))
    return pdf, ddf, how, sizes


def expected(weights, limit, opts, keys):
    return reference_ids(weights, limit, keys=keys, **opts)


def call_opts(opts, use_by):
    out = {k: v for k, v in opts.items() if v is not None}
    if use_by:
        out["by"] = "k"
    return out


def check_ids(result, pdf, want, lazy=True):
    if lazy:
        assert not isinstance(result, pd.Series), "Dask input must give a lazy result"
        got = result.compute()
    else:
        got = result
    assert isinstance(got, pd.Series)
    assert got.dtype == np.dtype("int64"), got.dtype
    assert got.index.equals(pdf.index)
    assert got.tolist() == want


# ------------------------------------------------------------------------------ properties
def draw_case(data, mode=None, **weight_kw):
    """One drawn case: options (``mode`` fixed, or drawn), weights, their dtype, the limit, keys
    where the options use ``by``, and the reference ids."""
    opts, use_by = data.draw(options(mode=mode))
    w, dtype, limit = data.draw(weights_and_limit(mode=opts["mode"], **weight_kw))
    keys = data.draw(keys_for(len(w))) if use_by else None
    return opts, use_by, w, dtype, limit, keys, expected(w, limit, opts, keys)


@settings(max_examples=examples(150), **SETTINGS)
@given(data=st.data())
def test_ids_equal_reference_any_partitioning(data):
    opts, use_by, w, dtype, limit, keys, want = draw_case(data)
    pdf, ddf, how, sizes = data.draw(frames(w, dtype, keys))
    result = ddf.cumbatch.ids("w", limit, **call_opts(opts, use_by))
    assert result.npartitions == ddf.npartitions
    if how != "unknown":
        assert result.divisions == ddf.divisions
    check_ids(result, pdf, want)


@settings(max_examples=examples(60), **SETTINGS)
@given(data=st.data())
def test_greedy_fill_floats_bitwise_many_partitions(data):
    """Float weights that round: ids equal one sequential float64 pass, whatever the cuts."""
    mode = data.draw(st.sampled_from(["greedy", "fill"]))
    opts, use_by, w, dtype, limit, keys, want = draw_case(data, mode=mode, kind="nasty", n_max=200)
    n = len(w)
    # many one-row and empty partitions: every partition starts mid-batch
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=n))
    total = sum(sizes)
    if total < n:
        sizes.append(n - total)
    else:
        # trim from the end so the sizes sum to n
        while sum(sizes) > n:
            extra = sum(sizes) - n
            sizes[-1] -= min(sizes[-1], extra)
            if sizes[-1] == 0 and sum(sizes) > n:
                sizes.pop()
    assert sum(sizes) == n
    pdf, ddf = make_ddf(w, sizes, keys=keys, dtype=dtype)
    check_ids(ddf.cumbatch.ids("w", limit, **call_opts(opts, use_by)), pdf, want)


@settings(max_examples=examples(60), **SETTINGS)
@given(data=st.data())
def test_pandas_input_equals_reference(data):
    opts, use_by, w, dtype, limit, keys, want = draw_case(data)
    pdf = make_pdf(w, keys=keys, dtype=dtype)
    got = pdf.cumbatch.ids("w", limit, **call_opts(opts, use_by))
    check_ids(got, pdf, want, lazy=False)
    # a Series weight aligned with the frame gives the same ids
    got2 = pdf.cumbatch.ids(pdf["w"], limit, **call_opts(opts, use_by))
    check_ids(got2, pdf, want, lazy=False)


@settings(max_examples=examples(60), **SETTINGS)
@given(data=st.data())
def test_series_accessor_equals_reference(data):
    opts, _ = data.draw(options())
    w, dtype, limit = data.draw(weights_and_limit(mode=opts["mode"]))
    want = expected(w, limit, opts, None)
    pdf, ddf, how, sizes = data.draw(frames(w, dtype, None))
    kw = call_opts(opts, False)
    check_ids(ddf["w"].cumbatch.ids(limit, **kw), pdf, want)
    check_ids(pdf["w"].cumbatch.ids(limit, **kw), pdf, want, lazy=False)


@settings(max_examples=examples(60), **SETTINGS)
@given(data=st.data())
def test_skip_invalid_equals_reference_on_valid_rows(data):
    opts, use_by = data.draw(options())
    w, dtype, limit = data.draw(weights_and_limit(kind="float", mode=opts["mode"]))
    if opts["mode"] == "floor":  # floor: integer-valued floats only (docs/design.md, "Exactness")
        w = [float(math.floor(x)) for x in w]
    n = len(w)
    bad_values = [math.nan, math.inf, -math.inf, -1.0, -0.5]
    bad = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    w_in = [data.draw(st.sampled_from(bad_values)) if b else x for x, b in zip(w, bad)]
    keys = data.draw(keys_for(n)) if use_by else None
    valid = [not b for b in bad]
    want_valid = expected(
        [x for x, ok in zip(w, valid) if ok],
        limit,
        opts,
        None if keys is None else [k for k, ok in zip(keys, valid) if ok],
    )
    it = iter(want_valid)
    want = [next(it) if ok else None for ok in valid]
    pdf, ddf, how, sizes = data.draw(frames(w_in, "float64", keys))
    result = ddf.cumbatch.ids("w", limit, invalid="skip", **call_opts(opts, use_by))
    got = result.compute()
    assert str(got.dtype) == "Int64"
    assert got.index.equals(pdf.index)
    assert ids_list(got) == want
    got_pd = pdf.cumbatch.ids("w", limit, invalid="skip", **call_opts(opts, use_by))
    assert ids_list(got_pd) == want


@settings(max_examples=examples(40), **SETTINGS)
@given(data=st.data())
def test_plan_equals_reference(data):
    opts, use_by = data.draw(options())
    w, dtype, limit = data.draw(weights_and_limit(kind=data.draw(st.sampled_from(["int", "float"])),
                                                  mode=opts["mode"]))
    keys = data.draw(keys_for(len(w))) if use_by else None
    want_ids = expected(w, limit, opts, keys)
    want = reference_plan(w, want_ids)
    pdf, ddf, how, sizes = data.draw(frames(w, dtype, keys))
    plan = ddf.cumbatch.plan("w", limit, **call_opts(opts, use_by))
    b = plan.batches
    assert plan.n_batches == len(want) == len(b)
    assert plan.n_rows == len(w)
    assert b["batch"].tolist() == [r["batch"] for r in want]
    assert b["rows"].tolist() == [r["rows"] for r in want]
    assert b["start"].tolist() == [r["start"] for r in want]
    assert b["stop"].tolist() == [r["stop"] for r in want]
    if dtype == "int64":
        assert b["total"].tolist() == [r["total"] for r in want]
        assert b["max"].tolist() == [r["max"] for r in want]
    else:
        np.testing.assert_allclose(b["total"].to_numpy(float), [r["total"] for r in want],
                                   rtol=1e-12, atol=1e-12)
        assert b["max"].tolist() == [r["max"] for r in want]


@settings(max_examples=examples(40), **SETTINGS)
@given(data=st.data())
def test_repartition_whole_batches(data):
    opts, use_by, w, dtype, limit, keys, want = draw_case(data, n_max=80)
    pdf, ddf, how, sizes = data.draw(frames(w, dtype, keys))
    bpp = data.draw(st.one_of(st.none(), st.integers(1, 4)))
    out = ddf.cumbatch.repartition("w", limit, batches_per_partition=bpp,
                                   **call_opts(opts, use_by))
    parts = [p for p in out.to_delayed()]
    parts = dask.compute(*parts)
    assert_whole_batches(parts, want, pdf, bpp, check_dtype=False)


@settings(max_examples=examples(60), **SETTINGS)
@given(data=st.data())
def test_floor_non_integer_floats_exact(data):
    """floor with arbitrary floats: the ids of the exact sums, for every partitioning
    (docs/design.md, "Exactness"; once allowed to differ within rounding error)."""
    use_by = data.draw(st.booleans())
    max_rows = data.draw(st.one_of(st.none(), st.integers(1, 9)))
    opts = dict(mode="floor", cost="sum", max_rows=max_rows, multiple=None)
    w, dtype, limit = data.draw(weights_and_limit(kind=data.draw(st.sampled_from(["float", "nasty"])),
                                                  mode="greedy"))
    keys = data.draw(keys_for(len(w))) if use_by else None
    want = expected(w, limit, opts, keys)
    pdf, ddf, how, sizes = data.draw(frames(w, dtype, keys))
    got = ids_list(ddf.cumbatch.ids("w", limit, **call_opts(opts, use_by)).compute())
    assert got == want


def tiny_heads():
    """Summaries that keep only a few rows: the chain tables and the fallback walk do the work."""
    import contextlib
    import importlib

    greedy = importlib.import_module("dask_cumbatch.engine.modes.greedy")
    scan = importlib.import_module("dask_cumbatch.engine.scan")
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.multiple(greedy, HEAD_ROWS=4, HEAD_STARTS=2, HEAD_MAX=16,
                                            CHAIN_MIN_BATCHES=1))
    stack.enter_context(mock.patch.object(scan, "HEAD_BUDGET", 64))
    return stack


@settings(max_examples=examples(150), **SETTINGS)
@given(data=st.data())
def test_tiny_heads_equal_reference(data):
    """Partitions far longer than the head: exact whichever way the scan resolves them."""
    mode = data.draw(st.sampled_from(["greedy", "fill"]))
    opts, use_by = data.draw(options(mode=mode))
    kind = data.draw(st.sampled_from(["int", "int", "float"]))
    w, dtype, limit = data.draw(weights_and_limit(kind=kind, mode=mode, n_max=300))
    keys = data.draw(keys_for(len(w))) if use_by else None
    sizes = data.draw(partition_sizes(len(w)))
    pdf, ddf = make_ddf(w, sizes, keys=keys, dtype=dtype)
    with tiny_heads():
        result = ddf.cumbatch.ids("w", limit, **call_opts(opts, use_by))
        check_ids(result, pdf, expected(w, limit, opts, keys))
