"""What each fast path of the path tables gains (docs/how-it-works.md, "Each mode's paths").

For each fast path, ``ddf.cumbatch.ids(...)`` on the same data twice in turn: on the CPU
backend as it is, and on the CPU backend with the path's kernels declared absent (the engine
then takes the next row of the table, as it does on a backend that lacks them). The ids of
both must agree; the table gives the best time of each, the ratio (without / with) and the
gain (the share of the time without the path that it saves). A path gaining less than 5 % is a
candidate for removal. Paths that serve one decision in several steps (greedy's prefix-sum
searches for long batches: summary, scan, finish) are also measured together: alone each gains
little; together they decide how long batches run.

Removing ``greedy_walk`` also switches off every path that lists it (``sums_*``,
``greedy_starts``); removing ``floor_ids_quick`` also the quick summaries. The data: int64
weights 1..99 (or those weights as float64; limit 50,000: 1,000-row batches, 2,000,000: 40,000), in ``--parts`` partitions of at least 32,768 rows
(so the summary keeps its start flags), the synchronous scheduler (one thread: no noise from
the others). Chain tables are not measured here: in-memory frames keep whole heads
(``prefer_whole``), so their summaries build none.

    python benchmarks/bench_paths.py  # 500,000 and 2,000,000 rows, 5 runs each: about a minute
"""
from __future__ import annotations

import argparse
import time
import types
from unittest import mock

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

import dask_cumbatch  # noqa: F401  (registers the accessor)
from dask_cumbatch.engine import backends, kept
from dask_cumbatch.engine.backends import cpu

_PREFIX_SUMS = ("greedy_sums_starts", "greedy_sums_end", "greedy_sums_ids")  # one decision: long batches
# (table: path, kernels switched off, weights, limit, options)
FAST_PATHS = [
    ("greedy walk: sums_starts", ("greedy_sums_starts",), "int", 50_000, {}),
    ("greedy walk: greedy_starts", ("greedy_starts",), "int", 150, {}),
    ("greedy walk: greedy_walk (and all that need it)", ("greedy_walk",), "int", 150, {}),
    ("greedy walk: greedy_walk, long batches", ("greedy_walk",), "int", 50_000, {}),
    ("greedy scan: sums_end", ("greedy_sums_end",), "int", 50_000, {}),
    ("greedy finish: sums_ids", ("greedy_sums_ids",), "int", 50_000, {}),
    ("greedy walk: sums_starts, 40,000-row batches", ("greedy_sums_starts",), "int", 2_000_000, {}),
    ("greedy scan: sums_end, 40,000-row batches", ("greedy_sums_end",), "int", 2_000_000, {}),
    ("greedy finish: sums_ids, 40,000-row batches", ("greedy_sums_ids",), "int", 2_000_000, {}),
    ("greedy: all three prefix-sum searches", _PREFIX_SUMS, "int", 50_000, {}),
    ("greedy: all three prefix-sum searches, 40,000-row batches", _PREFIX_SUMS, "int", 2_000_000, {}),
    ("greedy finish: kept_flags", ("flags_to_ids",), "int", 150, {}),
    ("greedy finish: kept_flags, float", ("flags_to_ids",), "float", 150.0, {}),
    ("fill finish: kept_flags", ("flags_to_ids",), "int", 150, {"mode": "fill"}),
    ("floor summary: quick_int", ("floor_summary_int",), "int", 150, {"mode": "floor"}),
    ("floor summary: quick_float", ("floor_summary_float",), "float", 150.0, {"mode": "floor"}),
    ("floor finish: quick (and quick summaries)", ("floor_ids_quick",), "int", 150, {"mode": "floor"}),
]


def cpu_without(kernels) -> types.ModuleType:
    """A stand-in for the CPU backend module with ``kernels`` declared absent (None)."""
    module = types.ModuleType(f"{cpu.__name__}_without_{'_'.join(kernels)}")
    module.__dict__.update({k: v for k, v in vars(cpu).items() if not k.startswith("__")})
    for kernel in kernels:
        setattr(module, kernel, None)
    return module


def run_ids(ddf, limit, kw, module):
    """Ids of ``ddf`` with every backend lookup answered by ``module``."""
    with mock.patch.object(backends, "_module_for", lambda device, n_rows: module), \
            dask.config.set(scheduler="sync"):
        return ddf.cumbatch.ids("w", limit, **kw).compute().to_numpy()


def timed(fn):
    kept.forget_all()  # every run starts with an empty flag store
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(ddf, limit, kw, kernels, repeat):
    """Best times (with, without) of the path over ``repeat`` alternating runs."""
    without = cpu_without(kernels)
    best_with = best_without = float("inf")
    run_ids(ddf, limit, kw, cpu), run_ids(ddf, limit, kw, without)  # first calls compile what they need
    for _ in range(repeat):
        t_with, ids_with = timed(lambda: run_ids(ddf, limit, kw, cpu))
        t_without, ids_without = timed(lambda: run_ids(ddf, limit, kw, without))
        if not np.array_equal(ids_with, ids_without):
            raise AssertionError(f"ids differ without {kernels}")
        best_with, best_without = min(best_with, t_with), min(best_without, t_without)
    return best_with, best_without


def frame(rows, parts, kind):
    w = np.random.default_rng(0).integers(1, 100, rows)
    pdf = pd.DataFrame({"w": w if kind == "int" else w.astype(np.float64)})
    return dd.from_pandas(pdf, npartitions=parts, sort=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[500_000, 2_000_000])
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5, help="alternating runs of each (best time kept)")
    ap.add_argument("--only", help="only the paths whose name contains this")
    args = ap.parse_args(argv)
    frames = {(rows, kind): frame(rows, args.parts, kind) for rows in args.rows for kind in ("int", "float")}
    run_ids(frames[(args.rows[0], "int")], 150, {}, cpu)  # compile/load the kernels first
    print("| path | kernels off | rows | with (ms) | without (ms) | without/with | gain |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, kernels, kind, limit, kw in FAST_PATHS:
        if args.only and args.only not in name:
            continue
        for rows in args.rows:
            t_with, t_without = measure(frames[(rows, kind)], limit, kw, kernels, args.repeat)
            gain = 1 - t_with / t_without
            print(f"| {name} | {', '.join(kernels)} | {rows:,} | {t_with * 1e3:.1f} | {t_without * 1e3:.1f} "
                  f"| {t_without / t_with:.2f} | {gain:+.0%}{' (< 5 %)' if gain < 0.05 else ''} |", flush=True)


if __name__ == "__main__":
    main()
