"""Floor cells are exact (docs/design.md, "Exactness").

The cell of row i is ``floor(S[i] / limit)`` with ``S`` the exact real-number sum of the float64
weights before it in its group, so floor ids do not depend on the partitioning, equal the exact
reference (tests/reference.py, in ``fractions.Fraction``), and an append equals one export.
"""
from __future__ import annotations

import shutil
from fractions import Fraction

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ids_list, make_ddf, tree
from reference import reference_ids

import dask_cumbatch  # noqa: F401  (registers the accessors)
from dask_cumbatch.engine.state import Carry
from dask_cumbatch.export import to_files
from dask_cumbatch.engine import BatchContext

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# decimals whose float64 sums round, dyadic values whose sums land on cells exactly, tiny and
# huge magnitudes (exact sums beyond a double-double: the Python walk), zeros
VALUES = [0.1, 0.2, 0.3, 0.7, 1 / 3, 0.01, 1.1, 2.675, 0.5, 0.25, 0.125, 1.5, 3.0, 0.0, 5e-17,
          1e-300, 2.0**-1074, 1e12, 123456789.123]


@pytest.fixture(autouse=True)
def _sync_scheduler():
    with dask.config.set(scheduler="sync"):
        yield


def _ids(ddf, limit, **opts):
    return ids_list(ddf.cumbatch.ids("w", limit, mode="floor", **opts).compute())


def _exact_cells(w, limit):
    """floor(S / limit) of the exact exclusive running sums: the definition, spelled out."""
    s, cells = Fraction(0), []
    for x in w:
        cells.append((s / Fraction(limit)).__floor__())
        s += Fraction(x)
    return cells


@pytest.mark.parametrize("sizes", [[4], [2, 2], [1, 3], [3, 1], [1, 1, 1, 1], [0, 2, 0, 2, 0]])
def test_tenths_straddling_a_cell_get_the_same_ids_for_every_partitioning(sizes):
    # two partitions once gave [0, 1, 2, 2]; the exact sums 0.3 + 0.7 + 0.1 and 1.1 lie in
    # cells 11 and 11.000...x (float64's 0.1 is a little above 1/10): every row starts a batch
    w = [0.3, 0.7, 0.1, 0.1]
    pdf, ddf = make_ddf(w, sizes)
    assert _ids(ddf, 0.1) == reference_ids(w, 0.1, mode="floor") == [0, 1, 2, 3]
    assert pdf.cumbatch.ids("w", 0.1, mode="floor").tolist() == [0, 1, 2, 3]


def test_reference_is_the_exact_floor():
    w = [0.1] * 12  # the float64 running sum 0.8999999999999999 / 0.3 rounds to 3.0
    cells = _exact_cells(w, 0.3)
    want = [0] + [int(a != b) for a, b in zip(cells, cells[1:])]
    assert reference_ids(w, 0.3, mode="floor") == np.cumsum(want).tolist()


@pytest.mark.parametrize("limit", [0.1, 0.3, 1.0, 0.75, 2.5])
def test_many_rows_near_cells_across_partitions(limit):
    # decimals: every tenth row is within rounding of a cell; long partitions take the compiled
    # kernels (and their exact decisions), the result equal to the reference for each cut
    w = np.tile([0.1, 0.2, 0.3, 0.05, 0.15, 0.7, 1.3], 300).tolist()
    want = reference_ids(w, limit, mode="floor")
    for sizes in ([len(w)], [1000, 1100], [7] * 300, [1, len(w) - 1]):
        pdf, ddf = make_ddf(w, sizes)
        assert _ids(ddf, limit) == want


def test_integer_weights_with_a_fractional_limit():
    # int64 sums are exact, but S / limit in float64 rounds: 11 / 1.1 is 10.0 in float64 and
    # 9.999... exactly (float64's 1.1 is above 11/10): at S = 11 the cell is still 9
    w = ([1, 0, 2, 1, 3, 0, 0, 4] * 25)
    assert reference_ids([10, 1, 0], 1.1, mode="floor") == [0, 1, 1] and 11 / 1.1 == 10.0
    for limit in (1.1, 12.3, 2.5):
        want = reference_ids(w, limit, mode="floor")
        for sizes in ([200], [13] * 15 + [5], [1] * 200):
            pdf, ddf = make_ddf(w, sizes, dtype="int64")
            assert _ids(ddf, limit) == want


def test_sums_beyond_a_double_double_are_walked_exactly():
    # 1e12 and 2**-1074 need some 1100 bits: the kernels decline and Python walks with Fraction
    w = [1e12, 2.0**-1074, 0.3, 1e12, 5e-17, 0.7, 0.1] * 20
    want = reference_ids(w, 0.1 * 1e12, mode="floor")
    for sizes in ([len(w)], [3] * 46 + [2], [50, 90]):
        pdf, ddf = make_ddf(w, sizes)
        assert _ids(ddf, 0.1 * 1e12) == want


