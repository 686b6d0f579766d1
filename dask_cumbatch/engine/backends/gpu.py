"""GPU backend: the CPU kernels' names and contracts, run by numba-cuda kernels.

On a CUDA device the arrays are CuPy arrays; with ``NUMBA_ENABLE_CUDASIM=1`` (numba-cuda's
simulator, for tests and laptops) they are NumPy arrays and the same kernels run on the CPU,
slowly. numba-cuda and CuPy are imported on first use, never when this module is imported.

Every function takes the arguments of its CPU namesake and returns what it returns, bit for
bit; arrays passed in may be host (NumPy) or backend arrays, and output arrays (``out``,
``ids``, ``p_out``...) are written as the CPU kernels write them. Arrays returned
(:func:`starts_to_ids`, :func:`batch_stats`) are backend arrays: use :func:`to_numpy`.

The tile settings are module attributes so tests can shrink them (kernels are rebuilt for
each setting): a block of ``THREADS_PER_BLOCK`` threads walks a tile of ``THREADS_PER_BLOCK *
ROWS_PER_THREAD`` rows staged in shared memory; ``GROUP`` segments are joined per thread at
each level of the hierarchy; inputs under ``SEQUENTIAL_BELOW`` rows take the one-thread walk.

Examples marked ``+SKIP`` need the simulator or a device; ``tests/engine/test_gpu_kernels.py`` runs
them there.

>>> import os
>>> from dask_cumbatch.engine.backends import gpu
>>> gpu.I64_MAX == 2**63 - 1 and gpu.chain_table is None
True
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading

import numpy as np

from ...options import keyword
from . import kernels  # the CPU kernels' plain Python source (no numba there)

I64_MAX = kernels.I64_MAX
NO_POSITION = kernels.NO_POSITION
CELL_MAX = kernels.CELL_MAX

THREADS_PER_BLOCK = 256
ROWS_PER_THREAD = 16
GROUP = 32
SEQUENTIAL_BELOW = 1 << 14
# The partition size from which device="auto" picks the GPU; None: auto never does. Measured
# on an NVIDIA H200 against its 16-core host (docs/gpu.md, benchmarks/bench_gpu.py --crossover):
# end to end on pandas partitions of 2**16 to 2**24 rows the GPU backend was slower at every
# size (docs/performance.md), so auto stays on the CPU.
AUTO_MIN_ROWS = None
FLOAT_EXACT_TOTAL = 2.0**53  # integer-valued float sums below this are exact in any order

# The optional kernels of the backend contract this backend does not offer (each reason is in
# dask_cumbatch.engine.backends.GPU_LACKS): the engine takes its general path, same results.
chain_table = None  # no chain table on the GPU: the engine uses its exact fallback walk
greedy_walk = greedy_starts = greedy_chain = greedy_sums_ids = greedy_sums_end = greedy_sums_starts = None
valid_bits_total = flags_to_ids = floor_ids_quick = floor_summary_float = floor_summary_int = None
floor_exact_walk = floor_exact_ids = floor_exact_risky = floor_exact_sum = floats_integral = None

_INSTALL_HINT = "pip install 'dask-cumbatch[gpu]'"
_SIMULATOR_HINT = ("to try the GPU path without a GPU, pip install 'dask-cumbatch[gpusim]' and set "
                   "NUMBA_ENABLE_CUDASIM=1 before Python starts (numba-cuda's simulator: slow)")
_GPU = keyword("device", "gpu")
# The simulator is not thread safe (a launch swaps a module-wide fake `cuda`, shared memory
# included): under it, one backend call runs at a time (Dask's threads call concurrently).
_SIM_LOCK = threading.RLock()


def _serialized(fn):
    """Run ``fn`` under the simulator lock when the simulator is on."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _SIM_LOCK if simulated() else contextlib.nullcontext():
            return fn(*args, **kwargs)
    return wrapper


# --------------------------------------------------------------------------- availability
def simulated() -> bool:
    """Whether numba-cuda's simulator is requested (``NUMBA_ENABLE_CUDASIM=1``).

    >>> isinstance(simulated(), bool)
    True
    """
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


