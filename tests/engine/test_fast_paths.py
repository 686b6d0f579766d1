"""The fast paths give the very ids of the slow ones, and of the reference.

- tiny inputs run the kernels as plain Python (``backends/python.py``), larger ones compiled
  (``backends/cpu.py``): the same source, the same ids;
- the greedy/fill finish counts the summary's kept start flags after the paths meet (a hit) or
  walks every row (a miss: another process, evicted);
- floor's branch-free finish (no ``by``) against its walk.
"""
from __future__ import annotations

import math

import subprocess
import sys
from unittest import mock

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reference import reference_ids
from test_properties_against_reference import SETTINGS, call_opts, examples, frames, keys_for, options, weights_and_limit

import dask_cumbatch  # noqa: F401
from dask_cumbatch.engine import BatchContext, backends, kept
from dask_cumbatch.engine.backends import cpu, kernels, python as pure
from dask_cumbatch.engine.modes import floor as floor_mode


def draw_case(data, mode=None):
    opts, use_by = data.draw(options(mode=mode))
    w, dtype, limit = data.draw(weights_and_limit(mode=opts["mode"]))
    keys = data.draw(keys_for(len(w))) if use_by else None
    want = reference_ids(w, limit, keys=keys, **opts)
    pdf, ddf, _, _ = data.draw(frames(w, dtype, keys))
    return ddf, limit, call_opts(opts, use_by), want


def ids_of(ddf, limit, kw) -> list:
    with dask.config.set(scheduler="sync"):
        return ddf.cumbatch.ids("w", limit, **kw).compute().tolist()


@settings(max_examples=examples(80), **SETTINGS)
@given(data=st.data())
def test_plain_python_and_compiled_kernels_give_the_reference_ids(data):
    ddf, limit, kw, want = draw_case(data)
    with mock.patch.object(backends, "_take_tiny", lambda n_rows: True):
        in_python = ids_of(ddf, limit, kw)
    with mock.patch.object(backends, "_take_tiny", lambda n_rows: False):
        compiled = ids_of(ddf, limit, kw)
    assert in_python == want
    assert compiled == want


def test_backend_choice_keeps_to_the_tiny_budget():
    assert backends.backend_for("cpu", n_rows=backends.TINY_ROWS).name == "cpu"
    with mock.patch.dict(backends._tiny, {"left": 10}), mock.patch.dict(sys.modules, {"numba": None}):
        del sys.modules["numba"]  # as if numba were not loaded yet
        assert backends.backend_for("cpu", n_rows=6).module is pure
        assert backends.backend_for("cpu", n_rows=6).name == "cpu"  # budget spent
        assert backends.backend_for("cpu", n_rows=1).name == "cpu"  # and stays spent


class Hits:
    """Counts the finishes that found kept flags."""

    def __init__(self):
        self.hits = 0
        self.real = kept.kept

    def __call__(self, key):
        flags = self.real(key)
        self.hits += flags is not None
        return flags


@settings(max_examples=examples(80), **SETTINGS)
@given(data=st.data())
def test_kept_flags_hit_and_miss_give_the_reference_ids(data):
    mode = data.draw(st.sampled_from(["greedy", "fill"]))
    ddf, limit, kw, want = draw_case(data, mode=mode)
    hits = Hits()
    with mock.patch.object(kept, "KEEP_MIN_ROWS", 1), mock.patch.object(kept, "kept", hits):
        hit = ids_of(ddf, limit, kw)
    with mock.patch.object(kept, "KEEP_MIN_ROWS", 1), mock.patch.object(kept, "kept", lambda key: None):
        miss = ids_of(ddf, limit, kw)
    assert hit == want
    assert miss == want
    assert hits.hits > 0  # the sync scheduler finishes in the summarising process


def test_kept_flags_are_bounded_and_dropped_oldest_first():
    kept.forget_all()
    with mock.patch.object(kept, "KEPT_BYTES", 10):
        first = kept.keep(np.zeros(6, dtype=bool))
        second = kept.keep(np.zeros(6, dtype=bool))
        assert kept.kept(first) is None and kept.kept(second) is not None
        assert kept.kept_bytes() == 6
    kept.forget_all()


