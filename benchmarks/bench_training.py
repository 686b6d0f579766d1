"""Feeding a training loop: does the input pipeline keep up, and what does sort_window buy?

Writes a tokenised corpus as Parquet files into a temporary folder (``n_tokens`` per document,
lognormal, capped at ``--max-len``, plus the token ids themselves as a ``list<int32>`` column),
then runs a simulated training loop that sleeps ``--step-ms`` (5 ms) per step over token-budget
batches (``cost="padded"``: rows x longest row <= ``--limit``) streamed by
``ddf.cumbatch.iter_batches``, and reports for each configuration:

* ``wait``: the time the loop spent inside ``next()`` waiting for data (``it.wait_seconds``),
  against the loop's total time (target: under 5 % on 2 cores);
* ``plan``: the plan pass before the first step (one read of the data);
* the padding ratio (padded tokens / real tokens - 1) without and with ``sort_window``.

Run: ``python benchmarks/bench_training.py`` (about a minute and a half on 2 cores);
``--quick`` for a small run. Options: ``--rows``, ``--files``, ``--limit``, ``--max-len``,
``--step-ms``, ``--sort-window``, ``--shuffle-buffer``, ``--world-size``.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import dask
import dask.dataframe as dd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import dask_cumbatch  # noqa: F401  (registers the accessor)


def write_corpus(folder, rows, files, max_len, seed=0):
    """``files`` Parquet files: doc_id, n_tokens, tokens (list<int32> of n_tokens ids)."""
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, rows, files + 1).round().astype(int)
    total = 0
    for k in range(files):
        n = int(bounds[k + 1] - bounds[k])
        lengths = np.clip(np.rint(rng.lognormal(5.0, 1.0, n)), 1, max_len).astype(np.int32)
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32)
        ids = rng.integers(0, 50_000, int(offsets[-1]), dtype=np.int32)
        table = pa.table({
            "doc_id": pa.array(np.arange(bounds[k], bounds[k + 1], dtype=np.int64)),
            "n_tokens": pa.array(lengths),
            "tokens": pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids)),
        })
        pq.write_table(table, os.path.join(folder, f"part-{k:03d}.parquet"))
        total += int(offsets[-1])
    return total


def train(ddf, limit, step_s, **opts):
    """The simulated loop: one sleep per batch. Returns the numbers of one table row."""
    t0 = time.perf_counter()
    it = ddf.cumbatch.iter_batches("n_tokens", limit, cost="padded", format="arrow", **opts)
    plan_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows = padded = real = 0
    first_s = None
    for _, batch in it:
        if first_s is None:
            first_s = it.wait_seconds  # startup: the first partitions (and the buffer's first pick)
        n = batch.column("n_tokens").to_numpy()
        rows += len(n)
        real += int(n.sum())
        padded += int(n.max()) * len(n)
        time.sleep(step_s)  # the "training step"
    loop_s = time.perf_counter() - t1
    return dict(batches=it.batches_yielded, rows=rows, plan_s=plan_s, loop_s=loop_s,
                wait_s=it.wait_seconds, first_s=first_s or 0.0, padding=padded / real - 1 if real else 0.0,
                max_buffered=it.max_buffered, max_partitions=it.max_partitions,
                partitions=it.partitions_computed, dropped=it.dropped, padded_batches=it.padded)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--limit", type=int, default=8192, help="padded tokens per batch")
    ap.add_argument("--max-len", type=int, default=2048)
    ap.add_argument("--step-ms", type=float, default=5.0)
    ap.add_argument("--sort-window", type=int, default=4096)
    ap.add_argument("--shuffle-buffer", type=int, default=256)
    ap.add_argument("--world-size", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="20,000 rows")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.files = 20_000, 4
    dask.config.set(scheduler="threads")
    with tempfile.TemporaryDirectory(prefix="cumbatch-bench-training-") as folder:
        t = time.perf_counter()
        tokens = write_corpus(folder, args.rows, args.files, args.max_len)
        write_s = time.perf_counter() - t
        ddf = dd.read_parquet(folder, dtype_backend="pyarrow")
        print(f"# bench_training: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"dask {dask.__version__}")
        print(f"- corpus: {args.rows:,} documents, {tokens:,} tokens (lognormal, <= {args.max_len}), "
              f"{args.files} Parquet files written in {write_s:.1f} s")
        print(f"- batches: at most {args.limit:,} padded tokens (cost='padded'); step: "
              f"sleep {args.step_ms:g} ms; prefetch=1 unless said; load average before: "
              f"{os.getloadavg()[0]:.1f}\n")

        with_plan = ddf.cumbatch.plan("n_tokens", args.limit, cost="padded", sort_window=args.sort_window)
        without_plan = ddf.cumbatch.plan("n_tokens", args.limit, cost="padded")
        step = args.step_ms / 1000
        W = args.world_size
        configs = [
            ("in order, no sort_window", dict()),
            (f"shuffled, sort_window={args.sort_window}",
             dict(sort_window=args.sort_window, shuffle="batches", shuffle_buffer=args.shuffle_buffer, seed=0)),
            (f"shuffled, sort_window={args.sort_window}, rank 0 of {W}",
             dict(sort_window=args.sort_window, shuffle="batches", shuffle_buffer=args.shuffle_buffer,
                  seed=0, rank=0, world_size=W)),
            (f"shuffled, sort_window={args.sort_window}, rank 0 of {W}, prefetch=2",
             dict(sort_window=args.sort_window, shuffle="batches", shuffle_buffer=args.shuffle_buffer,
                  seed=0, rank=0, world_size=W, prefetch=2)),
        ]
        print("| configuration | batches | loop s | waited s | waited % | of which first batch s | "
              "plan s | padding | peak batches held | peak partitions held |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        results = []
        for name, opts in configs:
            r = train(ddf, args.limit, step, **opts)
            results.append((name, r))
            print(f"| {name} | {r['batches']:,} | {r['loop_s']:.2f} | {r['wait_s']:.3f} | "
                  f"{100 * r['wait_s'] / r['loop_s']:.2f} % | {r['first_s']:.3f} | {r['plan_s']:.2f} | {r['padding']:.3f} | "
                  f"{r['max_buffered']} | {r['max_partitions']} |", flush=True)
        print()
        pw, pn = with_plan.padding_ratio, without_plan.padding_ratio
        print(f"- padding ratio (BatchPlan.padding_ratio): {pn:.3f} without sort_window, "
              f"{pw:.3f} with sort_window={args.sort_window} ({pn / pw:.1f}x less padding); batches "
              f"{without_plan.n_batches:,} -> {with_plan.n_batches:,}, so an epoch takes "
              f"{with_plan.n_batches / without_plan.n_batches:.0%} of the steps")
        worst = max(100 * r["wait_s"] / r["loop_s"] for _, r in results)
        steady = max(100 * (r["wait_s"] - r["first_s"]) / r["loop_s"] for _, r in results)
        print(f"- worst waiting share: {worst:.2f} % of the loop time (target < 5 %): "
              f"{'met' if worst < 5 else 'NOT met'}; after the first batch: {steady:.2f} %")
        ranked = results[-2][1]
        print(f"- rank 0 of {W}: {ranked['batches']:,} batches, {ranked['padded_batches']} padding batch(es) "
              f"in the stream; it read {ranked['partitions']} of {args.files} partitions")


if __name__ == "__main__":
    main()
