"""The summary's chain (greedy over integer weights whose paths meet late: long batches).

- ``greedy_chain`` (plain greedy: the paths from the first speculative batch followed
  together) against a plain definition (walk from every candidate row to the end of the
  partition, runs of equal outcome), compiled and plain Python;
- ``chain_of`` takes it exactly for plain greedy, and gives the Chain that ``chain_table``
  gives; it declines where ``P + limit`` would leave int64 and ``chain_table`` then decides;
- the working arrays are reused per thread, never shared between threads, and capped.
"""
from __future__ import annotations

import threading
from unittest import mock

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import reference_ids
from test_properties_against_reference import SETTINGS, examples, tiny_heads

import dask_cumbatch  # noqa: F401
from dask_cumbatch.engine import scratch as scratch_mod
from dask_cumbatch.engine.backends import Backend, backend_of, cpu, python as pure
from dask_cumbatch.engine.modes.greedy import HEAD_MAX, HEAD_STARTS, _start_number, chain_of
from dask_cumbatch.engine import BatchContext
from dask_cumbatch.options import BatchOptions

I64_MAX = 2**63 - 1


def runs_by_definition(w, limit, m):
    """For the paths whose first start is row j < m: runs of j with the same (number of
    starts to the end, last start), as (first j, starts, last start); Python ints only."""
    outcomes = []
    for j in range(min(m, len(w))):
        starts, tot = [j], int(w[j])
        for e in range(j + 1, len(w)):
            if tot + int(w[e]) > limit:
                starts.append(e)
                tot = int(w[e])
            else:
                tot += int(w[e])
        outcomes.append((len(starts), starts[-1]))
    return [(j, *o) for j, o in enumerate(outcomes) if j == 0 or o != outcomes[j - 1]]


def chain_on(w, grp, opts, spec, module):
    """``chain_of`` of integer weights with the kernels of backend ``module``."""
    backend = module if isinstance(module, Backend) else backend_of(module)
    return chain_of(w, grp, BatchContext(opts, False).on(backend), spec)


def greedy_runs(be, w, limit, m):
    n, z = len(w), (lambda k: np.zeros(k, np.int64))
    out = (z(m), z(m), z(m))
    k = be.greedy_chain(w, limit, m, z(n + 1), z(m), z(m), *out)
    return k if k < 0 else sorted(zip(*(a[:k].tolist() for a in out)))


@st.composite
def long_batches(draw):
    """Integer weights with zeros, rows above the limit and batches of one to many rows."""
    n = draw(st.integers(1, 150))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.integers(0, draw(st.sampled_from([2, 10, 1000])), n).astype(np.int64)
    for pos in draw(st.lists(st.integers(0, n - 1), max_size=3)):
        w[pos] = draw(st.sampled_from([0, 10**6]))
    limit = draw(st.sampled_from([1, 3, 17, 400, 5000, 10**9]))
    return w, limit, draw(st.integers(1, n))


@settings(max_examples=examples(200), **SETTINGS)
@given(long_batches())
def test_greedy_chain_gives_the_runs_by_definition(case):
    w, limit, m = case
    expected = runs_by_definition(w, limit, m)
    assert greedy_runs(cpu, w, limit, m) == expected
    assert greedy_runs(pure, w, limit, m) == expected


def table_only(be):
    """Backend module ``be`` without ``greedy_chain``: chain_of falls back to ``chain_table``."""
    return backend_of(be).without("greedy_chain")


def same_chain(a, b):
    if a is None or b is None:
        return a is b
    return a.m == b.m and all(np.array_equal(getattr(a, f), getattr(b, f))
                              for f in ("run_start", "cnt", "last", "tot", "mx"))


def speculative_flags(w, limit):
    out = np.zeros(len(w), np.bool_)
    cpu.greedy_starts(w, np.zeros(len(w), np.bool_), False, False, np.int64(limit), out)
    return out


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1000, 30000))
def test_chain_of_gives_chain_tables_chain_on_long_partitions(seed, limit):
    # thousands of rows a batch, thousands of candidate rows, paths merging over many batches
    w = np.round(np.random.default_rng(seed).lognormal(3.0, 1.0, 40_003)).astype(np.int64)
    opts, spec = BatchOptions.make("w", limit), speculative_flags(w, limit)
    grp = np.zeros(len(w), np.bool_)
    assert same_chain(chain_on(w, grp, opts, spec, cpu), chain_on(w, grp, opts, spec, table_only(cpu)))


def test_sums_near_int64_leave_it_to_chain_table():
    big = np.array([2**62, 2**62, 5, 0, 7], np.int64)
    small = np.array([1, 2, 3, 0], np.int64)  # P + limit reaching I64_MAX exactly, or one beyond
    for w, limit, declined in [(big, I64_MAX, True), (big, 2**62, True), (big, 10, True),
                               (small, I64_MAX - 6, False), (small, I64_MAX - 5, True)]:
        for be in (cpu, pure):
            assert (greedy_runs(be, w, limit, 2) == -1) == declined, (limit, be.__name__)
        opts, spec = BatchOptions.make("w", limit), np.ones(len(w), np.bool_)
        grp = np.zeros(len(w), np.bool_)
        assert same_chain(chain_on(w, grp, opts, spec, cpu), chain_on(w, grp, opts, spec, table_only(cpu)))