@settings(max_examples=examples(80), **SETTINGS)
@given(data=st.data())
def test_in_memory_column_and_per_partition_summaries_give_the_reference_ids(data):
    """A ``from_pandas`` frame without keys is summarised from its one weight column (sliced
    per partition, no pandas each); the same ids as the per-partition pass and the reference."""
    from conftest import make_ddf
    from dask_cumbatch.dask import in_memory

    opts, _ = data.draw(options())
    w, dtype, limit = data.draw(weights_and_limit(mode=opts["mode"]))
    want = reference_ids(w, limit, **opts)
    pdf, ddf = make_ddf(w, dtype=dtype, npartitions=data.draw(st.integers(1, 12)))
    kw = call_opts(opts, False)
    with mock.patch.object(in_memory, "gather_column", wraps=in_memory.gather_column) as spy:
        sliced = ids_of(ddf, limit, kw)
    eligible = pdf["w"].dtype.kind in "fi" and pdf["w"].dtype.itemsize == 8
    assert spy.called == eligible
    with mock.patch.object(in_memory, "in_memory_column", lambda *a: None):
        per_partition = ids_of(ddf, limit, kw)
    assert sliced == want
    assert per_partition == want


@settings(max_examples=examples(80), **SETTINGS)
@given(data=st.data())
def test_floor_quick_and_walked_paths_give_the_reference_ids(data):
    ddf, limit, kw, want = draw_case(data, mode="floor")
    quick = ids_of(ddf, limit, kw)
    with mock.patch.object(floor_mode, "_quick_finish", lambda *a: False):
        walked = ids_of(ddf, limit, kw)
    assert quick == want
    assert walked == want


finite = st.floats(0, 50, allow_nan=False, allow_infinity=False)


# the plain-Python kernels divide by 2**-1074 as NumPy scalars: the quotient overflows to
# infinity, whose cell saturates at CELL_MAX (as the compiled ones do, silently)
@pytest.mark.filterwarnings("ignore:overflow encountered in scalar divide:RuntimeWarning")
@settings(max_examples=examples(150), **SETTINGS)
@given(w=st.lists(st.one_of(finite, st.sampled_from([0.1, 0.2, 1 / 3, 7.0])), min_size=1, max_size=80),
       s_in=st.one_of(st.just(0.0), finite), has_prev=st.booleans(),
       limit=st.sampled_from([0.3, 1.0, 2.5, 7.0, 1e-3, 0.5, 4.0, 2.0**-30, 2.0**-1000, 2.0**-1074, 2.0**1000]),
       base=st.integers(0, 9))
def test_floor_branch_free_kernel_equals_the_walk_bitwise(w, s_in, has_prev, limit, base):
    """Any float weights (rounding sums too): the same ids as ``floor_walk``, in both backends;
    powers of two (multiplied by their reciprocal, which overflows for 2**-1074) among the limits."""
    w = np.array(w)
    s_in = s_in if has_prev else 0.0
    cell = int(cpu.grid_cell(max(s_in - 1.0, 0.0), limit, 0)) if has_prev else 0
    walked = np.empty(len(w), np.int64)
    cpu.floor_walk(w, np.zeros(len(w), bool), s_in, cell, has_prev, limit, 0, False,
                   np.zeros(0, bool), walked, base)
    for be in (cpu, pure):
        quick = np.empty(len(w), np.int64)
        overflow, total = be.floor_ids_quick(w, s_in, np.int64(cell), has_prev, limit, 0, False, base, quick)
        assert overflow == -1 and total == be.floor_risky(w, len(w), np.inf, False, w[:0].copy(), w[:0].copy())[2]
        assert quick.tolist() == walked.tolist()


@pytest.mark.parametrize("limit", [0.1, 0.7])
def test_floor_kernel_divides_where_a_reciprocal_would_round_otherwise(limit):
    """Running sums of ``limit`` itself: at 0.6 (limit 0.1) and 9.8 (limit 0.7) the product with
    ``1 / limit`` floors to another cell than the quotient; only powers of two may multiply."""
    w = np.full(20, limit)
    walked, quick = np.empty(20, np.int64), np.empty(20, np.int64)
    cpu.floor_walk(w, np.zeros(20, bool), 0.0, 0, False, limit, 0, False, np.zeros(0, bool), walked, 0)
    s = np.cumsum(np.r_[0.0, w[:-1]])
    assert (np.floor(s / limit) != np.floor(s * (1 / limit))).any()  # the case is a real one
    for be in (cpu, pure):
        assert be.floor_ids_quick(w, 0.0, np.int64(0), False, limit, 0, False, 0, quick)[0] == -1
        assert quick.tolist() == walked.tolist()


@settings(max_examples=examples(150), **SETTINGS)
@given(data=st.data(), is_float=st.booleans(),
       limit=st.sampled_from([0.3, 1.0, 2.5, 7, 4096, 1e-3, 2.0**-1000, 2.0**1000, 1e19]))
