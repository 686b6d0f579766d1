"""Benchmark: a followed export (``export --follow``) against one export of the same files (issue 28).

Input files of ``--rows`` rows (the demo's token-count data: ``doc_id``, ``source``, ``tokens``)
arrive in a folder every ``--every`` seconds for ``--duration`` seconds; each is written
beforehand into a staging folder and renamed in at its time, so an arrival costs nothing.
:func:`dask_cumbatch.export.follow` (``poll=--poll``, in this process, Dask's threaded
scheduler) keeps an export of the folder up to date. Once the last file has been exported, the
same files are exported once with :func:`~dask_cumbatch.export.to_files` into another folder,
in the same process, and the two folders' data files are compared byte for byte.

Reported:

* throughput, two ways, each against the one-shot export's rows per second (target ratio
  >= 0.8): (1) paced: the rows over the time the follower's appends ran (it waits for input the
  rest of the time; its idle listings, one per poll, are reported separately, seconds per
  listing measured at the end); (2) saturated: the same files arriving every ``--fast-every``
  seconds (default 0.02), faster than one append per file can follow, into a second follower:
  the rows over the time from the first arrival to the last commit, which is the rate the
  follower sustains (each append takes every file that arrived while the previous one ran).
* latency: for each input file, the time from its arrival (the rename) to the commit of the
  first manifest in which the batch holding its last row is closed (a later batch exists), so
  all its rows are readable by a following reader; p50, p99 and max over the files whose last
  batch closed (the last file's rows may stay in the open batch). Target p99 <= poll + 1 s.
* a timeline (``--record FILE.json``): arrivals and commits (time, rows, closed batches), which
  docs/figures.py draws as docs/_generated/follow-timeline.png.

    python benchmarks/bench_follow.py                          # 100,000 rows every 0.5 s for 60 s
    python benchmarks/bench_follow.py --duration 10 --rows 20000   # a quick run
    python benchmarks/bench_follow.py --record docs/_bench_follow.json --markdown docs/_bench_follow.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dask_cumbatch.demo import make_frame  # noqa: E402
from dask_cumbatch.export import follow, to_files  # noqa: E402
from dask_cumbatch.export.inputs import input_snapshot  # noqa: E402

WEIGHT = "tokens"


def stage_files(staging: str, count: int, rows: int) -> list:
    """Write the ``count`` input files into ``staging``; returns their names in arrival order."""
    os.makedirs(staging, exist_ok=True)
    names = []
    for i in range(count):
        name = f"in-{i:05d}.parquet"
        make_frame(rows, seed=28, first_id=i * rows).to_parquet(os.path.join(staging, name), index=False)
        names.append(name)
    return names


def produce(staging: str, inp: str, names: list, every: float, t0: float, arrivals: list) -> None:
    """Rename each staged file into ``inp`` at ``t0 + i * every``; note the arrival times."""
    for i, name in enumerate(names):
        delay = t0 + i * every - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        os.replace(os.path.join(staging, name), os.path.join(inp, name))
        arrivals.append(time.monotonic())


def run_phase(staging, inp, out, names, every, limit, poll, total):
    """Files renamed from ``staging`` into ``inp`` every ``every`` s while a follower exports them
    into ``out``; returns ``(arrivals, commits, appends' seconds)``."""
    os.makedirs(inp)
    arrivals, commits = [], []
    t0 = time.monotonic() + 0.5
    producer = threading.Thread(target=produce, args=(staging, inp, names, every, t0, arrivals))
    producer.start()
    busy = run_follower(inp, out, limit, poll, total, commits)
    producer.join()
    return arrivals, commits, busy


def run_follower(inp, out, limit, poll, total_rows, commits: list) -> float:
    """Follow ``inp`` until all ``total_rows`` are exported; returns the appends' total seconds."""
    stop = threading.Event()
    busy = [0.0]

    def on_append(result):
        commits.append({"t": time.monotonic(), "rows": result.rows, "batches": result.batches})
        busy[0] += result.seconds
        if result.rows >= total_rows:
            stop.set()

    follow(inp, out, WEIGHT, limit, poll=poll, stop=stop, on_append=on_append)
    return busy[0]


def last_row_batches(out: str, rows: int, count: int) -> np.ndarray:
    """The batch id of each input file's last row, read back from the export (rows in order)."""
    ids = pd.read_parquet(out, columns=["batch"])["batch"].to_numpy()
    return ids[np.arange(1, count + 1) * rows - 1]


def latencies(arrivals, commits, last_batches) -> list:
    """Seconds from each file's arrival to the first commit in which its last row's batch is closed."""
    out = []
    for arrived, b in zip(arrivals, last_batches):
        closed = [c["t"] for c in commits if c["t"] >= arrived and b <= c["batches"] - 2]
        if closed:
            out.append(closed[0] - arrived)
    return out


def data_files(folder: str) -> dict:
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))
            if not n.startswith(("_", "."))}


