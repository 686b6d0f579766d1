"""Batch ids on an in-memory Dask frame: ours against the idioms people write today.

Measures, in one run on the same data (float64 token-like weights):

* ``mode="floor"`` against the Dask idiom ``((ddf.w.cumsum() - ddf.w) // limit)`` (both
  reduced with ``.max()``, so both compute every id);
* ``mode="greedy"`` against a plain single-thread numba loop over the whole column;
* a one-core NumPy copy of the column as the bandwidth floor;

first at ``--rows`` rows in ``--partitions`` partitions, then at ``--small-rows`` rows in
``--many-partitions`` partitions, where per-task overhead and graph depth dominate.

Run: ``python benchmarks/bench_ids.py`` (defaults: 1e8 rows / 100 partitions, then 1e7 rows /
10,000 partitions; about 3 GB of memory). ``--quick`` runs a small version. ``--int-weights``
makes the same weights int64 (token counts as they are usually stored); with a large
``--limit`` (say 1e7: about 40,000 rows a batch) greedy's summaries need chain tables, the
case of an export of token counts. ``--many-partitions 0`` skips the second case.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from numba import njit

import dask_cumbatch  # noqa: F401  (registers the accessor)


@njit(nogil=True, cache=True)
def numba_greedy(w, limit):
    """The loop people write: one thread, whole column in memory."""
    out = np.empty(w.shape[0], np.int64)
    tot = 0.0
    b = -1
    for i in range(w.shape[0]):
        if i == 0 or tot + w[i] > limit:
            b += 1
            tot = 0.0
        tot += w[i]
        out[i] = b
    return out


REDUCTION = "dask's own ddf.w.max() (reduction floor)"


def best_of(fn, repeat):
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def run_case(rows, partitions, limit, repeat, idiom_repeat, dtype=np.float64):
    rng = np.random.default_rng(42)
    w = np.round(rng.lognormal(5.0, 1.0, rows)).astype(dtype)  # token-length-like
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=partitions)
    numba_greedy(w[:10], limit)  # compile outside the timing
    for mode in ("floor", "greedy"):  # compile/load both modes' kernels outside the timing
        ddf.cumbatch.ids("w", limit, mode=mode).max().compute()

    results = {}
    results["memcpy (1 core)"] = best_of(lambda: np.copy(w), repeat)[0]
    results["ours floor"], ours_floor = best_of(
        lambda: ddf.cumbatch.ids("w", limit, mode="floor").max().compute(), repeat)
    results[REDUCTION] = best_of(
        lambda: ddf.w.max().compute(), repeat)[0]
    idiom = None
    if idiom_repeat:  # --skip-idiom leaves it out of the results altogether
        results["dask idiom floor"], idiom = best_of(
            lambda: ((ddf.w.cumsum() - ddf.w) // limit).max().compute(), idiom_repeat)
    results["ours greedy"], ours_greedy = best_of(
        lambda: ddf.cumbatch.ids("w", limit).max().compute(), repeat)
    results["numba loop greedy (1 thread)"], loop = best_of(lambda: numba_greedy(w, limit), repeat)
    # Both idioms count cells; ours uses dense ids, so compare the last id to the cell count.
    assert ours_greedy == loop[-1], (ours_greedy, loop[-1])
    checks = {"floor last id": int(ours_floor), "greedy last id": int(ours_greedy)}
    if idiom is not None:
        checks["idiom last cell"] = int(idiom)
    return results, checks


def report(title, rows, results):
    print(f"\n## {title}\n")
    print("| method | seconds | Mrows/s |")
    print("| --- | ---: | ---: |")
    for name, sec in results.items():
        print(f"| {name} | {sec:.3f} | {rows / sec / 1e6:,.0f} |")
    r = results
    print()
    if "dask idiom floor" in r:
        print(f"- floor vs Dask idiom: **{r['dask idiom floor'] / r['ours floor']:.1f}x** faster")
    else:
        print("- Dask idiom: not run (--skip-idiom)")
    print(f"- greedy vs single-thread numba loop: **{r['numba loop greedy (1 thread)'] / r['ours greedy']:.2f}x**")
    print(f"- Dask's own .max() over the same partitions takes {r[REDUCTION]:.3f} s: "
          "no ids(...).max() can be faster than that")
    print(f"- floor / ddf.w.max(): **{r['ours floor'] / r[REDUCTION]:.2f}x**; "
          f"greedy / ddf.w.max(): **{r['ours greedy'] / r[REDUCTION]:.2f}x** "
          "(issue 14 targets: 2x and 2.5x at 100 partitions, 1.3x at 10,000)")
    print(f"- floor / memcpy time: {r['ours floor'] / r['memcpy (1 core)']:.1f}x; "
          f"greedy / memcpy time: {r['ours greedy'] / r['memcpy (1 core)']:.1f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=float, default=1e8)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--small-rows", type=float, default=1e7)
    ap.add_argument("--many-partitions", type=int, default=10_000)
    ap.add_argument("--limit", type=float, default=4096.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1e7 rows / 100, then 1e6 / 1,000")
    ap.add_argument("--skip-idiom", action="store_true", help="leave out the (slow) Dask idiom")
    ap.add_argument("--int-weights", action="store_true", help="int64 weights (and an integer limit)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.small_rows, args.many_partitions = 1e7, 1e6, 1000
    dask.config.set(scheduler="threads")
    print(f"# bench_ids: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"dask {dask.__version__}, pandas {pd.__version__}, numpy {np.__version__}")
    dtype, limit = (np.int64, int(args.limit)) if args.int_weights else (np.float64, args.limit)
    for rows, parts, idiom_repeat in (
        (int(args.rows), args.partitions, 0 if args.skip_idiom else args.repeat),
        (int(args.small_rows), args.many_partitions, 0 if args.skip_idiom else 1),
    ):
        if not parts:
            continue
        results, check = run_case(rows, parts, limit, args.repeat, idiom_repeat, dtype)
        report(f"{rows:,} rows in {parts:,} partitions (limit {args.limit:g}, {np.dtype(dtype).name} weights)",
               rows, results)
        print(f"- checks: {check}")


if __name__ == "__main__":
    main()