def test_floor_scan_counts_skipped_cells_alike_in_python_and_numpy(data, is_float, limit):
    """The scan's per-partition count of the grid cells risky rows skip: Python numbers for a
    few rows, NumPy for many; the same count (float sums rounding, cells saturating, int64
    sums near overflow), and the same overflow error."""
    from dask_cumbatch.options import BatchOptions

    opts = BatchOptions.make("w", limit)
    if is_float:
        values = st.floats(0, 1e6, allow_nan=False) | st.sampled_from([0.1, 1 / 3, 2.0**-30, 1e300])
        base = data.draw(st.floats(0, 1e12, allow_nan=False) | st.sampled_from([0.0, 1e300]))
    else:
        values = st.integers(0, 10**6) | st.sampled_from([2**62, 2**63 - 1])
        base = data.draw(st.integers(0, 10**12) | st.sampled_from([0, 2**62]))
    w = data.draw(st.lists(values, min_size=1, max_size=40))
    dtype = np.float64 if is_float else np.int64
    p = np.cumsum(np.r_[0, w[:-1]]).astype(dtype) if is_float else np.array(np.cumsum([0, *w[:-1]], dtype=object), dtype=object)
    if not is_float:
        assume(max(p) + max(w) <= 2**63 - 1)  # a segment's sums fit int64 (the summary raised otherwise)
        p = p.astype(np.int64)
    w = np.array(w, dtype=dtype)

    def count(threshold):
        with mock.patch.object(floor_mode, "SCALAR_RISKY", threshold):
            try:
                return floor_mode._skipped_cells(p, w, base, BatchContext(opts, is_float))
            except OverflowError as exc:
                return type(exc)

    assert count(len(p)) == count(0)


def test_floor_scan_adds_a_risky_row_to_its_prefix_before_the_carried_sum():
    """``base + (p + w)``, not ``(base + p) + w``: here the two sums fall in different cells."""
    from dask_cumbatch.options import BatchOptions

    ctx, p, w = BatchContext(BatchOptions.make("w", 0.3), True), np.array([0.0, 3.5]), np.array([3.5, 4.7])
    assert floor_mode._cell(0.2 + (3.5 + 4.7), ctx) != floor_mode._cell((0.2 + 3.5) + 4.7, ctx)
    want = sum(max(floor_mode._cell(0.2 + (a + b), ctx) - floor_mode._cell(0.2 + a, ctx) - 1, 0)
               for a, b in zip(p, w))
    for threshold in (0, 2):
        with mock.patch.object(floor_mode, "SCALAR_RISKY", threshold):
            assert floor_mode._skipped_cells(p, w, 0.2, ctx) == want


@pytest.mark.parametrize("command", ["export", "status"])
def test_tiny_export_and_status_load_no_numba_nor_distributed(tmp_path, command):
    # distributed is imported by Dask's scheduler lookup unless the scheduler is configured as
    # a function (0.2-0.3 s of the process start)
    src, out = tmp_path / "in.parquet", tmp_path / "out"
    pd.DataFrame({"w": np.arange(10, dtype=np.int64) % 4}).to_parquet(src)
    code = (
        "import sys\n"
        "from dask_cumbatch.cli import main\n"
        f"rc = main(['export', {str(src)!r}, {str(out)!r}, '--weight', 'w', '--limit', '5'])\n"
        f"rc2 = main(['status', {str(out)!r}]) if {command!r} == 'status' else 0\n"
        "assert 'numba' not in sys.modules, 'numba loaded'\n"
        "assert 'distributed' not in sys.modules, 'distributed loaded'\n"
        "print(rc, rc2)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["0", "0"]
    assert len(list(out.glob("**/*.parquet"))) >= 2


@pytest.mark.parametrize("given, want", [(None, "threads"), ("threads", "threads"), ("sync", "sync"),
                                         ("processes", "processes")])
def test_local_schedulers_are_configured_as_dask_functions(given, want):
    import dask
    from dask.base import named_schedulers

    from dask_cumbatch.export import resolve_scheduler
    from dask_cumbatch.export.progress import threads_get

    with resolve_scheduler(given) as client:
        assert client is None
        # threads: Dask's threaded scheduler on a pool of its own (threads_get), so that a failed
        # export's running writers stop before it raises
        assert dask.config.get("scheduler") is (threads_get if want == "threads" else named_schedulers[want])
    assert dask.config.get("scheduler", None) is None


def test_no_scheduler_keeps_a_configured_one():
    import dask
    from dask.base import named_schedulers

    from dask_cumbatch.export import resolve_scheduler

    with dask.config.set(scheduler="sync"), resolve_scheduler(None) as client:
        assert client is None and dask.config.get("scheduler") is named_schedulers["sync"]

    def custom(dsk, keys, **kwargs):
        return dask.local.get_sync(dsk, keys, **kwargs)

    with dask.config.set(scheduler=custom), resolve_scheduler(None) as client:
        assert client is None and dask.config.get("scheduler") is custom


def test_an_export_keeps_no_start_flags(tmp_path):
    # an export promises O(partition) memory per worker: its summary pass keeps no flags,
    # while ids on the same frame do (and both give the same batches)
    import dask.dataframe as dd

    w = np.random.default_rng(3).integers(1, 500, 2 * kept.KEEP_MIN_ROWS)
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=2)
    kept.forget_all()
    result = ddf.cumbatch.to_files(str(tmp_path / "out"), "w", 5000)
    assert kept.kept_bytes() == 0
    ids = ddf.cumbatch.ids("w", 5000).compute()
    assert kept.kept_bytes() > 0
    assert result.batches == int(ids.max()) + 1
    kept.forget_all()


