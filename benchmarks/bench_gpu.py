"""Batch ids on the GPU: the GPU backend's kernels against a device copy and the CuPy idiom.

Measures, in one run on the same device-resident float64 weights (``--rows``, default 5e8):

* a device copy of the column (``w.copy()``): the bandwidth floor;
* the CuPy idiom ``floor((cumsum(w) - w) / limit)`` (no dense ids, no groups, no exactness);
* ours, ``floor`` mode (:func:`gpu.floor_walk` with ids; integer-valued float64 token counts,
  which the device scan sums exactly; non-integer floats take the one-thread walk instead);
* ours, ``greedy`` mode (:func:`gpu.walk_batches` with ids: tiled speculative pass, hierarchy
  of segment summaries, ids by the device scan);

plus, end to end, batch ids of a pandas-backed Dask frame (``--e2e-rows``, host memory) with
``device="gpu"`` against ``device="cpu"``; printing rows/s and the ratios (targets on an H100/H200: floor >= 0.5x the copy and >= 2x the
idiom, greedy >= 0.25x the copy). ``--crossover`` also times ``device="gpu"`` against ``"cpu"`` end to end at partition sizes
from 2**16 to 2**24 rows: the measurement behind ``AUTO_MIN_ROWS``. ``--sim`` runs a tiny
size under numba-cuda's simulator
(``NUMBA_ENABLE_CUDASIM=1``, NumPy arrays, tiny tiles) and checks the ids against the CPU
kernels, to prove the script and the kernels work without a device.

Run: ``python benchmarks/bench_gpu.py`` on a machine with CuPy and a GPU (about 40 GB of device
memory at 5e8 rows; ``--rows 1e8`` for less), or ``python benchmarks/bench_gpu.py --sim``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=float, default=5e8)
    p.add_argument("--limit", type=float, default=4096.0, help="batch limit (weights average 50)")
    p.add_argument("--e2e-rows", type=float, default=1e8, help="rows of the end-to-end Dask frame")
    p.add_argument("--partitions", type=int, default=10, help="partitions of the end-to-end frame")
    p.add_argument("--repeat", type=int, default=3, help="best of this many runs of each timing")
    p.add_argument("--crossover", action="store_true",
                   help="also time device='gpu' against 'cpu' at partition sizes 2**16..2**24 "
                        "(the measurement behind AUTO_MIN_ROWS)")
    p.add_argument("--stages", action="store_true",
                   help="also time the stages of the greedy walk (tiles, each level, top walk, scan)")
    p.add_argument("--sim", action="store_true", help="tiny run under numba-cuda's simulator")
    return p.parse_args(argv)


def setup(sim: bool):
    """Import the backend (the simulator must be switched on before numba.cuda is imported)."""
    if sim:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from dask_cumbatch.engine.backends import gpu
    gpu.check_available()
    if sim:
        gpu.THREADS_PER_BLOCK, gpu.ROWS_PER_THREAD, gpu.GROUP, gpu.SEQUENTIAL_BELOW = 32, 4, 4, 0
        return gpu, np, lambda: None
    import cupy
    return gpu, cupy, cupy.cuda.Device().synchronize


def timed(fn, sync, repeat=1):
    """Best wall time of ``repeat`` runs of ``fn`` (device synchronised), and its last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None  # free the last run's output before the next
        sync()
        t0 = time.perf_counter()
        result = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, result


def make_weights(xp, n, seed=0):
    """Token-count-like float64 weights, integer-valued (1..99), resident on the device."""
    rng = xp.random.default_rng(seed) if hasattr(xp.random, "default_rng") else xp.random
    return xp.floor(rng.random(n) * 99.0) + 1.0


def ours_floor(gpu, xp, w, limit):
    n = w.shape[0]
    ids = xp.empty(n, dtype=np.int64)
    gpu.floor_walk(w, xp.zeros(n, dtype=np.bool_), np.float64(0.0), 0, False, limit, 0, False,
                   xp.zeros(0, dtype=np.bool_), ids, 0)
    return ids


def ours_greedy(gpu, xp, w, limit):
    n = w.shape[0]
    ids = xp.empty(n, dtype=np.int64)
    gpu.walk_batches(w, xp.zeros(n, dtype=np.bool_), np.zeros(0), 0, 0.0, 0.0, 0, True, False, True,
                     limit, limit, 0, 0, xp.zeros(0, dtype=np.bool_), xp.zeros(0, dtype=np.bool_),
                     ids, 0)
    return ids