def check_available() -> None:
    """Raise ``RuntimeError`` (one line) unless CuPy and a device, or the simulator, are usable.

    >>> try:
    ...     check_available()
    ... except RuntimeError as e:
    ...     assert "dask-cumbatch[gpu]" in str(e)
    """
    if simulated():
        return _check_simulator()
    try:
        import cupy
        from numba import cuda
    except ImportError as e:
        raise RuntimeError(f"{_GPU} needs CuPy and numba-cuda ({e.name} is missing): "
                           f"{_INSTALL_HINT} on a machine with an NVIDIA GPU; {_SIMULATOR_HINT}") from None
    try:
        found = cupy.cuda.runtime.getDeviceCount() > 0 and cuda.is_available()
    except Exception:  # no driver
        found = False
    if not found:
        raise RuntimeError(f"{_GPU} found no CUDA device: {_INSTALL_HINT} on a machine "
                           f"with an NVIDIA GPU; {_SIMULATOR_HINT}")


def _check_simulator() -> None:
    # numba.cuda picks the simulator or the driver once, when it is imported; numba re-reads the
    # environment into its config flag later (any compilation may), so the flag can disagree
    # with the implementation loaded: ask which one was loaded instead
    try:  # numba-cuda's package (numba's own older numba.cuda has no core.config)
        from numba.cuda.core import config  # noqa: F401  (with NUMBA_ENABLE_CUDASIM=1: the simulator, if first)
    except ImportError:
        raise RuntimeError(f"NUMBA_ENABLE_CUDASIM=1 needs numba-cuda: {_INSTALL_HINT}") from None
    if "numba.cuda.simulator_init" not in sys.modules:
        raise RuntimeError("NUMBA_ENABLE_CUDASIM=1 was set after numba.cuda was imported: set it "
                           "before Python starts")


@functools.cache
def _xp():
    """The array module: NumPy under the simulator, CuPy on a device."""
    check_available()
    if simulated():
        return np
    import cupy
    return cupy


@functools.cache
def _k():
    """The kernel module (imports numba.cuda)."""
    _xp()
    from . import cuda_kernels
    return cuda_kernels


def asarray(a):
    """A host array (or backend array) as a backend array.

    >>> type(asarray(np.arange(3))).__module__.split(".")[0] in ("numpy", "cupy")  # doctest: +SKIP
    True
    """
    a = _xp().asarray(a)
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        a = a.copy()  # the simulator copies every kernel argument back to the host after a launch
    return a


def to_numpy(a) -> np.ndarray:
    """A backend array (or host array) as a NumPy array.

    >>> to_numpy(asarray(np.arange(3))).tolist()  # doctest: +SKIP
    [0, 1, 2]
    """
    if isinstance(a, np.ndarray):
        return a
    return _xp().asnumpy(a)


