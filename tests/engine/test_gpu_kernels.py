"""The GPU backend against the CPU kernels, argument for argument, bit for bit.

Runs on a CUDA device with CuPy when one is present; otherwise under numba-cuda's simulator
(NumPy arrays, the same kernels), which this module switches on when numba.cuda was not yet
imported. Tiles are shrunk to 32 threads x 1-4 rows so that batches span tiles, groups change
at tile edges and the hierarchy of segment summaries has several levels on small inputs.

Separate CI job (needs the ``gpusim`` extra)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -p no:cacheprovider -n 2 tests/engine/test_gpu_kernels.py
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st


def _device_present() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _start_simulator() -> str | None:
    """Import numba.cuda in simulator mode; the reason to skip when that is impossible."""
    if importlib.util.find_spec("numba_cuda") is None:
        return ("numba-cuda is not installed: .ci/run's simulator step runs the GPU tests "
                "(pip install -e '.[gpusim]'; NUMBA_ENABLE_CUDASIM=1 pytest tests/engine/test_gpu_*.py)")
    if "numba.cuda" in sys.modules:  # the implementation is chosen at that import, once per process;
        # numba's config flag is re-read from the environment later, so ask what was loaded
        # (as dask_cumbatch.engine.backends.gpu does)
        return None if "numba.cuda.simulator_init" in sys.modules else (
            "numba.cuda was imported without the simulator before this module, in this process (a "
            "plain `pytest` run with numba-cuda installed): run the GPU tests in a process of their "
            "own, as .ci/run does: NUMBA_ENABLE_CUDASIM=1 pytest tests/engine/test_gpu_kernels.py "
            "tests/engine/test_gpu_through_the_api.py")
    before = os.environ.get("NUMBA_ENABLE_CUDASIM")
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    try:
        if "numba" in sys.modules:  # numba read the environment when it was imported: again
            sys.modules["numba"].core.config.reload_config()
        import numba.cuda  # noqa: F401  (the simulator is chosen at this import)
    finally:
        if before is None:  # only this module's tests see the simulator (see `simulator`)
            del os.environ["NUMBA_ENABLE_CUDASIM"]
        else:
            os.environ["NUMBA_ENABLE_CUDASIM"] = before
    if "numba.cuda.simulator_init" not in sys.modules:
        return "numba.cuda did not load its simulator in this process: run NUMBA_ENABLE_CUDASIM=1 pytest tests/engine/test_gpu_*.py"
    return None


ON_DEVICE = _device_present()
_SKIP = None if ON_DEVICE else _start_simulator()
if _SKIP:
    pytest.skip(_SKIP, allow_module_level=True)

from dask_cumbatch.engine.backends import cpu  # noqa: E402
from dask_cumbatch.engine.backends import gpu  # noqa: E402

I64_MAX = np.iinfo(np.int64).max
needs_device = pytest.mark.skipif(not ON_DEVICE, reason="needs CuPy and a CUDA device")
examples = settings(max_examples=int(os.environ.get("GPU_SIM_EXAMPLES", "30")), deadline=None)


@pytest.fixture(autouse=True)
def simulator(monkeypatch):
    if not ON_DEVICE:
        monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")


@contextlib.contextmanager
def tiles(rows_per_thread=2, group=3, threads=32, sequential_below=0):
    """Shrink the GPU backend's tiles (restored afterwards)."""
    names = ("THREADS_PER_BLOCK", "ROWS_PER_THREAD", "GROUP", "SEQUENTIAL_BELOW")
    saved = [getattr(gpu, k) for k in names]
    for k, v in zip(names, (threads, rows_per_thread, group, sequential_below)):
        setattr(gpu, k, v)
    try:
        yield
    finally:
        for k, v in zip(names, saved):
            setattr(gpu, k, v)


def host(a):
    return gpu.to_numpy(a)


def dev(a):
    """What the engine hands the backend: a backend array."""
    return gpu.asarray(a)


