"""The accessor's methods on Dask and pandas frames, each checked against the sequential reference
(tests/reference.py).

Covers: ``ids`` as a lazy Dask collection (divisions, unknown divisions, how often it reads each
partition, the depth of its graph at 10,000 partitions), the pandas index kept, ``assign``,
``plan``, ``repartition``, ``iter_batches``, ``series.cumbatch`` and a Series as the weight, and
Parquet sources (partitions fused by Dask, selections of partitions). Moved from
tests/engine/test_batching_cases.py; the batching itself is tested in tests/engine.
"""
from __future__ import annotations

import graphlib
import math

import dask
import dask.dataframe as dd

import numpy as np
import pandas as pd
import pytest

from conftest import (ALL_MODES, PIECES_READ, assert_whole_batches, counted_frame, ids_list, make_ddf,
                      ref_ids)
from reference import reference_ids, reference_plan

import dask_cumbatch  # noqa: F401  (registers the accessors)

pytestmark = pytest.mark.usefixtures("threaded")


# ------------------------------------------------------------------ ids: divisions, laziness
def test_unknown_divisions():
    rng = np.random.default_rng(5)
    w = rng.integers(0, 10, 500).tolist()
    pdf, ddf = make_ddf(w, npartitions=9)
    ddf = ddf.clear_divisions()
    res = ddf.cumbatch.ids("w", 23)
    assert not res.known_divisions
    assert ids_list(res.compute()) == reference_ids(w, 23)
    out = ddf.cumbatch.repartition("w", 23)
    assert out.compute()["batch"].tolist() == reference_ids(w, 23)


def test_ids_is_dask_and_keeps_divisions():
    w = list(range(40))
    pdf, ddf = counted_frame(w)
    res = ddf.cumbatch.ids("w", 50)
    res2 = ddf.cumbatch.assign("w", 50)
    assert isinstance(res, dd.Series) and isinstance(res2, dd.DataFrame)
    assert res.divisions == ddf.divisions and res2.divisions == ddf.divisions
    assert res.npartitions == ddf.npartitions
    PIECES_READ.clear()
    assert ids_list(res.compute()) == reference_ids(w, 50)
    assert PIECES_READ, "computing the result read no data: the ids were precomputed"


def test_ids_reads_each_partition_once_to_build_and_once_to_compute():
    # docs/design-decisions.md: the summary pass runs when ids() is called (like set_index's
    # divisions), reading every partition once; computing the lazy result reads it once more.
    # Nothing is persisted in between, and no partition is read twice in one pass.
    w = list(range(40))
    pdf, ddf = counted_frame(w)
    PIECES_READ.clear()
    res = ddf.cumbatch.ids("w", 50)
    assert sorted(PIECES_READ) == [10, 10, 10, 10], f"building read {PIECES_READ}"
    PIECES_READ.clear()
    assert ids_list(res.compute()) == reference_ids(w, 50)
    assert sorted(PIECES_READ) == [10, 10, 10, 10], f"computing read {PIECES_READ}"


# ------------------------------------------------------------------ graph depth
def _graph_depth(collection) -> int:
    """Longest chain of dependencies in the collection's task graph (iteratively)."""
    from dask.core import get_dependencies

    graph = dict(collection.__dask_graph__())
    deps = {k: set(get_dependencies(graph, k)) & graph.keys() for k in graph}
    depth = {}
    for key in graphlib.TopologicalSorter(deps).static_order():
        depth[key] = 1 + max((depth[d] for d in deps[key]), default=0)
    return max(depth.values())


def test_graph_depth_flat_at_10000_partitions():
    n_parts = 10_000
    pdf = pd.DataFrame({"w": np.ones(2 * n_parts, dtype="int64")})
    ddf = dd.from_pandas(pdf, npartitions=n_parts)
    assert ddf.npartitions == n_parts
    ours = _graph_depth(ddf.cumbatch.ids("w", 3))
    theirs = _graph_depth(ddf["w"].cumsum())
    assert theirs >= n_parts, theirs  # the measure sees a per-partition chain
    assert ours <= 10, ours


# ------------------------------------------------------------------ pandas index, assign / plan
def test_pandas_index_kept_duplicates_and_strings():
    w = [3, 3, 3, 3, 7]
    pdf = pd.DataFrame({"w": w}, index=pd.Index(["b", "a", "a", "z", "b"], name="lbl"))
    got = pdf.cumbatch.ids("w", 6)
    assert got.index.equals(pdf.index)
    assert got.tolist() == reference_ids(w, 6)
    out = pdf.cumbatch.assign("w", 6)
    assert out.index.equals(pdf.index) and out["batch"].tolist() == reference_ids(w, 6)


