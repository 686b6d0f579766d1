"""Floor's quick summary: one kernel checks and sums the weights, by blocks where
that is exact, and must give ``floor_risky``'s result bit for bit or decline.

- ``floor_summary_float``/``floor_summary_int`` against ``floor_risky`` on the same weights
  (compiled and plain Python): equal where done; done whenever the weights are valid,
  integer-valued and their sums stay below 2**53 (int64: do not overflow); declined whenever a
  weight is invalid;
- the summary pass takes the quick path (no validity pass of its own) and falls back to the
  checked path for fractional or invalid weights, with the reference's ids either way.
"""
from __future__ import annotations

from unittest import mock

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import reference_ids
from test_properties_against_reference import SETTINGS, examples

import dask_cumbatch  # noqa: F401
from dask_cumbatch.engine.backends import cpu, kernels, python as pure
from dask_cumbatch.engine.scan import summarize_weights
from dask_cumbatch.options import BatchOptions
from dask_cumbatch.engine import BatchContext

BLOCK = kernels.FLOOR_BLOCK
SPECIAL = [np.nan, np.inf, -np.inf, -1.0, -0.0, 0.5, 2.0**52, 2.0**53]


@st.composite
def float_weights(draw):
    """Integer-valued weights over a few blocks, some rows replaced by special values."""
    n = draw(st.integers(1, 3 * BLOCK + 7))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([3.0, 300.0, 2.0**40]))
    w = np.floor(np.random.default_rng(seed).exponential(scale, n))
    for pos, value in draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(SPECIAL)), max_size=3)):
        w[pos] = value
    threshold = draw(st.sampled_from([0.0, 2.0, 250.0, 1e300]))
    return w, threshold


def risky(w, threshold, is_int):
    n = len(w)
    p_out, w_out = np.zeros(n, w.dtype), np.zeros(n, w.dtype)
    k, p_last, total, overflow = cpu.floor_risky(w, n, w.dtype.type(threshold), is_int, p_out, w_out)
    return overflow, (int(k), p_last, total, p_out[:k].tolist(), w_out[:k].tolist())


def quick(be, kernel, w, threshold):
    n = len(w)
    p_out, w_out = np.zeros(n, w.dtype), np.zeros(n, w.dtype)
    done, k, p_last, total = getattr(be, kernel)(w, w.dtype.type(threshold), p_out, w_out)
    return done, (int(k), p_last, total, p_out[:k].tolist(), w_out[:k].tolist())


def bits(result):
    k, p_last, total, p, wr = result
    as_bits = lambda v: np.float64(v).tobytes() if isinstance(v, (float, np.floating)) else int(v)  # noqa: E731
    return k, as_bits(p_last), as_bits(total), [as_bits(v) for v in p], [as_bits(v) for v in wr]


@settings(max_examples=examples(300), **SETTINGS)
@given(case=float_weights())
def test_float_quick_summary_is_floor_risky_bit_for_bit_or_declines(case):
    w, threshold = case
    valid = bool(np.all((w >= 0) & np.isfinite(w)))
    integral = valid and bool(np.all(w == np.floor(w)))
    exact = integral and float(np.sum(w)) < 2.0**53  # integers below 2**53: NumPy's sum is exact
    _, want = risky(w, threshold, False)
    for be in (cpu, pure):
        done, got = quick(be, "floor_summary_float", w, threshold)
        assert done == exact, (be.__name__, done, valid, integral)
        if done:
            assert bits(got) == bits(want)


@st.composite
def int_weights(draw):
    n = draw(st.integers(1, 3 * BLOCK + 7))
    seed = draw(st.integers(0, 2**32 - 1))
    high = draw(st.sampled_from([10, 2**20, 2**54, 2**61]))
    w = np.random.default_rng(seed).integers(0, high, n, dtype=np.int64)
    for pos, value in draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from([-1, 0, 2**62, 2**63 - 1])),
                                    max_size=2)):
        w[pos] = value
    return w, draw(st.sampled_from([0, 5, 2**30, 2**63 - 1]))


@settings(max_examples=examples(300), **SETTINGS)
@given(case=int_weights())
def test_int_quick_summary_is_floor_risky_or_declines(case):
    w, threshold = case
    valid = bool(np.all(w >= 0))
    overflow, want = risky(w, threshold, True) if valid else (None, None)
    for be in (cpu, pure):
        done, got = quick(be, "floor_summary_int", w, threshold)
        assert done == (valid and overflow < 0), (be.__name__, done, valid, overflow)
        if done:
            assert bits(got) == bits(want)


def test_sums_reaching_two_to_the_53_decline():
    w = np.full(2 * BLOCK, 2.0**44)  # the running sum reaches 2**53 at the second block's end
    for be in (cpu, pure):
        assert not quick(be, "floor_summary_float", w, 1e300)[0]
        assert quick(be, "floor_summary_float", w[:-1], 1e300)[0]


def plain_summary(values, opts, is_float):
    return summarize_weights(values, pd.RangeIndex(len(values)), BatchContext(opts, is_float))


@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_summary_pass_takes_the_quick_path_without_a_validity_pass(dtype):
    w = np.floor(np.random.default_rng(1).exponential(300.0, 5000)).astype(dtype)
    opts = BatchOptions.make("w", 4096, mode="floor")
    is_float = dtype == "float64"
    with mock.patch.object(cpu, "count_invalid", side_effect=AssertionError("no validity pass")):
        summ = plain_summary(w, opts, is_float)
    with mock.patch.object(cpu, f"floor_summary_{'float' if is_float else 'int'}", None):  # the checked path
        checked = plain_summary(w, opts, is_float)
    assert summ.total_kind == checked.total_kind == "running"
    assert (summ.total, summ.p_last, summ.risky_p.tolist(), summ.risky_w.tolist()) == (
        checked.total, checked.p_last, checked.risky_p.tolist(), checked.risky_w.tolist())


@pytest.mark.parametrize("bad", [np.nan, -1.0, np.inf, 0.25])
def test_summary_pass_falls_back_for_fractional_or_invalid_weights(bad):
    w = np.floor(np.random.default_rng(2).exponential(300.0, 5000))
    w[4321] = bad
    opts = BatchOptions.make("w", 4096, mode="floor", invalid="skip")
    with mock.patch.object(cpu, "count_invalid", wraps=cpu.count_invalid) as counted, \
            mock.patch.object(cpu, "valid_bits_total", wraps=cpu.valid_bits_total) as tested:
        summ = plain_summary(w, opts, True)
    assert counted.called or tested.called  # the checked path ran its validity test
    assert summ.n_invalid == (0 if bad == 0.25 else 1)


@pytest.mark.parametrize("invalid", ["skip", "raise"])
@pytest.mark.parametrize("where", [0, 255, 256, 9999])
def test_floor_ids_with_an_invalid_weight_anywhere_in_large_partitions(invalid, where):
    w = np.floor(np.random.default_rng(3).exponential(300.0, 10_000))
    w[where] = np.nan
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=2)
    with dask.config.set(scheduler="sync"):
        if invalid == "raise":
            with pytest.raises(ValueError, match="invalid value"):
                ddf.cumbatch.ids("w", 4096, mode="floor").compute()
            return
        got = ddf.cumbatch.ids("w", 4096, mode="floor", invalid="skip").compute()
    valid = ~np.isnan(w)
    assert got.isna().to_numpy().tolist() == (~valid).tolist()
    assert got[valid].astype("int64").tolist() == reference_ids(w[valid].tolist(), 4096, mode="floor")
