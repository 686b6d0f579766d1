"""A quick, in-process measurement of batching speed against table size (runs in the docs build).

It batches the demo data (``dask_cumbatch.demo.make_frame``) at sizes from 10 thousand to
3 million rows, on a pandas frame (one partition) and on a Dask frame (partitions of 250,000
rows, local threaded scheduler), and draws rows per second against rows: a flat line means a
cost linear in the number of rows. It takes under 20 seconds (it measures no larger size once
10 seconds are spent). The full benchmark is ``benchmarks/bench_ids.py`` (docs/performance.md).
Run by hand with::

    python docs/perf_plot.py [OUTDIR]      # default: docs/_generated
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SIZES = [10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000]
PARTITION_ROWS = 250_000
LIMIT = 8192  # tokens per batch
BUDGET_S = 10.0  # measure no larger size once this much time is spent


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(sizes=SIZES, budget_s=BUDGET_S):
    """Rows/s of ``df.cumbatch.ids`` for pandas and Dask input: a list of dict rows."""
    import dask
    import dask.dataframe as dd

    import dask_cumbatch  # noqa: F401
    from dask_cumbatch.demo import make_frame

    make_frame(1000).cumbatch.ids("tokens", LIMIT)  # compile the kernels first
    results = []
    start = time.perf_counter()
    for n in sizes:
        if time.perf_counter() - start > budget_s:
            break
        df = make_frame(n, seed=1)
        repeat = 3 if n <= 1_000_000 else 2
        t_pd = _best(lambda: df.cumbatch.ids("tokens", LIMIT), repeat)
        ddf = dd.from_pandas(df, npartitions=max(1, n // PARTITION_ROWS), sort=False)
        with dask.config.set(scheduler="threads"):
            t_dd = _best(lambda: ddf.cumbatch.ids("tokens", LIMIT).compute(), repeat)
        results.append({"rows": n, "partitions": ddf.npartitions, "pandas_s": t_pd, "dask_s": t_dd})
    return results


def machine() -> str:
    import dask
    import numba
    import pandas

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
            f"pandas {pandas.__version__}, dask {dask.__version__}, numba {numba.__version__}")


def plot(results, path):
    rows = np.array([r["rows"] for r in results], dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for key, label in (("pandas_s", "pandas frame (one partition)"),
                       ("dask_s", f"Dask frame ({PARTITION_ROWS:,}-row partitions, threads)")):
        secs = np.array([r[key] for r in results])
        ax.plot(rows, rows / secs / 1e6, "o-", label=label)
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("rows")
    ax.set_ylabel("million rows / s")
    ax.set_title(f"df.cumbatch.ids('tokens', {LIMIT}) on the demo data", loc="left", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results) -> str:
    """The measurement as a Markdown table (included by docs/performance.md)."""
    lines = ["| rows | partitions | pandas s | pandas rows/s | Dask s | Dask rows/s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['partitions']} | {r['pandas_s']:.3f} | {r['rows'] / r['pandas_s']:,.0f} "
            f"| {r['dask_s']:.3f} | {r['rows'] / r['dask_s']:,.0f} |"
        )
    return "\n".join(lines) + f"\n\nMeasured while these pages were built, on: {machine()}.\n"


def main(outdir=None, only_missing=False):
    """Measure, then write ``perf-rows.png`` and ``perf-quick.md`` into ``outdir``; return what was written."""
    outdir = Path(outdir) if outdir else Path(__file__).parent / "_generated"
    outdir.mkdir(parents=True, exist_ok=True)
    png, md = outdir / "perf-rows.png", outdir / "perf-quick.md"
    if only_missing and png.exists() and md.exists():
        return []
    results = measure()
    plot(results, png)
    md.write_text(table(results))
    return [png, md]


if __name__ == "__main__":
    for p in main(sys.argv[1] if len(sys.argv) > 1 else None):
        print(p)