def test_exact_carry_survives_json():
    s = Fraction(0.1) + Fraction(0.2)
    back = Carry.from_json(Carry(s=s, cell=2, has_prev=True).to_json())
    assert back.s == s and isinstance(back.s, Fraction)
    assert Carry.from_json(Carry(s=0.5).to_json()).s == 0.5


@st.composite
def float_case(draw):
    n = draw(st.integers(1, 60))
    value = st.one_of(st.sampled_from(VALUES), st.floats(0, 10, allow_nan=False),
                      st.floats(0, 1e-3, allow_nan=False))
    w = draw(st.lists(value, min_size=n, max_size=n))
    limit = draw(st.sampled_from([0.1, 0.3, 1.0, 0.7, 2.5, 1e-3, 1 / 3, 4.0]))
    k = draw(st.integers(1, 8))
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=k - 1, max_size=k - 1)))
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
    return w, limit, sizes


@settings(max_examples=80, **SETTINGS)
@given(case=float_case(), use_by=st.booleans(), max_rows=st.one_of(st.none(), st.integers(1, 6)),
       data=st.data())
def test_float_floor_is_exact_for_every_partitioning(case, use_by, max_rows, data):
    w, limit, sizes = case
    keys = data.draw(st.lists(st.sampled_from(["a", "b"]), min_size=len(w), max_size=len(w))) if use_by else None
    want = reference_ids(w, limit, mode="floor", keys=keys, max_rows=max_rows)
    opts = dict(by="k", max_rows=max_rows) if use_by else dict(max_rows=max_rows)
    pdf, ddf = make_ddf(w, sizes, keys=keys)
    whole = _ids(make_ddf(w, [len(w)], keys=keys)[1], limit, **opts)
    assert _ids(ddf, limit, **opts) == whole == want


@settings(max_examples=40, **SETTINGS)
@given(case=float_case(), bad=st.lists(st.integers(0, 59), max_size=5))
def test_float_floor_skip_invalid_is_exact(case, bad):
    w, limit, sizes = case
    w = list(w)
    for i in bad:
        if i < len(w):
            w[i] = float("nan")
    valid = [x for x in w if x == x]
    want = reference_ids(valid, limit, mode="floor") if valid else []
    pdf, ddf = make_ddf(w, sizes)
    got = ddf.cumbatch.ids("w", limit, mode="floor", invalid="skip").compute()
    assert got.dropna().astype("int64").tolist() == want


def test_append_equals_one_export_with_fractional_weights(tmp_path):
    # two input files appended one at a time: the carried running sum (0.1 + 0.2 + ..., not a
    # float64) crosses the appends exactly, so the folders match byte for byte
    rng = np.random.default_rng(3)
    frames = [pd.DataFrame({"w": rng.choice([0.1, 0.2, 0.3, 0.7, 1.1], n), "pos": np.arange(a, a + n)})
              for a, n in ((0, 57), (57, 80))]
    inp = tmp_path / "in"
    inp.mkdir()
    for i, f in enumerate(frames):
        f.to_parquet(inp / f"f{i}.parquet", index=False)
        to_files(str(inp), str(tmp_path / "app"), "w", 0.3, mode="floor", append=True, progress=False)
    to_files(str(inp), str(tmp_path / "one"), "w", 0.3, mode="floor", progress=False)
    assert tree(tmp_path / "app") == tree(tmp_path / "one")
    got = pd.read_parquet(tmp_path / "one").sort_values("pos")
    assert got["batch"].tolist() == reference_ids(pd.concat(frames).w.tolist(), 0.3, mode="floor")
    shutil.rmtree(inp)


def test_fractional_partition_changed_between_passes_is_refused():
    # the exact kernels form no float64 running sum: the summary records NumPy's sum, which the
    # finish checks, so a weight that changed between the passes is still refused
    from dask_cumbatch import engine
    from dask_cumbatch.engine.state import InputChangedError
    from dask_cumbatch.options import BatchOptions

    opts = BatchOptions.make("w", 0.3, mode="floor")
    df = pd.DataFrame({"w": [0.1, 0.2, 0.7, 0.1]})
    entry = engine.plan_frame(df, BatchContext(opts, True)).entries[0]
    assert engine.finish_ids(df, BatchContext(opts, True), entry).tolist() == reference_ids(df.w.tolist(), 0.3, mode="floor")
    with pytest.raises(InputChangedError, match="total"):
        engine.finish_ids(df.assign(w=[0.1, 0.2 + 2**-40, 0.7, 0.1]), BatchContext(opts, True), entry)