# --------------------------------------------------------------------------- strategies
tile_shape = st.tuples(st.integers(1, 4), st.integers(2, 4))  # rows per thread, group
small_int = st.integers(0, 9)
huge_int = st.integers(I64_MAX // 4, I64_MAX // 2)


@st.composite
def weights(draw, max_rows=300):
    """(w, is_float): small ints, rare huge ints (overflow), or floats (integer-valued or not)."""
    n = draw(st.one_of(st.integers(1, 40), st.integers(max_rows // 2, max_rows)))  # many tiles
    kind = draw(st.sampled_from(["int", "int_huge", "float", "float_int", "constant"]))
    if kind == "constant":
        w = np.full(n, draw(st.integers(1, 5)), dtype=np.int64)
        return (w.astype(np.float64), True) if draw(st.booleans()) else (w, False)
    if kind == "int":
        return np.array(draw(st.lists(small_int, min_size=n, max_size=n)), dtype=np.int64), False
    if kind == "int_huge":
        vals = draw(st.lists(st.one_of(small_int, huge_int), min_size=n, max_size=n))
        return np.array(vals, dtype=np.int64), False
    if kind == "float_int":
        return np.array(draw(st.lists(small_int, min_size=n, max_size=n)), dtype=np.float64), True
    vals = draw(st.lists(st.floats(0, 9, allow_nan=False), min_size=n, max_size=n))
    return np.array(vals, dtype=np.float64), True


@st.composite
def group_changes(draw, n, tile):
    """Random group changes, or one at every tile edge, or none."""
    kind = draw(st.sampled_from(["none", "random", "tile_edges"]))
    g = np.zeros(n, dtype=bool)
    if kind == "random":
        g[:] = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    elif kind == "tile_edges":
        g[::tile] = True
    g[0] = draw(st.booleans())
    return g


def limits(draw, is_float, w):
    lim = draw(st.sampled_from([0.5, 1, 3, 7.5, 20, 1e6, 2.0**62, 2.0**70]))
    if is_float:
        return float(lim), float(lim)
    big = float(I64_MAX)
    if lim >= big:
        return I64_MAX, I64_MAX
    return int(np.floor(lim)), int(np.ceil(lim))


@st.composite
def walk_case(draw):
    rpt, group = draw(tile_shape)
    w, is_float = draw(weights())
    n = len(w)
    dt = w.dtype.type
    mode_greedy = draw(st.booleans())
    multiple = draw(st.sampled_from([0, 0, 0, 2, 3])) if mode_greedy else 0
    prev = draw(st.lists(st.sampled_from([0, 1, 2, 5]), max_size=6))
    tot, mx = dt(0), dt(0)
    for x in prev:
        tot += dt(x)
        mx = max(mx, dt(x))
    keep = min(len(prev), max(multiple - 1, 0))
    tail = np.array(prev[len(prev) - keep:], dtype=w.dtype)
    gt, ge = limits(draw, is_float, w)
    spec = np.zeros(0, dtype=bool)
    if draw(st.integers(0, 4)) == 0:  # a fix-up against a speculative pass, as the scan does
        spec = np.zeros(n, dtype=bool)
        cpu.walk_batches(w, np.zeros(n, bool), w[:0], 0, dt(0), dt(0), 0, mode_greedy, False,
                         is_float, gt, ge, 0, 0, np.zeros(0, bool), spec, np.zeros(0, np.int64), 0)
    return dict(
        tiles=(rpt, group), w=w, newgrp=draw(group_changes(n, 32 * rpt)), tail=tail,
        rows=len(prev), tot=tot, mx=mx, start=-len(prev), greedy=mode_greedy,
        padded=draw(st.booleans()), is_float=is_float, lim_gt=dt(gt), lim_ge=dt(ge),
        max_rows=draw(st.sampled_from([0, 0, 1, 2, 5])), multiple=multiple, spec=spec,
        record=draw(st.sampled_from([0, n // 2, n])), write_ids=draw(st.booleans()),
        base=draw(st.integers(0, 5)),
    )


def run_walk(mod, c, as_device):
    n = len(c["w"])
    out = np.zeros(c["record"], dtype=bool)
    ids = np.zeros(n if c["write_ids"] else 0, dtype=np.int64)
    conv = dev if as_device else (lambda a: a)
    out_d, ids_d = conv(out), conv(ids)
    res = mod.walk_batches(
        conv(c["w"]), conv(c["newgrp"]), c["tail"], c["rows"], c["tot"], c["mx"], c["start"],
        c["greedy"], c["padded"], c["is_float"], c["lim_gt"], c["lim_ge"], c["max_rows"],
        c["multiple"], conv(c["spec"]), out_d, ids_d, c["base"],
    )
    return tuple(res), host(out_d).tolist(), host(ids_d).tolist()


def same_walk(c):
    expected = run_walk(cpu, c, False)
    with tiles(*c["tiles"]):
        got = run_walk(gpu, c, True)
    assert got == expected
    return got


# --------------------------------------------------------------------------- walk_batches
@examples
@given(walk_case())
def test_walk_batches_matches_cpu(c):
    same_walk(c)


@pytest.mark.parametrize("rows_per_thread", [1, 3])
@pytest.mark.parametrize("carried", [0, 1, 2])
def test_walk_constant_weights_paths_never_meet(rows_per_thread, carried):
    # weight 1, limit 3: a carried batch of 1 or 2 rows shifts every later start, forever.
    n = 32 * rows_per_thread * 5 + 7
    w = np.ones(n, dtype=np.int64)
    c = dict(tiles=(rows_per_thread, 2), w=w, newgrp=np.zeros(n, bool), tail=w[:0], rows=carried,
             tot=np.int64(carried), mx=np.int64(min(carried, 1)), start=-carried, greedy=True,
             padded=False, is_float=False, lim_gt=np.int64(3), lim_ge=np.int64(3), max_rows=0,
             multiple=0, spec=np.zeros(0, bool), record=n, write_ids=True, base=0)
    (n_starts, *_), flags, ids = same_walk(c)
    assert n_starts == (n + carried + 2) // 3 - (1 if carried else 0)
    assert flags == [(i + carried) % 3 == 0 for i in range(n)]


def test_walk_group_change_at_every_tile_edge_float():
    rng = np.random.default_rng(3)
    n = 32 * 2 * 6
    w = rng.random(n) * 3
    g = np.zeros(n, bool)
    g[::64] = True
    c = dict(tiles=(2, 2), w=w, newgrp=g, tail=w[:0], rows=2, tot=1.25, mx=1.0, start=-2,
             greedy=False, padded=False, is_float=True, lim_gt=4.0, lim_ge=4.0, max_rows=3,
             multiple=0, spec=np.zeros(0, bool), record=n, write_ids=True, base=7)
    _, flags, _ = same_walk(c)
    assert all(flags[i] for i in range(64, n, 64))


@pytest.mark.parametrize("is_float", [False, True])
def test_walk_one_row(is_float):
    w = np.array([5.0 if is_float else 5])
    dt = w.dtype.type
    c = dict(tiles=(1, 2), w=w, newgrp=np.zeros(1, bool), tail=w[:0], rows=1, tot=dt(2),
             mx=dt(2), start=-1, greedy=True, padded=False, is_float=is_float, lim_gt=dt(6),
             lim_ge=dt(6), max_rows=0, multiple=0, spec=np.zeros(0, bool), record=1,
             write_ids=True, base=4)
    res, flags, ids = same_walk(c)
    assert flags == [True] and ids == [4] and res[0] == 1


def test_walk_int64_overflow_reports_the_cpu_row():
    n = 200
    w = np.full(n, 3, dtype=np.int64)
    w[150] = I64_MAX // 2
    w[151] = I64_MAX // 2 + 10
    c = dict(tiles=(2, 2), w=w, newgrp=np.zeros(n, bool), tail=w[:0], rows=0, tot=np.int64(0),
             mx=np.int64(0), start=0, greedy=False, padded=False, is_float=False,
             lim_gt=np.int64(I64_MAX), lim_ge=np.int64(I64_MAX), max_rows=0, multiple=0,
             spec=np.zeros(0, bool), record=n, write_ids=True, base=0)
    res, _, _ = same_walk(c)
    assert res[7] == 151


# --------------------------------------------------------------------------- floor_walk
@st.composite
def floor_case(draw):
    rpt, group = draw(tile_shape)
    w, is_float = draw(weights())
    n = len(w)
    lim = draw(st.sampled_from([0.5, 1, 3, 7.5, 20, 2.0**40]))
    exact = not is_float and float(lim).is_integer()
    s_in = draw(st.sampled_from([0, 4, 10**6, I64_MAX // 2, I64_MAX - 3]))
    if is_float:
        s_in = float(s_in) + draw(st.sampled_from([0.0, 0.3]))
    return dict(
        tiles=(rpt, group), w=w, newgrp=draw(group_changes(n, 32 * rpt)),
        s_in=np.float64(s_in) if is_float else np.int64(s_in),
        cell_prev=draw(st.integers(0, 3)), has_prev=draw(st.booleans()), lim_f=float(lim),
        lim_i=int(lim) if exact else 0, is_int=not is_float, record=draw(st.booleans()),
        write_ids=draw(st.booleans()), base=draw(st.integers(0, 5)),
    )


def run_floor(mod, c, as_device):
    n = len(c["w"])
    conv = dev if as_device else (lambda a: a)
    out = conv(np.zeros(n if c["record"] else 0, dtype=bool))
    ids = conv(np.zeros(n if c["write_ids"] else 0, dtype=np.int64))
    res = mod.floor_walk(conv(c["w"]), conv(c["newgrp"]), c["s_in"], c["cell_prev"], c["has_prev"],
                         c["lim_f"], c["lim_i"], c["is_int"], out, ids, c["base"])
    return tuple(res), host(out).tolist(), host(ids).tolist()


@examples
@given(floor_case())
def test_floor_walk_matches_cpu(c):
    expected = run_floor(cpu, c, False)
    with tiles(*c["tiles"]):
        got = run_floor(gpu, c, True)
    assert got == expected


def test_floor_walk_non_integer_floats_walk_in_row_order():
    # 0.1 steps: the parallel scan could not be exact, so the one-thread walk must run.
    w = np.full(150, 0.1)
    c = dict(tiles=(1, 2), w=w, newgrp=np.zeros(150, bool), s_in=np.float64(0.2), cell_prev=0,
             has_prev=True, lim_f=0.3, lim_i=0, is_int=False, record=True, write_ids=True, base=0)
    expected = run_floor(cpu, c, False)
    with tiles(1, 2):
        assert run_floor(gpu, c, True) == expected
    assert expected[0][0] > 40


# --------------------------------------------------------------------------- scans and the rest
@given(st.lists(st.one_of(st.integers(0, 5), huge_int), min_size=1, max_size=3000),
       st.sampled_from(["sum", "max"]))
@settings(max_examples=15, deadline=None)
def test_inclusive_scan_over_many_tile_levels(values, op):
    x = np.array(values, dtype=np.int64)
    with tiles(1, 2):  # 32-element tiles: 3000 elements take three levels of tile totals
        got = host(gpu.inclusive_scan(dev(x), op)).tolist()
    if op == "max":
        expected = np.maximum.accumulate(x).tolist()
    else:
        expected, acc = [], 0
        for v in values:
            acc = min(acc + v, I64_MAX)
            expected.append(acc)
    assert got == expected


@examples
@given(st.lists(st.booleans(), max_size=200), st.integers(0, 7), st.integers(1, 6), tile_shape)
def test_cap_walk_matches_cpu(flags, rows, max_rows, shape):
    f = np.array(flags, dtype=bool)
    expected_out = np.zeros(len(f), bool)
    expected = cpu.cap_walk(f, rows, max_rows, expected_out)
    out = dev(np.zeros(len(f), bool))
    with tiles(*shape):
        got = gpu.cap_walk(dev(f), rows, max_rows, out)
    assert tuple(got) == tuple(expected)
    assert host(out).tolist() == expected_out.tolist()


@examples
@given(st.lists(st.sampled_from([0.0, 1.5, -1.0, np.nan, np.inf, -np.inf, 7.0]), max_size=100))
def test_count_invalid_matches_cpu(values):
    w = np.array(values, dtype=np.float64)
    assert gpu.count_invalid(dev(w)) == cpu.count_invalid(w)


@examples
@given(st.lists(st.booleans(), max_size=300), st.integers(0, 9), tile_shape)
def test_starts_to_ids_matches_cpu(starts, base, shape):
    s = np.array(starts, dtype=bool)
    with tiles(*shape):
        got = host(gpu.starts_to_ids(dev(s), base))
    assert got.dtype == np.int64 and got.tolist() == cpu.starts_to_ids(s, base).tolist()


@examples
@given(weights(max_rows=120), st.lists(st.booleans(), min_size=120, max_size=120))
def test_batch_stats_matches_cpu(wc, starts):
    w, _ = wc
    ids = np.cumsum(np.array(starts[:len(w)], dtype=np.int64)) + 3
    positions = np.arange(len(w), dtype=np.int64)[::-1].copy()
    expected = cpu.batch_stats(ids, w, positions)
    got = gpu.batch_stats(dev(ids), dev(w), dev(positions))
    for e, g in zip(expected, got):
        g = host(g)
        assert g.dtype == e.dtype and g.tolist() == e.tolist()


@examples
@given(weights(max_rows=120), st.integers(0, 120), st.sampled_from([0.5, 2.0, 4.0]))
def test_floor_risky_matches_cpu(wc, seg_len, threshold):
    w, is_float = wc
    seg_len = min(seg_len, len(w))
    th = w.dtype.type(threshold)
    outs = [np.zeros(seg_len, w.dtype) for _ in range(4)]
    expected = cpu.floor_risky(w, seg_len, th, not is_float, outs[0], outs[1])
    p_out, w_out = dev(outs[2]), dev(outs[3])
    with tiles(sequential_below=0):  # the device scan where it is exact, else the one-thread walk
        got = gpu.floor_risky(dev(w), seg_len, th, not is_float, p_out, w_out)
    assert tuple(got) == tuple(expected)
    assert host(p_out).tolist() == outs[0].tolist() and host(w_out).tolist() == outs[1].tolist()


@given(st.one_of(st.integers(0, 2**62), st.floats(0, 1e30)), st.sampled_from([0.3, 1.0, 3.0, 1e-300]))
@settings(max_examples=50, deadline=None)
def test_grid_cell_matches_cpu(s, lim):
    lim_i = int(lim) if isinstance(s, int) and float(lim).is_integer() else 0
    s = np.int64(s) if isinstance(s, int) else np.float64(s)
    assert gpu.grid_cell(s, lim, lim_i) == cpu.grid_cell(s, lim, lim_i)


def test_constants_and_chain_table():
    assert (gpu.I64_MAX, gpu.NO_POSITION, gpu.CELL_MAX) == (cpu.I64_MAX, cpu.NO_POSITION, cpu.CELL_MAX)
    # auto stays on the CPU: measured slower end to end on an H200 at every size (docs/gpu.md)
    assert gpu.chain_table is None and gpu.AUTO_MIN_ROWS is None


@pytest.mark.skipif(ON_DEVICE, reason="a device is present")
def test_without_simulator_or_device_the_error_names_the_extra(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM")
    with pytest.raises(RuntimeError, match=r"pip install 'dask-cumbatch\[gpu\]'") as err:
        gpu.check_available()
    assert "\n" not in str(err.value)


@pytest.mark.skipif(importlib.util.find_spec("dask_cumbatch.engine.backends.cpu") is None,
                    reason="the engine's backend seam (engine/backends/__init__.py) is not merged yet")
@pytest.mark.parametrize("mode", ["greedy", "fill", "floor"])
@pytest.mark.parametrize("dtype", ["int64", "float64"])
def test_public_api_device_gpu_equals_cpu(mode, dtype):
    import dask.dataframe as dd
    rng = np.random.default_rng(11)
    w = rng.integers(0, 9, 300) if dtype == "int64" else rng.random(300) * 9
    pdf = pd.DataFrame({"w": w, "k": rng.integers(0, 3, 300) // 2})
    ddf = dd.from_pandas(pdf, npartitions=3)
    kw = dict(mode=mode, by="k", max_rows=7, cost="padded" if mode == "fill" else "sum")
    expected = ddf.cumbatch.ids("w", 20, device="cpu", **kw).compute()
    with tiles(1, 2):  # the tiled walk and the scans, not the one-thread walk
        got = ddf.cumbatch.ids("w", 20, device="gpu", **kw).compute()
    assert got.tolist() == expected.tolist()


# --------------------------------------------------------------------------- compiled for a device
PTX_CHECK = r"""
import sys
import numba.cuda.dispatcher as dispatcher
from numba import cuda, types as T
# No driver here: device functions are compiled for an sm_90 device instead of the current one.
dispatcher.get_current_device = lambda: type("D", (), {"compute_capability": (9, 0)})()


def probe(a):
    a[0] = 1


try:
    cuda.compile_ptx(probe, (T.Array(T.int64, 1, "C"),), cc=(9, 0))
except Exception as e:  # no CUDA toolkit libraries (libnvvm, libnvrtc) in this environment
    print(type(e).__name__, str(e)[:200]); sys.exit(77)
from dask_cumbatch.engine.backends import cuda_kernels as ck
b, i8, f8 = T.boolean, T.int64, T.float64
A = lambda t, nd=1: T.Array(t, nd, "C")
kernels = []
for wt in (i8, f8):
    kernels += [
        (ck.walk_sequential_kernel, (A(wt), A(b), A(wt), A(i8), A(wt), b, b, b, wt, wt, i8, i8,
                                     A(b), A(b), A(i8), i8, A(i8), A(wt))),
        (ck.make_walk_tiles(256, 16, wt), (A(wt), A(b), A(b), b, b, b, wt, wt, i8, A(i8, 2),
                                           A(wt, 2), A(i8))),
        (ck.combine_segments, (A(wt), A(b), A(b), i8, i8, b, b, b, wt, wt, i8, A(i8, 2), A(wt, 2),
                               A(i8, 2), A(wt, 2), A(i8))),
        (ck.walk_top, (A(wt), A(b), A(b), A(i8), A(wt), A(i8, 2), A(wt, 2), b, b, b, wt, wt, i8,
                       A(i8), A(wt), A(i8))),
        (ck.floor_cells, (A(wt), A(i8), A(i8), f8, i8, b, wt, b, A(i8))),
        (ck.floor_sequential_kernel, (A(wt), A(b), wt, i8, b, f8, i8, b, A(b), A(i8), i8, A(i8), A(wt))),
        (ck.floor_risky_kernel, (A(wt), i8, wt, b, A(wt), A(wt), A(i8), A(wt))),
        (ck.batch_stats_kernel, (A(wt), A(i8), A(i8), i8, A(i8), A(wt), A(wt), A(i8), A(i8))),
    ]
for op in (ck.sat_add, ck.max_of):
    tile_scan, add_prefix = ck.make_scan(256, 16, op)
    kernels += [(tile_scan, (A(i8), A(i8), A(i8))), (add_prefix, (A(i8), A(i8)))]
kernels += [(ck.floor_starts, (A(b), A(i8), i8, b, A(i8))), (ck.cap_starts, (A(b), A(i8), i8, i8, A(b)))]
for kernel, sig in kernels:
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
    assert "fma.rn" not in ptx, f"{kernel.py_func.__name__}: a fused multiply-add"
print("compiled", len(kernels))
"""


@pytest.mark.skipif(ON_DEVICE, reason="a device compiles the kernels in the other tests")
def test_every_kernel_compiles_for_a_device_without_contraction():
    """numba-cuda types and compiles every kernel to sm_90 PTX (the simulator only runs Python).

    Needs the CUDA compiler libraries (``pip install "numba-cuda[cu12]"``), not a device; skipped
    without them.
    """
    import subprocess
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", PTX_CHECK], env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode == 77:
        pytest.skip(f"no CUDA compiler libraries: pip install 'numba-cuda[cu12]' ({proc.stdout.strip()[:120]})")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiled 22" in proc.stdout


# --------------------------------------------------------------------------- real device only
@pytest.mark.gpu
@needs_device
def test_cupy_arrays_in_place():
    import cupy
    rng = np.random.default_rng(5)
    w = rng.random(1 << 20) * 4
    out, ids = np.zeros(len(w), bool), np.zeros(len(w), np.int64)
    expected = cpu.walk_batches(w, np.zeros(len(w), bool), w[:0], 0, 0.0, 0.0, 0, True, False,
                                True, 10.0, 10.0, 0, 0, np.zeros(0, bool), out, ids, 0)
    out_d, ids_d = cupy.zeros(len(w), bool), cupy.zeros(len(w), cupy.int64)
    got = gpu.walk_batches(cupy.asarray(w), cupy.zeros(len(w), bool), w[:0], 0, 0.0, 0.0, 0, True,
                           False, True, 10.0, 10.0, 0, 0, cupy.zeros(0, bool), out_d, ids_d, 0)
    assert tuple(got) == tuple(expected)
    assert bool((out_d == cupy.asarray(out)).all()) and bool((ids_d == cupy.asarray(ids)).all())


@pytest.mark.gpu
@needs_device
def test_ids_past_2_pow_31_rows():
    """CuPy's cumsum has been wrong past 2**31 elements; the backend's own scan is not (~55 GB)."""
    import cupy
    n = 2**31 + 1000
    starts = cupy.zeros(n, dtype=bool)
    starts[::1000] = True
    ids = gpu.starts_to_ids(starts, 0)  # ids = base - 1 + cumsum(starts): 0 from row 0
    del starts
    for i in (0, 999, 1000, 2**31 - 1, 2**31, 2**31 + 5, n - 1):
        assert int(ids[i]) == i // 1000
    del ids
    cupy.get_default_memory_pool().free_all_blocks()


@pytest.mark.gpu
@needs_device
def test_floor_walk_past_2_pow_31_rows():
    """One partition of more than 2**31 int64 weights in floor mode (about 100 GB of device memory)."""
    import cupy
    n = 2**31 + 1000
    w = cupy.ones(n, dtype=cupy.int64)
    ids = cupy.empty(n, dtype=cupy.int64)
    res = gpu.floor_walk(w, cupy.zeros(n, bool), np.int64(0), 0, False, 1000.0, 1000, True,
                         cupy.zeros(0, bool), ids, 0)
    assert res == ((n + 999) // 1000, n, (n - 1) // 1000, -1)
    for i in (0, 2**31 - 1, 2**31 + 5, n - 1):
        assert int(ids[i]) == i // 1000
    del w, ids
    cupy.get_default_memory_pool().free_all_blocks()