def _launch(kernel, n, *args):
    """Launch an elementwise kernel over ``n`` items."""
    threads = max(1, min(THREADS_PER_BLOCK, n))
    kernel[(n + threads - 1) // threads, threads](*args)


def _one(kernel, *args):
    kernel[1, 1](*args)


class _Out:
    """A backend view of an output array, copied back into a host array on ``done``."""

    def __init__(self, a):
        self.host = a
        self.dev = asarray(a)

    def done(self):
        if self.dev is not self.host and isinstance(self.host, np.ndarray):
            self.host[...] = to_numpy(self.dev)


def _py(x):
    return x.item() if hasattr(x, "item") else x


# --------------------------------------------------------------------------- scans
@functools.cache
def _scan_kernels(op_name, threads, rows_per_thread):
    k = _k()
    return k.make_scan(threads, rows_per_thread, k.sat_add if op_name == "sum" else k.max_of)


@_serialized
def inclusive_scan(x, op="sum"):
    """Inclusive int64 scan of ``x`` on the device: ``"sum"`` (saturating at I64_MAX) or ``"max"``.

    Tiles of ``THREADS_PER_BLOCK * ROWS_PER_THREAD`` rows are scanned in shared memory; the
    tile totals are scanned the same way (recursively) and added back. Indices are 64-bit,
    so any length works (CuPy's ``cumsum`` has been wrong past 2**31 elements).

    >>> to_numpy(inclusive_scan(np.array([1, 0, 2]))).tolist()  # doctest: +SKIP
    [1, 1, 3]
    >>> to_numpy(inclusive_scan(np.array([2, -1, 5, 3]), "max")).tolist()  # doctest: +SKIP
    [2, 2, 5, 5]
    """
    xp = _xp()
    x = xp.asarray(x, dtype=np.int64)
    n = x.shape[0]
    out = xp.empty(n, dtype=np.int64)
    if n == 0:
        return out
    tile = THREADS_PER_BLOCK * ROWS_PER_THREAD
    blocks = (n + tile - 1) // tile
    totals = xp.empty(blocks, dtype=np.int64)
    tile_scan, add_prefix = _scan_kernels(op, THREADS_PER_BLOCK, ROWS_PER_THREAD)
    tile_scan[blocks, THREADS_PER_BLOCK](x, out, totals)
    if blocks > 1:
        _launch(add_prefix, n, out, inclusive_scan(totals, op))
    return out


# --------------------------------------------------------------------------- walk_batches
@_serialized
def walk_batches(w, newgrp, tail, rows, tot, mx, start, greedy, padded, is_float,
                 lim_gt, lim_ge, max_rows, multiple, spec, out, ids, base):
    """The greedy/fill walk of :func:`dask_cumbatch.engine.backends.cpu.walk_batches`, on the device.

    Without ``spec`` and ``multiple``, on inputs of ``SEQUENTIAL_BELOW`` rows or more, the
    tiled speculative pass and the hierarchy of segment summaries run; otherwise (and when an
    int64 sum overflows anywhere, to report the CPU's exact tuple) one device thread walks.

    >>> w = np.array([3.0, 3.0, 3.0, 3.0]); out = np.zeros(4, np.bool_)
    >>> ids = np.zeros(4, np.int64)
    >>> r = walk_batches(w, np.zeros(4, np.bool_), w[:0], 0, 0.0, 0.0, 0, True, False, True,
    ...                  6.0, 6.0, 0, 0, np.zeros(0, np.bool_), out, ids, 0)  # doctest: +SKIP
    >>> int(r[0]), out.tolist(), ids.tolist()  # doctest: +SKIP
    (2, [True, False, True, False], [0, 0, 1, 1])
    """
    w, newgrp, spec = asarray(w), asarray(newgrp), asarray(spec)
    n = w.shape[0]
    rule = (bool(greedy), bool(padded), bool(is_float), lim_gt, lim_ge, int(max_rows))
    state = (int(rows), tot, mx, int(start))
    if spec.shape[0] == 0 and int(multiple) <= 1 and n >= max(SEQUENTIAL_BELOW, 1):
        res = _walk_tiled(w, newgrp, state, rule, out, ids, base)
        if res is not None:
            return res
    return _walk_one_thread(w, newgrp, tail, state, rule, int(multiple), spec, out, ids, base)


def _state_arrays(w, state):
    rows, tot, mx, start = state
    xp = _xp()
    return (xp.asarray(np.array([rows, start], dtype=np.int64)),
            xp.asarray(np.array([tot, mx], dtype=w.dtype)))


def _walk_one_thread(w, newgrp, tail, state, rule, multiple, spec, out, ids, base):
    state_i, state_w = _state_arrays(w, state)
    res_i = asarray(np.zeros(6, dtype=np.int64))
    res_w = asarray(np.zeros(2, dtype=w.dtype))
    o, d = _Out(out), _Out(ids)
    _one(_k().walk_sequential_kernel, w, newgrp, asarray(tail).astype(w.dtype, copy=False),
         state_i, state_w, *rule, multiple, spec, o.dev, d.dev, int(base), res_i, res_w)
    o.done()
    d.done()
    r, v = to_numpy(res_i).tolist(), to_numpy(res_w).tolist()
    return r[0], r[1], r[2], v[0], v[1], r[3], r[4], r[5]


@functools.cache
def _tile_kernel(threads, rows_per_thread, dtype):
    from numba import from_dtype
    return _k().make_walk_tiles(threads, rows_per_thread, from_dtype(np.dtype(dtype)))


def _walk_tiled(w, newgrp, state, rule, out, ids, base):
    """Flags of the true path by tiles; None when an int64 sum overflowed somewhere."""
    xp, k = _xp(), _k()
    flags, whole_i, whole_w, ovf = _speculative_flags(w, newgrp, rule)
    state_i, state_w = _state_arrays(w, state)
    res_i = xp.zeros(3, dtype=np.int64)
    res_w = xp.zeros(2, dtype=w.dtype)
    _one(k.walk_top, w, newgrp, flags, state_i, state_w, whole_i, whole_w, *rule, res_i, res_w, ovf)
    if int(to_numpy(ovf)[0]):
        return None
    counts = inclusive_scan(flags)
    _write_flags(out, flags)
    _write_ids(ids, counts, base)
    r, v = to_numpy(res_i).tolist(), to_numpy(res_w).tolist()
    return int(to_numpy(counts[-1:])[0]), NO_POSITION, r[1], v[0], v[1], r[2], -1, -1


def _speculative_flags(w, newgrp, rule):
    """Flags of a walk of the whole input from an empty batch, and its end state."""
    xp, k = _xp(), _k()
    n = w.shape[0]
    tile = THREADS_PER_BLOCK * ROWS_PER_THREAD
    nseg = (n + tile - 1) // tile
    flags = xp.empty(n, dtype=np.bool_)
    seg_i = xp.empty((nseg, 2), dtype=np.int64)
    seg_w = xp.empty((nseg, 2), dtype=w.dtype)
    ovf = xp.zeros(1, dtype=np.int64)
    walk_tiles = _tile_kernel(THREADS_PER_BLOCK, ROWS_PER_THREAD, w.dtype.str)
    walk_tiles[nseg, THREADS_PER_BLOCK](w, newgrp, flags, *rule, seg_i, seg_w, ovf)
    seg_len = tile
    while nseg > 1:
        ngroups = (nseg + GROUP - 1) // GROUP
        out_i = xp.empty((ngroups, 2), dtype=np.int64)
        out_w = xp.empty((ngroups, 2), dtype=w.dtype)
        _launch(k.combine_segments, ngroups, w, newgrp, flags, seg_len, GROUP, *rule,
                seg_i, seg_w, out_i, out_w, ovf)
        seg_i, seg_w, nseg, seg_len = out_i, out_w, ngroups, seg_len * GROUP
    return flags, seg_i, seg_w, ovf


def _write_ids(ids, counts, base):
    """``ids = base - 1 + counts`` when ``ids`` is non-empty (``counts`` is reused in place)."""
    if ids.shape[0] == 0:
        return
    counts += int(base) - 1
    d = _Out(ids)
    d.dev[...] = counts
    d.done()
    counts -= int(base) - 1


def _write_flags(out, flags):
    """``out[i] = True`` where ``flags[i]``, for the first ``len(out)`` rows (as the CPU does)."""
    m = out.shape[0]
    if m == 0:
        return
    o = _Out(out)
    o.dev[...] = o.dev | flags[:m].astype(np.bool_)
    o.done()


# --------------------------------------------------------------------------- floor mode
def grid_cell(s, lim_f, lim_i):
    """``floor(s / limit)`` as an int: the CPU's :func:`.kernels.grid_cell` (exact integer
    division when ``lim_i`` > 0), on the host.

    >>> grid_cell(7, 2.0, 2), grid_cell(7.0, 2.5, 0)
    (3, 2)
    """
    return int(kernels.grid_cell(s, lim_f, lim_i))


@_serialized
def floor_walk(w, newgrp, s_in, cell_prev, has_prev, lim_f, lim_i, is_int, out, ids, base):
    """The ``floor`` starts of :func:`dask_cumbatch.engine.backends.cpu.floor_walk`, on the device.

    Integer weights, and float weights that are all integer-valued with a total below 2**53,
    are summed by a device scan (exact in any order); other floats must reproduce the CPU's
    sequential float64 running sum, so one device thread walks them (slow, but the same ids).

    >>> out, ids = np.zeros(4, np.bool_), np.zeros(4, np.int64)
    >>> r = floor_walk(np.array([3, 3, 3, 3]), np.zeros(4, np.bool_), 0, 0, False, 6.0, 6, True,
    ...                out, ids, 0)  # doctest: +SKIP
    >>> int(r[0]), out.tolist(), ids.tolist()  # doctest: +SKIP
    (2, [True, False, True, False], [0, 0, 1, 1])
    """
    w, newgrp = asarray(w), asarray(newgrp)
    n = w.shape[0]
    if n == 0:
        return 0, s_in, cell_prev, -1
    if n >= max(SEQUENTIAL_BELOW, 1):
        res = _floor_scan(w, newgrp, s_in, int(cell_prev), bool(has_prev), float(lim_f), int(lim_i),
                          bool(is_int), out, ids, base)
        if res is not None:
            return res
    return _floor_one_thread(w, newgrp, s_in, cell_prev, has_prev, lim_f, lim_i, is_int, out, ids, base)


def _floor_one_thread(w, newgrp, s_in, cell_prev, has_prev, lim_f, lim_i, is_int, out, ids, base):
    res_i = asarray(np.zeros(3, dtype=np.int64))
    res_s = asarray(np.zeros(1, dtype=np.asarray(s_in).dtype))
    o, d = _Out(out), _Out(ids)
    _one(_k().floor_sequential_kernel, w, newgrp, s_in, np.int64(cell_prev), bool(has_prev),
         float(lim_f), int(lim_i), bool(is_int), o.dev, d.dev, int(base), res_i, res_s)
    o.done()
    d.done()
    r = to_numpy(res_i).tolist()
    return r[0], to_numpy(res_s).tolist()[0], r[1], r[2]


def _exact_in_any_order(w) -> bool:
    """Float weights all integer-valued with a total below 2**53 (checked on the device)."""
    xp = _xp()
    return bool(xp.all(w == xp.floor(w))) and float(w.sum()) < FLOAT_EXACT_TOTAL


def _floor_scan(w, newgrp, s_in, cell_prev, has_prev, lim_f, lim_i, is_int, out, ids, base):
    """Floor starts from a device scan of the weights; None when it cannot be exact."""
    as_float = w.dtype.kind == "f"
    if as_float and not _exact_in_any_order(w):
        return None
    use_s_in = has_prev and not bool(newgrp[0])
    incl = inclusive_scan(w.astype(np.int64, copy=False))
    total = int(to_numpy(incl[-1:])[0])
    if not as_float and (total >= I64_MAX or (use_s_in and int(s_in) > I64_MAX - total)):
        return None  # an int64 sum may overflow: the one-thread walk reports where, as the CPU
    seg_first = _group_first_rows(newgrp, has_prev)
    s_in = np.float64(s_in) if as_float else np.int64(s_in)
    flags, cell_last = _floor_flags(w, newgrp, incl, seg_first, s_in, use_s_in, cell_prev, has_prev,
                                    lim_f, lim_i, as_float)
    counts = inclusive_scan(flags)
    _write_flags(out, flags)
    del flags
    _write_ids(ids, counts, base)
    n_starts, first = to_numpy(_xp().stack([counts[-1], seg_first[-1]])).tolist()
    return n_starts, _s_out(incl, first, s_in, use_s_in, as_float), cell_last, -1


def _group_first_rows(newgrp, has_prev):
    """Each row's group segment's first row (-1: the segment continues the previous partition)."""
    xp = _xp()
    reset = newgrp.copy()
    reset[0] = bool(reset[0]) or not has_prev
    return inclusive_scan(xp.where(reset, xp.arange(newgrp.shape[0], dtype=np.int64), -1), "max")


def _floor_flags(w, newgrp, incl, seg_first, s_in, use_s_in, cell_prev, has_prev, lim_f, lim_i,
                 as_float):
    """Start flags (int64 0/1) from each row's grid cell, and the last row's cell."""
    xp, k = _xp(), _k()
    n = w.shape[0]
    cells = xp.empty(n, dtype=np.int64)
    _launch(k.floor_cells, n, w, incl, seg_first, lim_f, lim_i, as_float, s_in, use_s_in, cells)
    flags = xp.empty(n, dtype=np.int64)
    _launch(k.floor_starts, n, newgrp, cells, np.int64(cell_prev), has_prev, flags)
    return flags, int(to_numpy(cells[-1:])[0])


def _s_out(incl, first, s_in, use_s_in, as_float):
    """The running sum after the last row, computed as the CPU's ``s_base + p``."""
    p = int(to_numpy(incl[-1:])[0]) - (int(to_numpy(incl[first - 1:first])[0]) if first > 0 else 0)
    if as_float:
        p = float(p)
        return float(np.float64(s_in) + p) if use_s_in and first <= 0 else 0.0 + p
    return int(s_in) + p if use_s_in and first <= 0 else p


@_serialized
def floor_risky(w, seg_len, threshold, is_int, p_out, w_out):
    """The risky rows of :func:`dask_cumbatch.engine.backends.cpu.floor_risky`.

    Integer weights, and float weights that are all integer-valued with a total below 2**53,
    take a device scan (their running sums are exact in any order); other floats must form
    the running sum in row order, so one device thread walks them, as do int64 sums that may
    overflow (to report the CPU's row).

    >>> p_out, w_out = np.zeros(3), np.zeros(3)
    >>> floor_risky(np.array([1.0, 5.0, 1.0]), 3, 2.0, False, p_out, w_out)  # doctest: +SKIP
    (1, 6.0, 7.0, -1)
    >>> p_out.tolist()[:1], w_out.tolist()[:1]  # doctest: +SKIP
    ([1.0], [5.0])
    """
    w = asarray(w)
    zero = w.dtype.type(0)
    if w.shape[0] == 0:
        return 0, _py(zero), _py(zero), -1
    if int(seg_len) >= max(SEQUENTIAL_BELOW, 1):
        res = _floor_risky_scan(w[:int(seg_len)], threshold, p_out, w_out)
        if res is not None:
            return res
    res_i = asarray(np.zeros(2, dtype=np.int64))
    res_s = asarray(np.zeros(2, dtype=w.dtype))
    po, wo = _Out(p_out), _Out(w_out)
    _one(_k().floor_risky_kernel, w, int(seg_len), threshold, bool(is_int), po.dev, wo.dev, res_i, res_s)
    po.done()
    wo.done()
    r, s = to_numpy(res_i).tolist(), to_numpy(res_s).tolist()
    return r[0], s[0], s[1], r[1]


def _floor_risky_scan(seg, threshold, p_out, w_out):
    """:func:`floor_risky` of one group segment from a device scan; None when not exact."""
    xp = _xp()
    as_float = seg.dtype.kind == "f"
    if as_float and not _exact_in_any_order(seg):
        return None
    incl = inclusive_scan(seg.astype(np.int64, copy=False))
    total = int(to_numpy(incl[-1:])[0])
    if total >= I64_MAX:
        return None  # an int64 sum may overflow: the one-thread walk reports where, as the CPU
    m = seg.shape[0]
    risky = xp.flatnonzero(seg[:m - 1] > threshold)
    k = int(risky.shape[0])
    po, wo = _Out(p_out), _Out(w_out)
    po.dev[:k] = (incl[risky] - seg[risky].astype(np.int64)).astype(seg.dtype)
    wo.dev[:k] = seg[risky]
    po.done()
    wo.done()
    last = int(to_numpy(seg[-1:].astype(np.int64))[0])
    cast = float if as_float else int
    return k, cast(total - last), cast(total), -1


# --------------------------------------------------------------------------- array work
@_serialized
def cap_walk(flags, rows, max_rows, out):
    """Row-cap starts of :func:`dask_cumbatch.engine.backends.cpu.cap_walk`: closed form from the last flag.

    A row is a cap start when it lies a whole number of ``max_rows`` after the last flagged
    row (or the open batch's virtual start), so no walk is needed.

    >>> out = np.zeros(5, np.bool_)
    >>> r = cap_walk(np.array([True, False, False, False, False]), 0, 2, out)  # doctest: +SKIP
    >>> int(r[0]), out.tolist()  # doctest: +SKIP
    (3, [True, False, True, False, True])
    """
    xp = _xp()
    flags = asarray(flags).astype(np.bool_)
    n = flags.shape[0]
    rows, max_rows = int(rows), int(max_rows)
    if n == 0:
        return 0, rows, 0
    idx = xp.arange(n, dtype=np.int64)
    last_flag = inclusive_scan(xp.where(flags, idx, -1), "max")
    starts = xp.empty(n, dtype=np.bool_)
    _launch(_k().cap_starts, n, flags, last_flag, rows, max(max_rows, 1), starts)
    _write_flags(out, starts)
    where = inclusive_scan(xp.where(starts, idx, -1), "max")
    counts = inclusive_scan(starts)
    flagged = inclusive_scan(xp.where(flags, n - idx, 0), "max")  # n - first flagged row
    n_starts, last_start, first_gap = to_numpy(xp.stack([counts[-1], where[-1], flagged[-1]])).tolist()
    end_rows = n - last_start if last_start >= 0 else rows + n
    return n_starts, end_rows, n - first_gap if first_gap else n


@_serialized
def count_invalid(w):
    """How many weights are NaN, infinite or negative.

    >>> count_invalid(np.array([1.0, -1.0, np.nan, 2.0]))  # doctest: +SKIP
    2
    """
    xp = _xp()
    w = asarray(w)
    valid = (w >= 0) & (w < np.inf)
    return int(w.shape[0] - int(xp.count_nonzero(valid)))


@_serialized
def starts_to_ids(starts, base):
    """Dense ids ``base - 1 + cumsum(starts)`` (a backend array), by the device scan.

    >>> to_numpy(starts_to_ids(np.array([False, True, False, True]), 5)).tolist()  # doctest: +SKIP
    [4, 5, 5, 6]
    """
    starts = asarray(starts)
    return inclusive_scan(starts.astype(np.int64)) + (int(base) - 1)


@_serialized
def batch_stats(ids, w, positions):
    """Per-batch ``(batch, rows, total, max, first, last)`` (backend arrays) for sorted ``ids``.

    One device thread per batch sums its rows in row order, so float totals match the CPU's.

    >>> r = batch_stats(np.array([0, 0, 1]), np.array([1.5, 2.0, 4.0]), np.array([0, 1, 2]))  # doctest: +SKIP
    >>> [to_numpy(a).tolist() for a in r]  # doctest: +SKIP
    [[0, 1], [2, 1], [3.5, 4.0], [2.0, 4.0], [0, 2], [1, 2]]
    """
    xp = _xp()
    ids, w, positions = asarray(ids), asarray(w), asarray(positions).astype(np.int64)
    n = ids.shape[0]
    change = xp.ones(n, dtype=np.bool_)
    if n > 1:
        change[1:] = ids[1:] != ids[:-1]
    first_rows = xp.flatnonzero(change).astype(np.int64)
    k = first_rows.shape[0]
    rows = xp.zeros(k, dtype=np.int64)
    total = xp.zeros(k, dtype=w.dtype)
    mx = xp.zeros(k, dtype=w.dtype)
    first = xp.empty(k, dtype=np.int64)
    last = xp.empty(k, dtype=np.int64)
    if k:
        _launch(_k().batch_stats_kernel, k, w, positions, first_rows, n, rows, total, mx, first, last)
    return ids[first_rows].astype(np.int64), rows, total, mx, first, last


__all__ = [
    "AUTO_MIN_ROWS", "CELL_MAX", "I64_MAX", "NO_POSITION", "asarray", "batch_stats", "cap_walk",
    "chain_table", "check_available", "count_invalid", "floor_risky", "floor_walk", "grid_cell",
    "inclusive_scan", "simulated", "starts_to_ids", "to_numpy", "walk_batches",
]