def cupy_idiom(xp, w, limit):
    return xp.floor((xp.cumsum(w) - w) / limit)


def check_against_cpu(gpu, w, limit, floor_ids, greedy_ids):
    """The ids must equal the CPU kernels' (the script's own proof; at full size on a device)."""
    from dask_cumbatch.engine import backend_for
    kernels = backend_for("cpu")
    w = gpu.to_numpy(w)
    n = len(w)
    cpu_ids = np.empty(n, np.int64)
    kernels.floor_walk(w, np.zeros(n, bool), 0.0, 0, False, limit, 0, False, np.zeros(0, bool),
                       cpu_ids, 0)
    assert (gpu.to_numpy(floor_ids) == cpu_ids).all(), "floor ids differ from the CPU's"
    kernels.walk_batches(w, np.zeros(n, bool), w[:0], 0, 0.0, 0.0, 0, True, False, True, limit,
                         limit, 0, 0, np.zeros(0, bool), np.zeros(0, bool), cpu_ids, 0)
    assert (gpu.to_numpy(greedy_ids) == cpu_ids).all(), "greedy ids differ from the CPU's"


def main(argv=None):
    args = parse_args(argv)
    gpu, xp, sync = setup(args.sim)
    n = 4096 if args.sim else int(args.rows)
    limit = 256.0 if args.sim else args.limit
    if not args.sim:  # compile every kernel once, outside the timings
        small = make_weights(xp, 1 << 16, 1)
        ours_floor(gpu, xp, small, limit)
        ours_greedy(gpu, xp, small, limit)
    w = make_weights(xp, n)
    results = {}
    r = 1 if args.sim else args.repeat
    results["device copy (bandwidth floor)"] = timed(lambda: w.copy(), sync, r)
    results["CuPy idiom floor((cumsum(w)-w)/limit)"] = timed(lambda: cupy_idiom(xp, w, limit), sync, r)
    results["ours floor (ids)"] = timed(lambda: ours_floor(gpu, xp, w, limit), sync, r)
    results["ours greedy (ids)"] = timed(lambda: ours_greedy(gpu, xp, w, limit), sync, r)
    check_against_cpu(gpu, w, limit, results["ours floor (ids)"][1], results["ours greedy (ids)"][1])
    results = {k: v[0] for k, v in results.items()}
    report(n, limit, args.sim, results)
    if args.stages:
        greedy_stages(gpu, xp, w, limit, sync)
    w = None  # free the device copy before the end-to-end runs
    end_to_end(600 if args.sim else int(args.e2e_rows), 3 if args.sim else args.partitions, limit,
               1 if args.sim else args.repeat)
    if args.crossover:
        for mode in ("floor", "greedy"):
            crossover([1 << 8, 1 << 10] if args.sim else [1 << k for k in range(16, 25, 2)], limit,
                      1 if args.sim else args.repeat, mode)


def greedy_stages(gpu, xp, w, limit, sync):
    """Seconds of each stage of the tiled greedy walk, as ``gpu._walk_tiled`` runs them."""
    k = gpu._k()
    n = w.shape[0]
    rule = (True, False, True, limit, limit, 0)
    g = xp.zeros(n, dtype=np.bool_)
    tile = gpu.THREADS_PER_BLOCK * gpu.ROWS_PER_THREAD
    nseg = (n + tile - 1) // tile
    flags = xp.empty(n, dtype=np.bool_)
    seg_i, seg_w = xp.empty((nseg, 2), dtype=np.int64), xp.empty((nseg, 2), dtype=w.dtype)
    ovf = xp.zeros(1, dtype=np.int64)
    walk_tiles = gpu._tile_kernel(gpu.THREADS_PER_BLOCK, gpu.ROWS_PER_THREAD, w.dtype.str)
    stages = [("tiles", timed(lambda: walk_tiles[nseg, gpu.THREADS_PER_BLOCK](
        w, g, flags, *rule, seg_i, seg_w, ovf), sync)[0])]
    seg_len, level = tile, 1
    while nseg > 1:
        ngroups = (nseg + gpu.GROUP - 1) // gpu.GROUP
        out_i, out_w = xp.empty((ngroups, 2), dtype=np.int64), xp.empty((ngroups, 2), dtype=w.dtype)
        stages.append((f"level {level}: {nseg:,} segments of {seg_len:,} rows", timed(
            lambda: gpu._launch(k.combine_segments, ngroups, w, g, flags, seg_len, gpu.GROUP, *rule,
                                seg_i, seg_w, out_i, out_w, ovf), sync)[0]))
        seg_i, seg_w, nseg, seg_len, level = out_i, out_w, ngroups, seg_len * gpu.GROUP, level + 1
    state_i, state_w = gpu._state_arrays(w, (0, 0.0, 0.0, 0))
    res_i, res_w = xp.zeros(3, dtype=np.int64), xp.zeros(2, dtype=w.dtype)
    stages.append(("top walk (one thread)", timed(lambda: gpu._one(
        k.walk_top, w, g, flags, state_i, state_w, seg_i, seg_w, *rule, res_i, res_w, ovf), sync)[0]))
    stages.append(("scan of the flags", timed(lambda: gpu.inclusive_scan(flags), sync)[0]))
    print(f"greedy stages, {n:,} rows (tile {tile:,} rows, group {gpu.GROUP}); overflow flag "
          f"{int(gpu.to_numpy(ovf)[0])}:")
    for name, sec in stages:
        print(f"  {name:48s} {sec:9.4f} s")