def test_assign_adds_named_column():
    rng = np.random.default_rng(11)
    w = rng.integers(0, 10, 200).tolist()
    pdf, ddf = make_ddf(w, [50, 0, 1, 149])
    want = reference_ids(w, 17, mode="fill")
    out = ddf.cumbatch.assign("w", 17, mode="fill", name="bid")
    got = out.compute()
    assert list(got.columns) == list(pdf.columns) + ["bid"]
    pd.testing.assert_frame_equal(got.drop(columns="bid"), pdf)
    assert got["bid"].tolist() == want
    got_pd = pdf.cumbatch.assign("w", 17, mode="fill", name="bid")
    assert got_pd["bid"].tolist() == want
    assert "batch" in ddf.cumbatch.assign("w", 17).columns


@pytest.mark.parametrize("opts", ALL_MODES, ids=str)
def test_plan_table_matches_the_reference(opts):
    rng = np.random.default_rng(12)
    w = rng.integers(0, 30, 400).tolist()
    pdf, ddf = make_ddf(w, [100, 0, 3, 297])
    want = reference_plan(w, ref_ids(w, 40, opts))
    for plan in (ddf.cumbatch.plan("w", 40, **opts), pdf.cumbatch.plan("w", 40, **opts)):
        b = plan.batches
        assert list(b.columns)[:6] == ["batch", "rows", "total", "max", "start", "stop"]
        assert plan.n_batches == len(want)
        assert plan.n_rows == 400
        assert plan.skipped == 0
        assert plan.limit == 40
        for col in ("batch", "rows", "total", "max", "start", "stop"):
            assert b[col].tolist() == [r[col] for r in want], col
        assert isinstance(repr(plan), str) and isinstance(plan._repr_html_(), str)


def test_plan_with_skipped_rows_counts_positions():
    w = [1.0, math.nan, 2.0, -1.0, 3.0, 4.0, math.inf, 1.0]
    pdf, ddf = make_ddf(w, [2, 0, 3, 3])
    valid = [x for x in w if math.isfinite(x) and x >= 0]
    it = iter(reference_ids(valid, 5))
    ids = [next(it) if math.isfinite(x) and x >= 0 else None for x in w]
    want = reference_plan([x if math.isfinite(x) and x >= 0 else 0.0 for x in w], ids)
    plan = ddf.cumbatch.plan("w", 5, invalid="skip")
    assert plan.skipped == 3
    assert plan.n_rows == 5
    b = plan.batches
    assert b["start"].tolist() == [r["start"] for r in want]
    assert b["stop"].tolist() == [r["stop"] for r in want]
    assert b["rows"].tolist() == [r["rows"] for r in want]
    assert b["total"].tolist() == [r["total"] for r in want]


# ------------------------------------------------------------------ repartition
@pytest.mark.parametrize("bpp", [None, 1, 3])
@pytest.mark.parametrize("opts", [dict(mode="greedy"), dict(mode="fill"), dict(mode="floor"),
                                  dict(mode="greedy", multiple=4, max_rows=12)], ids=str)
def test_repartition_whole_batches(opts, bpp):
    rng = np.random.default_rng(13)
    w = rng.integers(0, 20, 1000).tolist()
    keys = sorted(rng.choice(["a", "b", "c"], 1000).tolist())
    sizes = [300, 0, 1, 1, 200, 498]
    pdf, ddf = make_ddf(w, sizes, keys=keys)
    want = ref_ids(w, 60, opts, keys=keys)
    out = ddf.cumbatch.repartition("w", 60, batches_per_partition=bpp, by="k", **opts)
    parts = dask.compute(*out.to_delayed())
    owner = assert_whole_batches(parts, want, pdf, bpp)
    assert sorted(owner) == list(range(max(want) + 1))


def test_repartition_batch_spanning_many_partitions():
    w = [1.0] * 1000
    pdf, ddf = make_ddf(w, [10] * 100)
    out = ddf.cumbatch.repartition("w", 333)
    parts = dask.compute(*out.to_delayed())
    nonempty = [p for p in parts if len(p)]
    assert [p["batch"].unique().tolist() for p in nonempty] == [[0], [1], [2], [3]]
    whole = pd.concat(parts)
    assert whole["batch"].tolist() == reference_ids(w, 333)
    pd.testing.assert_frame_equal(whole.drop(columns="batch"), pdf)


def test_repartition_drops_skipped_rows():
    w = [1.0, math.nan, 2.0, -1.0, 3.0, 4.0, math.inf, 1.0]
    pdf, ddf = make_ddf(w, [2, 0, 3, 3])
    out = ddf.cumbatch.repartition("w", 5, invalid="skip").compute()
    keep = [math.isfinite(x) and x >= 0 for x in w]
    assert out["pos"].tolist() == [i for i, ok in enumerate(keep) if ok]
    assert out["batch"].tolist() == reference_ids([x for x, ok in zip(w, keep) if ok], 5)