def listing_seconds(inp: str, repeat: int = 20) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        input_snapshot(inp)
    return (time.perf_counter() - t) / repeat


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000, help="rows per input file (default 100,000)")
    p.add_argument("--every", type=float, default=0.5, help="seconds between arrivals (default 0.5)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals (default 60)")
    p.add_argument("--poll", type=float, default=0.5, help="the follower's poll interval (default 0.5 s)")
    p.add_argument("--fast-every", type=float, default=0.02,
                   help="seconds between arrivals of the saturated run (default 0.02)")
    p.add_argument("--limit", type=int, default=4_194_304, help="tokens per batch (default 4 Mi)")
    p.add_argument("--workdir", help="where to write (default: a temporary folder, removed)")
    p.add_argument("--record", metavar="FILE.json", help="save the measurements and the timeline")
    p.add_argument("--markdown", metavar="FILE.md", help="save the table as Markdown")
    args = p.parse_args(argv)

    work = args.workdir or tempfile.mkdtemp(prefix="bench-follow-")
    staging, inp, out, once = (os.path.join(work, d) for d in ("staging", "in", "followed", "once"))
    staging2, inp2, out2 = (os.path.join(work, d) for d in ("staging-fast", "in-fast", "followed-fast"))
    for d in (staging, inp, out, once, staging2, inp2, out2):
        shutil.rmtree(d, ignore_errors=True)
    count = max(1, int(round(args.duration / args.every)))
    total = count * args.rows
    print(f"staging {count} files of {args.rows:,} rows ({total:,} rows) in {work}", flush=True)
    names = stage_files(staging, count, args.rows)

    arrivals, commits, busy = run_phase(staging, inp, out, names, args.every, args.limit, args.poll, total)
    follow_wall = commits[-1]["t"] - arrivals[0]
    t0 = arrivals[0]
    os.makedirs(staging2)
    for name in names:  # the same files again (hard links), for the saturated run
        os.link(os.path.join(inp, name), os.path.join(staging2, name))
    fast_arrivals, fast_commits, _ = run_phase(staging2, inp2, out2, names, args.fast_every, args.limit,
                                               args.poll, total)
    fast_wall = fast_commits[-1]["t"] - fast_arrivals[0]

    t = time.perf_counter()
    to_files(inp, once, WEIGHT, args.limit, progress=False)
    once_s = time.perf_counter() - t
    identical = data_files(out) == data_files(once) == data_files(out2)

    lat = np.array(latencies(arrivals, commits, last_row_batches(out, args.rows, count)))
    listing = listing_seconds(inp)
    follow_rate, once_rate, fast_rate = total / busy, total / once_s, total / fast_wall
    rows = [
        ("one export of the files (to_files)", f"{once_s:.2f}", f"{once_rate:,.0f}", "1.00"),
        (f"followed, paced: {len(commits)} appends (their time)", f"{busy:.2f}", f"{follow_rate:,.0f}",
         f"{follow_rate / once_rate:.2f}"),
        (f"followed, saturated: {len(fast_commits)} appends (first arrival to last commit)", f"{fast_wall:.2f}",
         f"{fast_rate:,.0f}", f"{fast_rate / once_rate:.2f}"),
    ]
    lines = [
        f"{count} files x {args.rows:,} rows arriving every {args.every:g} s (saturated run: {args.fast_every:g} s), poll {args.poll:g} s, "
        f"limit {args.limit:,} tokens; {platform.node()} ({os.cpu_count()} CPUs), Python {platform.python_version()}",
        "",
        "| what | seconds | rows/s | ratio |",
        "|---|---:|---:|---:|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        f"arrival to closed batches (latency), {len(lat)} of {count} files: p50 {np.percentile(lat, 50):.2f} s, "
        f"p99 {np.percentile(lat, 99):.2f} s, max {lat.max():.2f} s (target p99 <= poll + 1 = {args.poll + 1:g} s)",
        f"followed from the first arrival to the last commit: {follow_wall:.1f} s; one listing of the input "
        f"({count} files): {listing * 1000:.1f} ms; data files identical to the one export: {identical}",
    ]
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    if args.record:
        with open(args.record, "w") as f:
            json.dump({
                "rows_per_file": args.rows, "every": args.every, "poll": args.poll, "limit": args.limit,
                "files": count, "once_seconds": once_s, "follow_busy_seconds": busy, "ratio": follow_rate / once_rate,
                "fast_every": args.fast_every, "fast_seconds": fast_wall, "fast_ratio": fast_rate / once_rate,
                "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)), "identical": identical,
                "latencies": [float(x) for x in lat],
                "arrivals": [a - t0 for a in arrivals],
                "commits": [dict(c, t=c["t"] - t0) for c in commits],
                "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
                "date": time.strftime("%Y-%m-%d"),
            }, f, indent=1)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