def test_chain_of_takes_greedy_chain_for_plain_greedy_only():
    w = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8], np.int64)
    spec = speculative_flags(w, 10)
    for mode, extra, wanted in [("greedy", {}, True), ("greedy", {"cost": "padded"}, False),
                                ("greedy", {"max_rows": 3}, False), ("fill", {}, False)]:
        opts = BatchOptions.make("w", 10, mode=mode, **extra)
        with mock.patch.object(pure, "greedy_chain", wraps=pure.greedy_chain) as fast:
            got = chain_on(w, np.zeros(len(w), np.bool_), opts, spec, pure)
        assert fast.called == wanted, (mode, extra)
        assert same_chain(got, chain_on(w, np.zeros(len(w), np.bool_), opts, spec, table_only(pure)))


def test_long_batches_across_partitions_give_the_reference_ids():
    # about 400 rows a batch in partitions of 5,000 rows, summaries that keep a few rows: the
    # scan resolves the partitions from their chains
    w = np.round(np.random.default_rng(7).lognormal(4.0, 1.0, 60_000)).astype(np.int64)
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=12)
    limit = int(w.mean() * 400)
    with tiny_heads(), mock.patch.object(cpu, "greedy_chain", wraps=cpu.greedy_chain) as fast:
        got = ddf.cumbatch.ids("w", limit, mode="greedy").compute(scheduler="sync").to_numpy()
    assert fast.call_count == 12
    assert got.tolist() == reference_ids(w.tolist(), limit, mode="greedy")


def test_scratch_is_reused_per_thread_and_capped(monkeypatch):
    a = scratch_mod.scratch("t-a", 1000, np.int64)
    assert scratch_mod.scratch("t-a", 500, np.int32).base is a.base  # same memory
    assert scratch_mod.scratch("t-a", 2000, np.int64).base is not a.base  # grown
    other = {}
    thread = threading.Thread(target=lambda: other.setdefault("a", scratch_mod.scratch("t-a", 10, np.int64)))
    thread.start()
    thread.join()
    assert other["a"].base is not scratch_mod.scratch("t-a", 10, np.int64).base  # never shared
    monkeypatch.setattr(scratch_mod, "MAX_BYTES", 1 << 16)
    big = scratch_mod.scratch("t-big", 1 << 14, np.int64)  # 128 KiB: over the cap
    assert big.base is None and "t-big" not in scratch_mod._local.buffers  # a fresh array, not kept