# NumPy scalars warn where a sum passes the largest float (the plain-Python kernels' run)
SUMS_PAST_FLOAT_MAX = pytest.mark.filterwarnings("ignore:overflow encountered in scalar add:RuntimeWarning")


@st.composite
def greedy_walk_case(draw):
    """Weights (int or float, rare huge ints for the overflow row), group changes, a carried state."""
    is_float = draw(st.booleans())
    n = draw(st.integers(0, 60))
    if is_float:
        # whole numbers tie with the limits; 1e308 sums past the largest float (to inf)
        w = np.array(draw(st.lists(st.one_of(finite, st.sampled_from([0.0, -0.0, 0.1, 1 / 3, 1e308]),
                                             st.integers(0, 9).map(float)),
                                   min_size=n, max_size=n)), dtype=np.float64)
    else:
        small = st.integers(0, 9)
        huge = st.integers(2**61, 2**62)
        w = np.array(draw(st.lists(st.one_of(small, small, small, huge), min_size=n, max_size=n)),
                      dtype=np.int64)
    newgrp = np.array(draw(st.lists(st.booleans().map(lambda b: b and draw(st.booleans())),
                                    min_size=n, max_size=n)), dtype=bool)
    rows = draw(st.integers(0, 5))
    if rows:
        tot = draw(finite) if is_float else draw(st.integers(0, 40))
        mx = draw(finite) if is_float else draw(st.integers(0, 9))
    else:
        tot = mx = 0
    limit = draw(st.sampled_from([0.5, 1.0, 7.0, 30.0, 1e300])) if is_float else draw(
        st.sampled_from([1, 7, 30, 2**62, 2**63 - 1]))
    record = draw(st.integers(0, n))
    dtype = np.float64 if is_float else np.int64
    return w, newgrp, rows, dtype(tot), dtype(mx), -rows, is_float, limit, record, draw(st.integers(0, 9))


def exact(v):
    """A value as compared bitwise: floats by their hex form (the sign of zero too)."""
    return float(v).hex() if isinstance(v, (float, np.floating)) else int(v)


@settings(max_examples=examples(300), **SETTINGS)
@SUMS_PAST_FLOAT_MAX
@given(case=greedy_walk_case(), write_ids=st.booleans())
def test_greedy_walk_equals_the_general_walk_bitwise(case, write_ids):
    """Plain greedy: the branch-free walk's starts, ids and end state are the general walk's."""
    w, newgrp, rows, tot, mx, start, is_float, limit, record, base = case
    n = len(w)
    want_out, want_ids = np.zeros(record, bool), np.zeros(n if write_ids else 0, np.int64)
    want = cpu.walk_batches(w, newgrp, w[:0], rows, tot, mx, start, True, False, is_float, limit, limit,
                            0, 0, np.zeros(0, bool), want_out, want_ids, base)
    for be in (cpu, pure):
        out, ids = np.zeros(record, bool), np.zeros(n if write_ids else 0, np.int64)
        got = be.greedy_walk(w, newgrp, rows, tot, mx, start, is_float, limit, out, ids, base)
        assert [exact(v) for v in got] == [exact(v) for v in want], (be.__name__, got, want)
        assert out.tolist() == want_out.tolist() and ids.tolist() == want_ids.tolist()


