"""The summary's chain table (greedy over integer weights whose paths meet late: long batches).

- ``chain_table`` against a plain definition (walk from every row to the end of the
  partition), by the prefix-sum path that plain greedy takes (``_greedy_ends``) and by the
  two-pointer sweep every rule takes, compiled and plain Python: the same table;
- the prefix-sum path declines where ``P + limit`` would leave int64 (the sweep then decides,
  overflow included);
- ``chain_of`` gives the prefix-sum path its room exactly for plain greedy;
- the working arrays are reused per thread, never shared between threads, and capped.
"""
from __future__ import annotations

import threading
from unittest import mock

import dask.dataframe as dd
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import reference_ids
from test_core_properties import SETTINGS, examples

import dask_cumbatch  # noqa: F401
from dask_cumbatch.engine import scratch as scratch_mod
from dask_cumbatch.engine.backends import cpu, kernels, python as pure
from dask_cumbatch.engine.modes.greedy import chain_of
from dask_cumbatch.options import BatchOptions

I64_MAX = 2**63 - 1


def table_by_definition(w, limit):
    """For every row s: the number of batches of a greedy walk started fresh at s, and the
    first row of its last batch (Python ints, no kernel)."""
    n = len(w)
    last, count = [], []
    for s in range(n):
        starts, tot = [s], int(w[s])
        for e in range(s + 1, n):
            if tot + int(w[e]) > limit:
                starts.append(e)
                tot = int(w[e])
            else:
                tot += int(w[e])
        last.append(starts[-1])
        count.append(len(starts))
    return last, count


def run_table(be, w, limit, room):
    n = len(w)
    nxt, cnt = np.zeros(n, np.int64), np.zeros(n, np.int64)
    dq = np.zeros(n + 1 + be.CHAIN_PAD if room else max(n, 1), np.int64)
    ok = be.chain_table(w, np.zeros(n, np.bool_), False, True, False, limit, limit, 0, nxt, cnt, dq)
    return ok, nxt.tolist(), cnt.tolist()


@st.composite
def long_batches(draw):
    """Integer weights with zeros, rows above the limit and batches of one to many rows."""
    n = draw(st.integers(0, 120))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    w = rng.integers(0, draw(st.sampled_from([2, 10, 1000])), n).astype(np.int64)
    for pos in draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=3)) if n else []:
        w[pos] = draw(st.sampled_from([0, 10**6]))
    limit = draw(st.sampled_from([1, 3, 17, 400, 5000, 10**9]))
    return w, limit


@settings(max_examples=examples(200), **SETTINGS)
@given(long_batches())
def test_both_paths_give_the_table_by_definition(case):
    w, limit = case
    expected = table_by_definition(w, limit)
    for be in (cpu, pure):
        for room in (True, False):
            ok, last, count = run_table(be, w, limit, room)
            assert ok and (last, count) == expected, (be.__name__, room)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1000, 30000))
def test_compiled_paths_agree_on_long_partitions(seed, limit):
    # thousands of rows a batch: where the stretches of the prefix-sum path start mid-batch
    w = np.round(np.random.default_rng(seed).lognormal(3.0, 1.0, 40_003)).astype(np.int64)
    assert run_table(cpu, w, limit, True) == run_table(cpu, w, limit, False)


def test_limits_and_sums_near_int64_leave_it_to_the_sweep():
    big = np.array([2**62, 2**62, 5, 0, 7], np.int64)
    small = np.array([1, 2, 3, 0], np.int64)  # P + limit reaching I64_MAX exactly, or one below
    cases = [(big, limit, True) for limit in (I64_MAX, I64_MAX - 1, 2**62, 2**62 + 5, 10)]
    cases += [(small, I64_MAX - 6, True), (small, I64_MAX - 7, False)]
    for w, limit, declined in cases:
        with mock.patch.object(kernels, "_batch_ends", wraps=kernels._batch_ends) as sweep:
            fast = run_table(pure, w, limit, True)
        assert sweep.called == declined, limit
        assert fast == run_table(cpu, w, limit, True) == run_table(cpu, w, limit, False)
        if fast[0]:
            assert (fast[1], fast[2]) == table_by_definition(w, limit)
    # a window sum beyond int64 (fill mode adds a row before it tests the batch) is reported
    # by the sweep, as before
    w, n = np.array([2**62, 2**62, 2**62], np.int64), 3
    args = (np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n + 1 + cpu.CHAIN_PAD, np.int64))
    assert not cpu.chain_table(w, np.zeros(n, np.bool_), False, False, False, I64_MAX, I64_MAX, 0, *args)


def test_chain_of_gives_prefix_sums_room_for_plain_greedy_only():
    w = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8], np.int64)
    spec = np.zeros(len(w), bool)
    spec[0] = True
    cases = [("greedy", {}, True), ("greedy", {"cost": "padded"}, False),
             ("greedy", {"max_rows": 3}, False), ("fill", {}, False)]
    for mode, extra, wanted in cases:
        opts = BatchOptions.make("w", 10, mode=mode, **extra)
        with mock.patch.object(kernels, "_greedy_ends", wraps=kernels._greedy_ends) as fast:
            chain_of(w, np.zeros(len(w), bool), opts, spec, pure)
        assert fast.called == wanted, (mode, extra)


def test_long_batches_across_partitions_give_the_reference_ids():
    # about 400 rows a batch in partitions of 5,000 rows: summaries carry chain tables
    w = np.round(np.random.default_rng(7).lognormal(4.0, 1.0, 60_000)).astype(np.int64)
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=12)
    limit = int(w.mean() * 400)
    got = ddf.cumbatch.ids("w", limit, mode="greedy").compute(scheduler="sync").to_numpy()
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