@st.composite
def carried_walks(draw):
    """Integer weights and a carried open batch (none, or one with any total up to past the limit)."""
    w, limit, _ = draw(long_batches())
    opens = draw(st.booleans())
    tot = 0 if opens else draw(st.sampled_from([0, 1, limit // 2, limit, limit + 5]))
    return w, limit, tot, opens, draw(st.integers(0, 50))


@settings(max_examples=examples(200), **SETTINGS)
@given(carried_walks())
def test_greedy_sums_ids_equal_the_walk(case):
    w, limit, tot, opens, base = case
    n = len(w)
    want = np.zeros(n, np.int64)
    res = cpu.greedy_walk(w, np.zeros(n, np.bool_), 0 if opens else 1, np.int64(tot), np.int64(0), 0, False,
                          np.int64(limit), np.zeros(0, np.bool_), want, base)
    for be in (cpu, pure):
        got = np.full(n, -7, np.int64)
        starts = be.greedy_sums_ids(w, np.int64(tot), opens, limit, np.zeros(n + 1, np.int64), got, base)
        assert starts == int(res[0]) and got.tolist() == want.tolist(), be.__name__


def test_greedy_sums_ids_decline_near_int64():
    w, got = np.array([2**62, 2**62, 5], np.int64), np.full(3, -7, np.int64)
    assert cpu.greedy_sums_ids(w, np.int64(0), True, 2**62, np.zeros(4, np.int64), got, 0) == -1
    assert got.tolist() == [-7, -7, -7]  # untouched: the walk decides


@settings(max_examples=examples(200), **SETTINGS)
@given(carried_walks())
def test_greedy_sums_end_equals_the_walk(case):
    w, limit, tot, opens, _ = case
    n = len(w)
    res = cpu.greedy_walk(w, np.zeros(n, np.bool_), 0 if opens else 1, np.int64(tot), np.int64(0), 0, False,
                          np.int64(limit), np.zeros(0, np.bool_), np.zeros(n, np.int64), 0)
    starts, start = int(res[0]), int(res[5])  # the open batch's first row (0 - 1: the carried one)
    for be in (cpu, pure):
        count, last = be.greedy_sums_end(w, np.int64(tot), opens, limit, np.zeros(n + 1, np.int64))
        assert (count, last if count else start) == (starts, start), be.__name__


def test_greedy_sums_end_declines_near_int64():
    w = np.array([2**62, 2**62, 5], np.int64)
    assert cpu.greedy_sums_end(w, np.int64(0), True, 2**62, np.zeros(4, np.int64)) == (-1, -1)


@pytest.mark.parametrize("parts, rows_a_batch, searched", [(3, 2000, True), (3, 20, False), (36, 7000, True)])
def test_scan_of_whole_partitions_searches_where_batches_are_long(parts, rows_a_batch, searched):
    # summaries kept whole (the local default), long batches: the scan finds each partition's
    # end state by greedy_sums_end (with 36 partitions, some lie inside one batch), and the
    # ids are the reference's
    w = np.round(np.random.default_rng(11).lognormal(4.0, 1.0, 90_000)).astype(np.int64)
    w[45_000] = 10**7  # a row above the limit: a batch of its own
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=parts)
    limit = int(w[:1000].mean() * rows_a_batch)
    with mock.patch.object(cpu, "greedy_sums_end", wraps=cpu.greedy_sums_end) as sums:
        got = ddf.cumbatch.ids("w", limit).compute(scheduler="sync").to_numpy()
    assert sums.called == searched
    assert got.tolist() == reference_ids(w.tolist(), limit)


def test_long_batches_finish_by_sums_and_keep_no_flags():
    # about 2,000 rows a batch: the summaries say so, keep no start flags, and the finish
    # searches prefix sums; short batches keep the flags and walk
    from dask_cumbatch import engine

    w = np.round(np.random.default_rng(3).lognormal(4.0, 1.0, 120_000)).astype(np.int64)
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=3)
    for rows_a_batch, long in ((2000, True), (20, False)):
        limit = int(w.mean() * rows_a_batch)
        summaries = [engine.summarize(part, BatchContext(BatchOptions.make("w", limit), False))
                     for part in (pd.DataFrame({"w": w[:40_000]}), pd.DataFrame({"w": w[40_000:80_000]}))]
        assert [(s.long_batches, s.kept is None) for s in summaries] == [(long, long)] * 2
        with mock.patch.object(cpu, "greedy_sums_ids", wraps=cpu.greedy_sums_ids) as sums:
            got = ddf.cumbatch.ids("w", limit).compute(scheduler="sync").to_numpy()
        assert sums.call_count == (3 if long else 0)
        assert got.tolist() == reference_ids(w.tolist(), limit)


@settings(max_examples=examples(200), **SETTINGS)
@given(long_batches())
def test_greedy_sums_starts_equal_greedy_starts(case):
    w, limit, _ = case
    n = len(w)
    want = np.zeros(n, np.bool_)
    res = cpu.greedy_starts(w, np.zeros(n, np.bool_), False, False, np.int64(limit), want)
    for be in (cpu, pure):
        got = np.zeros(n, np.bool_)
        r = be.greedy_sums_starts(w, limit, np.zeros(n + 1, np.int64), got)
        assert [int(x) for x in r] == [int(x) for x in res] and got.tolist() == want.tolist(), be.__name__


def test_summary_walk_searches_where_batches_look_long():
    from dask_cumbatch import engine

    w = np.round(np.random.default_rng(5).lognormal(4.0, 1.0, 50_000)).astype(np.int64)
    for rows_a_batch, searched in ((2000, True), (100, True), (20, False)):
        limit = int(w.mean() * rows_a_batch)
        with mock.patch.object(cpu, "greedy_sums_starts", wraps=cpu.greedy_sums_starts) as sums:
            engine.summarize(pd.DataFrame({"w": w}), BatchContext(BatchOptions.make("w", limit), False))
        assert sums.called == searched, rows_a_batch
    # light rows first (the search is tried), sums beyond int64 at the end: declined, walked
    big = np.concatenate([np.ones(5000, np.int64), np.array([2**62, 2**62, 5], np.int64)])
    with mock.patch.object(cpu, "greedy_sums_starts", wraps=cpu.greedy_sums_starts) as sums:
        summ = engine.summarize(pd.DataFrame({"w": big}), BatchContext(BatchOptions.make("w", 2**62 + 10), False))
    want = cpu.greedy_starts(big, np.zeros(len(big), np.bool_), False, False, np.int64(2**62 + 10),
                             np.zeros(len(big), np.bool_))
    assert sums.called and summ.spec_starts == int(want[0]) == 3


@settings(max_examples=examples(60), **SETTINGS)
@given(n=st.integers(0, 70_000), every=st.sampled_from([1, 3, 60, 500, 1100, 10**6]), k=st.sampled_from([0, 5, HEAD_STARTS]))
def test_start_number_is_the_kth_flagged_row(n, every, k):
    """The summary's head length: the row of start k among the first HEAD_MAX flags, looked
    up in growing windows, is the one a search of all of them finds (else HEAD_MAX)."""
    spec = np.zeros(n, bool)
    spec[::every] = True
    positions = np.flatnonzero(spec[:HEAD_MAX])
    assert _start_number(spec, k, HEAD_MAX) == (int(positions[k]) if len(positions) > k else HEAD_MAX)