@settings(max_examples=examples(300), **SETTINGS)
@SUMS_PAST_FLOAT_MAX
@given(case=greedy_walk_case(), stretch=st.sampled_from([1, 3, 17]), no_groups=st.booleans())
def test_greedy_starts_equal_the_walk_bitwise(case, stretch, no_groups):
    """The summary's stretch walks: the starts and end state of the walk from an empty batch.

    ``stretch`` repeats the weights so the stretches are long enough to meet (or not) inside;
    ``no_groups`` clears the group flags, so that 16 rows or more take the branch-free path.
    """
    w, newgrp, _, _, _, _, is_float, limit, _, _ = case
    w, newgrp = np.tile(w, stretch), np.tile(newgrp, stretch) & (not no_groups)
    n = len(w)
    zero = w.dtype.type(0)
    want_out = np.zeros(n, bool)
    want = cpu.greedy_walk(w, newgrp, 0, zero, zero, 0, is_float, limit, want_out, np.zeros(0, np.int64), 0)
    # ``grouped`` True must read the flags; False is only passed when there are none
    for be, grouped in ((cpu, True), (pure, True), (cpu, bool(newgrp.any())), (pure, bool(newgrp.any()))):
        out = np.zeros(n, bool)
        got = be.greedy_starts(w, newgrp, grouped, is_float, limit, out)
        assert [exact(v) for v in got] == [exact(v) for v in want], (be.__name__, grouped, got, want)
        assert out.tolist() == want_out.tolist()


@settings(max_examples=examples(200), **SETTINGS)
@given(flags=st.lists(st.booleans(), max_size=80), start=st.integers(0, 80), acc=st.integers(-5, 5),
       offset=st.integers(0, 7))
def test_flags_to_ids_counts_the_flags_like_a_plain_loop(flags, start, acc, offset):
    """Eight flags read as one word, from any start and any byte offset of the array."""
    f = np.array([False] * offset + flags, dtype=bool)[offset:]  # a view at an odd address
    start = min(start, len(f))
    want = np.full(len(f), -7, np.int64)
    run = acc
    for i in range(start, len(f)):
        run += int(f[i])
        want[i] = run
    for be in (cpu, pure):
        got = np.full(len(f), -7, np.int64)
        be.flags_to_ids(f, start, acc, got)
        assert got.tolist() == want.tolist(), be.__name__
    with mock.patch.object(kernels, "LITTLE_ENDIAN", False):  # the plain loop of big-endian hosts
        got = np.full(len(f), -7, np.int64)
        pure.flags_to_ids(f, start, acc, got)
        assert got.tolist() == want.tolist()


@pytest.mark.parametrize("start", [0, 5, 4096 * 2 + 3])
def test_flags_to_ids_across_its_chunks(start):
    """Several of the kernel's 4,096-row chunks (and a ragged end): the flags' running count."""
    flags = np.random.default_rng(start).random(4096 * 3 + 13) < 0.3
    want = np.full(len(flags), -7, np.int64)
    want[start:] = 11 + np.cumsum(flags[start:])
    for be in (cpu, pure):
        got = np.full(len(flags), -7, np.int64)
        be.flags_to_ids(flags, start, 11, got)
        assert got.tolist() == want.tolist(), be.__name__


@settings(max_examples=examples(100), **SETTINGS)
@given(values=st.lists(st.sampled_from([0.0, -0.0, 1.5, -1.0, np.nan, -np.nan, np.inf, -np.inf, 1e308, 5e-324]),
                       max_size=20),
       repeat=st.sampled_from([1, 300, 5000]))
def test_count_invalid_counts_nan_inf_and_negatives(values, repeat):
    """Blocks of 4,096 rows are counted in int32: lengths on both sides of a block; the quick
    test of the bits (all valid: 0) and every other row of the column (a strided view)."""
    w = np.array(values * repeat, dtype=np.float64)

    def invalid(a):
        return sum(1 for x in a.tolist() if not (x >= 0 and x < float("inf")))

    assert cpu.count_invalid(w) == invalid(w)
    assert cpu.count_invalid(w[1::2]) == invalid(w[1::2])
    assert pure.count_invalid(w[:200]) == invalid(w[:200])
    for kernel, a in ((cpu.valid_bits_total, w), (cpu.valid_bits_total, w[1::2]), (pure.valid_bits_total, w[:200])):
        valid, total = kernel(a)
        bits = sum(int.from_bytes(np.float64(x).tobytes(), "little") for x in a.tolist()) % 2**64
        assert (bool(valid), int(total)) == (invalid(a) == 0 and not any(math.copysign(1, x) < 0 for x in a.tolist()), bits)