def time_both_devices(n, partitions, limit, repeat, mode="greedy"):
    """Seconds of ``ddf.cumbatch.ids(...).compute()`` per device on one pandas-backed frame."""
    import dask
    import dask.dataframe as dd
    import pandas as pd
    import dask_cumbatch  # noqa: F401  (registers the accessor)
    w = np.floor(np.random.default_rng(2).random(n) * 99.0) + 1.0
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=partitions)
    seconds, ids = {}, {}
    with dask.config.set(scheduler="threads"):
        for device in ("cpu", "gpu"):
            run = lambda: ddf.cumbatch.ids("w", limit, mode=mode, device=device).compute()  # noqa: E731
            run()  # kernels compiled or loaded outside the timing
            seconds[device], ids[device] = timed(run, lambda: None, repeat)
    assert (ids["gpu"].to_numpy() == ids["cpu"].to_numpy()).all(), "device='gpu' ids differ from the CPU's"
    return seconds


def end_to_end(n, partitions, limit, repeat):
    """``ddf.cumbatch.ids`` on a pandas-backed Dask frame, device="gpu" against device="cpu"."""
    for mode in ("floor", "greedy"):
        try:
            seconds = time_both_devices(n, partitions, limit, repeat, mode)
        except (NotImplementedError, RuntimeError) as e:
            print(f"end to end: not run ({e})")
            return
        print(f"end to end, {n:,} rows in {partitions} pandas partitions ({mode}, ids equal):")
        for device, s in seconds.items():
            print(f"  device={device!r}: {s:8.3f} s {n / s:12.3e} rows/s")
        print(f"  gpu / cpu speed: {seconds['cpu'] / seconds['gpu']:.2f}x")


def crossover(sizes, limit, repeat, mode, partitions=8):
    """Per-partition size at which device="gpu" overtakes "cpu" end to end (AUTO_MIN_ROWS)."""
    print(f"crossover: {partitions} pandas partitions of n rows each, {mode}, threaded scheduler")
    print(f"{'rows/partition':>14s} {'cpu s':>9s} {'gpu s':>9s} {'gpu/cpu speed':>14s}")
    first_win = None
    for n in sizes:
        seconds = time_both_devices(n * partitions, partitions, limit, repeat, mode)
        speed = seconds["cpu"] / seconds["gpu"]
        print(f"{n:14,d} {seconds['cpu']:9.4f} {seconds['gpu']:9.4f} {speed:14.2f}")
        if speed > 1 and first_win is None:
            first_win = n
    print(f"smallest partition where the GPU wins: {first_win if first_win else 'none measured'}")


def report(n, limit, sim, seconds):
    where = "numba-cuda simulator (CPU, NumPy arrays): timings mean nothing" if sim else device_name()
    print(f"rows={n:,} limit={limit:g} float64 weights on {where}")
    copy = seconds["device copy (bandwidth floor)"]
    idiom = seconds["CuPy idiom floor((cumsum(w)-w)/limit)"]
    print(f"{'what':42s} {'seconds':>10s} {'rows/s':>12s} {'x copy':>8s} {'x idiom':>8s}")
    for name, s in seconds.items():
        print(f"{name:42s} {s:10.4f} {n / s:12.3e} {copy / s:8.3f} {idiom / s:8.3f}")
    if sim:
        print("ids equal the CPU kernels' (floor and greedy)")


def device_name():
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


if __name__ == "__main__":
    main()
