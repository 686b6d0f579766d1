"""int64 sums never wrap and never silently change the batching.

Integer weights are summed in int64. Against a limit beyond the int64 range no int64 cost
reaches the limit, so the limit never cuts; a cost that would leave int64 raises
``OverflowError``, on pandas and across Dask partitions, in every mode and cost, exactly where
the sequential reference (``tests/reference.py``, Python ints) raises.
"""
from __future__ import annotations

import dask.dataframe as dd
import pandas as pd
import pytest

import dask_cumbatch  # noqa: F401
from reference import reference_ids

BIG = 2**62
WEIGHTS = {
    "issue": [BIG] * 3 + [5],
    "sum fits exactly": [BIG, BIG - 1],
    "fill reaches int64 max": [BIG, BIG - 1, 0],
    "padded beyond, sum fits": [2**61, 1, 1, 1, 1],
    "small": [3, 1, 4, 1, 5, 9, 2, 6],
}
LIMITS = [1e300, 1e19, 2**63, 2**64 + 3, 2**63 - 1, 10]
MODES = [dict(mode="greedy"), dict(mode="fill"), dict(mode="floor"),
         dict(mode="greedy", cost="padded"), dict(mode="fill", cost="padded"),
         dict(mode="greedy", max_rows=2), dict(mode="greedy", multiple=2)]


def expected(w, limit, opts):
    try:
        return reference_ids(w, limit, **opts)
    except OverflowError:
        return OverflowError


def computed(frame, limit, opts):
    try:
        ids = frame.cumbatch.ids("w", limit, **opts)
        return (ids.compute() if hasattr(ids, "compute") else ids).tolist()
    except OverflowError:
        return OverflowError


@pytest.mark.parametrize("opts", MODES, ids=str)
@pytest.mark.parametrize("limit", LIMITS, ids=str)
@pytest.mark.parametrize("name", list(WEIGHTS))
def test_int64_limits_exact_or_overflow(name, limit, opts):
    w = WEIGHTS[name]
    pdf = pd.DataFrame({"w": w})
    want = expected(w, limit, opts)
    assert computed(pdf, limit, opts) == want
    for npartitions in (2, len(w)):
        assert computed(dd.from_pandas(pdf, npartitions=npartitions, sort=False), limit, opts) == want


def test_int64_weights_whose_sum_overflows_raise_and_a_limit_of_int64_max_still_cuts():
    df = pd.DataFrame({"w": [BIG] * 3 + [5]})
    for limit in (1e300, 1e19):
        with pytest.raises(OverflowError, match="int64"):
            df.cumbatch.ids("w", limit)
    assert df.cumbatch.ids("w", 2**63 - 1).tolist() == reference_ids(df.w.tolist(), 2**63 - 1)


@pytest.mark.parametrize("mode", ["greedy", "fill", "floor"])
def test_limit_beyond_int64_is_no_limit_while_sums_fit(mode):
    # batches cut only by groups and row caps: the same ids as with weights that never add up
    w = [2**40] * 7 + [3] * 5
    keys = [0] * 4 + [1] * 8
    df = pd.DataFrame({"w": w, "k": keys})
    for limit in (1e19, 2**63, 1e300):
        got = df.cumbatch.ids("w", limit, mode=mode, by="k", max_rows=3).tolist()
        assert got == reference_ids(w, limit, mode=mode, keys=keys, max_rows=3)
        assert got == [0, 0, 0, 1, 2, 2, 2, 3, 3, 3, 4, 4]
