"""Floor mode's cases, each checked against the sequential reference (tests/reference.py).

Covers: grid indexes far beyond 2**40, prefix sums landing exactly on grid points, the float
cell as the floor of the exact quotient, batches spanning many partitions, int64 overflow, and a
grid too fine for its int64 cells. Cases every mode shares are in test_every_mode_cases.py; the
exactness of fractional weights is property-tested in test_floor_exact.py.
"""
from __future__ import annotations

import math

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from conftest import ddf_ids, make_ddf, ref_ids
from reference import reference_ids

import dask_cumbatch  # noqa: F401  (registers the accessors)

pytestmark = pytest.mark.usefixtures("threaded")


# ------------------------------------------------------------------ the grid
@pytest.mark.parametrize("dtype", ["int64", "float64"])
def test_floor_huge_grid_index(dtype):
    # S / limit far beyond 2**40 (integer-valued, below 2**53: exact in float64 too)
    w = [2**38 + (i % 3) for i in range(200)]
    pdf, ddf = make_ddf(w, [50, 0, 1, 149], dtype=dtype)
    for limit in (1, 3, 2**37 + 1):
        assert ddf_ids(ddf, limit, mode="floor") == ref_ids(w, limit, dict(mode="floor"))


def test_floor_integer_floats_on_grid_points():
    # prefix sums land exactly on multiples of the limit: integer-valued floats must be exact
    w = [2.0, 1.0, 3.0, 0.0, 6.0, 0.0, 0.0, 5.0, 1.0] * 30
    for sizes in ([270], [1] * 270, [4, 5] * 30):
        pdf, ddf = make_ddf(w, sizes)
        assert ddf_ids(ddf, 6.0, mode="floor") == ref_ids(w, 6.0, dict(mode="floor"))
        assert ddf_ids(ddf, 3, mode="floor", max_rows=2) == ref_ids(w, 3, dict(mode="floor", max_rows=2))


def test_floor_float_cell_is_the_floor_of_the_exact_quotient():
    # docs/semantics.md: a float cell is floor(S / limit) of the exact sum S (once the floor of
    # the rounded quotient). At row 9 the float64 running sum
    # 0.8999999999999999 makes NumPy's // (the pandas idiom) say cell 2; the exact sum of nine
    # float64 0.1s, 0.90000000000000004996..., over float64's 0.3 is 3.0000000000000003: cell 3
    from fractions import Fraction

    w = pd.Series(np.full(12, 0.1))
    s = (w.cumsum() - w).to_numpy()
    exact = [math.floor(Fraction(0.1) * i / Fraction(0.3)) for i in range(12)]
    assert (s // 0.3)[9] == 2 and exact[9] == 3
    want = np.concatenate([[0], np.cumsum(np.diff(exact) != 0)]).tolist()
    assert want == ref_ids(w.tolist(), 0.3, dict(mode="floor"))
    for sizes in ([12], [5, 7], [1] * 12):
        pdf, ddf = make_ddf(w.tolist(), sizes)
        assert ddf_ids(ddf, 0.3, mode="floor") == want
    assert pd.DataFrame({"w": w}).cumbatch.ids("w", 0.3, mode="floor").tolist() == want


# ------------------------------------------------------------------ batches spanning partitions
def test_batch_spans_many_partitions_floor_ints():
    rng = np.random.default_rng(7)
    w = rng.integers(0, 100, 6000).tolist()
    pdf, ddf = make_ddf(w, [37] * 160 + [80])
    assert ddf_ids(ddf, 10_000, mode="floor") == ref_ids(w, 10_000, dict(mode="floor"))


# ------------------------------------------------------------------ int64 overflow, grid too fine
@pytest.mark.parametrize("sizes", [[3], [1, 1, 1], [2, 1], [1, 2]])
def test_int64_overflow_floor_raises(sizes):
    w = [2**62, 2**62, 1]
    with pytest.raises(ValueError):
        reference_ids(w, 10, mode="floor")
    pdf, ddf = make_ddf(w, sizes)
    with pytest.raises((ValueError, OverflowError)):
        ddf.cumbatch.ids("w", 10, mode="floor").compute()
    with pytest.raises((ValueError, OverflowError)):
        pdf.cumbatch.ids("w", 10, mode="floor")


def test_floor_grid_too_fine_for_its_cells_raises_before_any_output():
    """A limit so small that S / limit passes 2**62 (or overflows to infinity): the kernels'
    int64 cells would saturate and stop starting batches where the Floor rule of docs/design.md starts them,
    so planning raises (pandas and Dask alike) instead of returning other ids."""
    df = pd.DataFrame({"w": np.full(40, 1e8)})
    ddf = dd.from_pandas(df, npartitions=4)
    for frame in (df, ddf):
        for limit in (1e-300, 1e-10):
            with pytest.raises(ValueError, match="2\\*\\*62 grid cells.*larger limit or mode='greedy'"):
                frame.cumbatch.ids("w", limit, mode="floor")
    assert ddf.cumbatch.ids("w", 1e-300).compute().tolist() == list(range(40))  # greedy: fine
    fine = pd.DataFrame({"w": np.ones(10)})  # S / limit up to 9e17: within the cells
    assert fine.cumbatch.ids("w", 1e-17, mode="floor").tolist() == reference_ids([1.0] * 10, 1e-17, mode="floor")
    with pytest.raises(ValueError, match="2\\*\\*62"):
        fine.cumbatch.ids("w", 1e-18, mode="floor")