# ------------------------------------------------------------------ iter_batches
@pytest.mark.parametrize("prefetch", [1, 3])
def test_iter_batches_yields_every_batch_whole_and_in_order(prefetch):
    rng = np.random.default_rng(14)
    w = rng.integers(0, 20, 500).tolist()
    pdf, ddf = make_ddf(w, [100, 0, 7, 393])
    want = reference_ids(w, 45)
    seen_ids, frames = [], []
    for bid, frame in ddf.cumbatch.iter_batches("w", 45, prefetch=prefetch):
        assert isinstance(frame, pd.DataFrame)
        seen_ids.append(bid)
        frames.append(frame)
        if "batch" in frame.columns:
            assert set(frame["batch"].tolist()) == {bid}
    assert seen_ids == list(range(max(want) + 1))
    whole = pd.concat(frames)
    if "batch" in whole.columns:
        whole = whole.drop(columns="batch")
    pd.testing.assert_frame_equal(whole, pdf)
    assert [bid for bid, f in zip(seen_ids, frames) for _ in range(len(f))] == want


# ------------------------------------------------------------------ series accessor, Series weight
def test_series_accessor_ids_match_the_reference():
    rng = np.random.default_rng(15)
    w = (rng.random(300) * 3).tolist()
    pdf, ddf = make_ddf(w, [0, 150, 1, 149])
    want = reference_ids(w, 4.0, mode="fill", max_rows=9)
    res = ddf["w"].cumbatch.ids(4.0, mode="fill", max_rows=9)
    assert isinstance(res, dd.Series)
    assert ids_list(res.compute()) == want
    assert ids_list(pdf["w"].cumbatch.ids(4.0, mode="fill", max_rows=9)) == want


def test_weight_as_aligned_series():
    rng = np.random.default_rng(16)
    w = rng.integers(0, 10, 300).tolist()
    pdf, ddf = make_ddf(w, [100, 100, 100])
    want = reference_ids([2 * x for x in w], 31)
    assert ids_list(ddf.cumbatch.ids(ddf["w"] * 2, 31).compute()) == want
    assert ids_list(pdf.cumbatch.ids(pdf["w"] * 2, 31)) == want


# ------------------------------------------------------------------ Parquet sources, selected partitions
@pytest.mark.parametrize("mode", ["greedy", "floor"])
def test_parquet_source_with_many_columns_keeps_partitions_aligned(tmp_path, mode):
    # Dask fuses the partitions of a Parquet read when few of many columns are projected;
    # every pass of ours must still see the same partitions (regression: ids diverged).
    rng = np.random.default_rng(5)
    for i in range(4):
        n = 5000
        pd.DataFrame({
            "tokens": rng.integers(1, 400, n),
            **{f"payload{j}": rng.random(n) for j in range(8)},
        }).to_parquet(tmp_path / f"part-{i}.parquet")
    ddf = dd.read_parquet(tmp_path)
    pdf = ddf.compute()
    want = reference_ids(pdf["tokens"].tolist(), 8192, mode=mode)
    assert ids_list(ddf.cumbatch.ids("tokens", 8192, mode=mode).compute()) == want
    assert ddf.cumbatch.assign("tokens", 8192, mode=mode).compute()["batch"].tolist() == want
    clipped = pdf["tokens"].clip(upper=300).tolist()
    got = ddf.cumbatch.ids(ddf.tokens.clip(upper=300), 8192, mode=mode).compute()
    assert ids_list(got) == reference_ids(clipped, 8192, mode=mode)
    plan = ddf.cumbatch.plan("tokens", 8192, mode=mode)
    assert plan.n_batches == max(want) + 1


def test_selected_partitions_keep_their_ids():
    """ids.partitions[k], .tail() and get_partition see the ids of the whole frame (the finish
    pairs each partition with its own entry even after Dask pushes a selection down)."""
    ddf = dd.from_pandas(pd.DataFrame({"w": [1] * 12}), npartitions=3)
    whole = ddf.cumbatch.ids("w", 2).compute().tolist()
    ids = ddf.cumbatch.ids("w", 2)
    assert ids.partitions[1].compute().tolist() == whole[4:8]
    assert ids.tail(3).tolist() == whole[-3:]
    assert ids.head(2).tolist() == whole[:2]
    framed = ddf.cumbatch.assign("w", 2)
    assert framed.get_partition(2).compute()["batch"].tolist() == whole[8:]
    assert framed.partitions[[0, 2]].compute()["batch"].tolist() == whole[:4] + whole[8:]


def test_selected_partitions_of_a_parquet_read_keep_their_ids(tmp_path):
    # files with the same local index and weights: only the partition number tells them apart
    for i in range(4):
        pd.DataFrame({"tokens": [1] * 5, "x": range(5)}).to_parquet(tmp_path / f"part-{i}.parquet")
    ddf = dd.read_parquet(tmp_path)
    whole = ddf.cumbatch.assign("tokens", 2).compute()["batch"].tolist()
    assert whole == reference_ids([1] * 20, 2)
    assert ddf.cumbatch.assign("tokens", 2).tail(5)["batch"].tolist() == whole[-5:]
    assert ddf.cumbatch.ids("tokens", 2).partitions[3].compute().tolist() == whole[15:]
    sub = ddf.partitions[1:].cumbatch.ids("tokens", 2)  # a selection before batching is the input
    assert sub.partitions[1].compute().tolist() == reference_ids([1] * 15, 2)[5:10]
