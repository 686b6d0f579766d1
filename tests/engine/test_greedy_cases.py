"""Greedy and fill mode's cases (both in dask_cumbatch/engine/modes/greedy.py), each checked against
the sequential reference (tests/reference.py).

Covers: partitions of > 50,000 rows, speculative and true paths that meet late (or only through
the chain tables), ``multiple`` cutting back rows from several partitions, batches spanning
many partitions, big integers that must not wrap, and fill's int64 overflow. Cases every mode
shares are in test_every_mode_cases.py.
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from conftest import GREEDY_FILL, ddf_ids, make_ddf, ref_ids
from reference import reference_ids

import dask_cumbatch  # noqa: F401  (registers the accessors)

pytestmark = pytest.mark.usefixtures("threaded")


# ------------------------------------------------------------------ big partitions, paths that meet late
@pytest.mark.parametrize(
    "opts,dtype,limit",
    [
        (dict(mode="greedy"), "int64", 7),
        (dict(mode="fill", cost="padded"), "int64", 7),
        (dict(mode="greedy"), "float64", 0.7),
        (dict(mode="fill"), "float64", 0.7),
        (dict(mode="greedy", multiple=8), "int64", 13),
    ],
    ids=str,
)
def test_constant_weights_big_partitions(opts, dtype, limit):
    # partitions of > 50,000 rows: a fix-up that only walks a bounded head would be wrong here
    sizes = [50_001, 60_000, 0, 55_003]
    n = sum(sizes)
    w = [1] * n if dtype == "int64" else [0.1] * n
    pdf, ddf = make_ddf(w, sizes, dtype=dtype, extra=False)
    assert ddf_ids(ddf, limit, **opts) == ref_ids(w, limit, opts)


@pytest.mark.parametrize("meet", [300, 5_000, 70_000])
@pytest.mark.parametrize("mode", ["greedy", "fill"])
def test_paths_meet_late_in_big_partition(mode, meet):
    # weights 5 with limit 10: a partition that starts mid-batch stays out of phase (batches of
    # 2 rows) until a row weighing the whole limit, where both paths start/close a batch. That
    # row is `meet` rows in: inside the summary head, past HEAD_ROWS, past HEAD_MAX.
    first = [5] * 4_097  # odd: the true path enters partition 2 mid-batch
    second = [5] * 80_000
    second[meet] = 10
    second[meet + 7] = 10
    w = first + second + [5] * 3 + [5] * 4_101
    sizes = [len(first), len(second), 3, 4_101]
    pdf, ddf = make_ddf(w, sizes, extra=False)
    assert ddf_ids(ddf, 10, mode=mode) == ref_ids(w, 10, dict(mode=mode))


@pytest.mark.parametrize(
    "opts,limit,budget",
    [
        (dict(mode="greedy"), 2_000, 1 << 16),  # ~22-row batches: the paths meet late
        (dict(mode="fill", cost="padded", max_rows=40), 4_000, 1 << 16),
        (dict(mode="greedy", by="k"), 30_000, 1 << 16),
        # batches of ~66,000 rows: too few per partition to coalesce; the default budget
        # keeps these partitions whole (compacted to 2 bytes a row)
        (dict(mode="greedy"), 6_000_000, None),
    ],
    ids=str,
)
def test_token_lengths_resolved_from_summaries(opts, limit, budget, monkeypatch):
    # lognormal token counts in partitions too long to keep whole in the summary (the budget
    # is small): the scan resolves every partition from the summaries (chain tables), so the
    # input is read exactly twice -- and the ids still equal the reference
    from dask_cumbatch import options
    from dask_cumbatch.dask.prepared import prepare_frame
    from dask_cumbatch.dask.summaries import plan_partitions

    if budget:
        monkeypatch.setattr(importlib.import_module("dask_cumbatch.engine.scan"), "HEAD_BUDGET", budget)
    rng = np.random.default_rng(7)
    sizes = [70_000, 90_000, 0, 80_001]
    w = np.minimum(rng.lognormal(4, 1, sum(sizes)).astype(np.int64) + 1, 8_000).tolist()
    keys = (np.arange(len(w)) // 50_000).tolist() if "by" in opts else None
    pdf, ddf = make_ddf(w, sizes, keys=keys, extra=False)
    prep = prepare_frame(ddf, "w", options.BatchOptions.make("w", limit, **opts))
    assert plan_partitions(prep).walked == []
    assert ddf_ids(ddf, limit, **opts) == ref_ids(w, limit, opts, keys=keys)


# ------------------------------------------------------------------ batches spanning partitions
@pytest.mark.parametrize("multiple", [8, 64])
@pytest.mark.parametrize("sizes", [[1] * 250 + [350], [10] * 60, [7, 0] * 85 + [4, 0, 1, 0], [600]])
def test_multiple_cut_back_spans_partitions(multiple, sizes):
    # the rows cut back (up to multiple-1 of them) come from several earlier partitions
    rng = np.random.default_rng(multiple)
    w = rng.integers(1, 4, 600).tolist()
    opts = dict(multiple=multiple, max_rows=3 * multiple + 5)
    pdf, ddf = make_ddf(w, sizes)
    assert ddf_ids(ddf, 150, **opts) == ref_ids(w, 150, opts)
    assert ddf_ids(ddf, 150, multiple=multiple) == ref_ids(w, 150, dict(multiple=multiple))


@pytest.mark.parametrize("opts", GREEDY_FILL + [dict(mode="greedy", max_rows=1500)], ids=str)
def test_batch_spans_many_partitions_floats(opts):
    rng = np.random.default_rng(42)
    w = rng.random(6000).tolist()
    sizes = [50] * 100 + [0, 1, 0] + [999]
    pdf, ddf = make_ddf(w, sizes)
    limit = 700.5  # about 1400 rows per batch: ~28 partitions per batch
    got = ddf_ids(ddf, limit, **opts)
    assert got == ref_ids(w, limit, opts)
    assert max(got) < 10


# ------------------------------------------------------------------ big integers, int64 overflow
@pytest.mark.parametrize("sizes", [[5], [1, 1, 1, 1, 1], [2, 0, 3]])
def test_big_ints_greedy_do_not_wrap(sizes):
    # greedy never holds a sum above the limit, so nothing overflows; but a naive int64
    # `tot + w` (2**62 + 2**62) wraps negative and would wrongly join the rows
    w = [2**62, 2**62, 5, 2**62 + 10, 0]
    limit = 2**62 + 5
    pdf, ddf = make_ddf(w, sizes)
    want = ref_ids(w, limit, {})
    assert want == [0, 1, 1, 2, 3]
    assert ddf_ids(ddf, limit) == want


@pytest.mark.parametrize("sizes", [[3], [1, 1, 1], [2, 1]])
def test_int64_overflow_fill_raises(sizes):
    w = [2**62, 2**62, 1]
    with pytest.raises(ValueError):
        reference_ids(w, 2**63 - 1, mode="fill")
    pdf, ddf = make_ddf(w, sizes)
    with pytest.raises((ValueError, OverflowError)):
        ddf.cumbatch.ids("w", 2**63 - 1, mode="fill").compute()
