"""Benchmark: ``cumbatch export`` against plain ``ddf.to_parquet`` of the same data (issue 3).

Both run in a fresh subprocess on the same Parquet dataset (the demo's token-count data:
``doc_id`` int64, ``source`` string, ``tokens`` int64), one after the other, in one run:

* ``to_parquet``: ``dd.read_parquet(INPUT).to_parquet(OUT)`` (no batching, one file per partition);
* ``export``: ``cumbatch export INPUT OUT --weight tokens --limit LIMIT`` (summary pass, scan,
  then one file per batch, manifest).

* the Dask idiom a user writes today for one folder per batch,
  ``ddf.assign(batch=ddf.tokens.cumsum() // limit).to_parquet(OUT, partition_on=["batch"])``,
  stopped after ``--idiom-cap`` seconds (default 120; 0 skips it): the folders written by then
  are reported.

Reported: wall time, rows/s, the throughput ratio (target >= 0.9, issue 14), and peak memory. Peak memory
is sampled (every 20 ms) as the RSS of the process, or with ``--cluster`` of each worker of a
LocalCluster with one thread per worker; it is compared with one partition's in-memory size
(target: peak above the idle baseline within 2x of a partition per worker thread).

    python benchmarks/bench_export.py                      # 20M rows, local threads
    python benchmarks/bench_export.py --cluster            # per-worker memory on a LocalCluster
    python benchmarks/bench_export.py --rows 2000000 --markdown docs/_bench_export.md
    python benchmarks/bench_export.py --rows 2000000 --fsync-cost   # also: export with fsync disabled
    python benchmarks/bench_export.py --url s3://bench/run --rows 200000 --parts 8   # an object store

``--file-floor`` adds two plain writes of as many files as the export wrote (each partition cut
into equal slices, each slice encoded by the export's own encoder, so with the same compression
and dictionaries, and written in place): one with no other work, and one that first reads the
weight column once, as the contract's two passes do (docs/design.md, "Out of core and at
scale": data needed twice is read again from the source, never persisted). Neither has a plan, batch ids, checksums, temporary names or
``syncfs``, so the export's own overhead is told from the cost of its file count and of its
second read.

``--url s3://BUCKET/PREFIX`` writes to an object store instead: a local S3 API server (moto's, started
in its own process on 127.0.0.1 unless ``AWS_ENDPOINT_URL`` names one) receives both
``dd.read_parquet(INPUT).to_parquet(URL/...)`` and the export (``to_files``, local input, Dask's
threaded scheduler, both in this process), one after the other; reported: wall time, rows/s, the
throughput ratio, the same ``to_parquet`` repartitioned to as many files as the export wrote
(what the file count alone costs), and the requests each made (counted in the server's request log), per data
file and by kind (PUT, GET, HEAD, LIST of the bucket, DELETE, POST: a batch delete).

``--fsync-cost`` adds a third command, the same export with ``os.fsync`` and ``syncfs`` replaced
by no-ops in its process, so that the cost of the durability the export pays (each task's files
made durable before its record, control files fsynced before their rename, the folder before the
manifest and ``_SUCCESS``) is measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

_NO_FSYNC = r"""
import os, sys
os.fsync = lambda fd: None  # the benchmark's no-durability comparison only
import dask_cumbatch.export.folder as folder
folder._syncfs = lambda path: True  # likewise: the task's one syncfs is skipped too
from dask_cumbatch.cli import main
raise SystemExit(main(sys.argv[1:]))
"""

_BASELINE = r"""
import dask.dataframe, pyarrow.parquet, dask_cumbatch.export, dask_cumbatch.cli
from dask_cumbatch.engine import backend_for
import numpy as np
backend_for("cpu").starts_to_ids(np.zeros(2, bool), 0)
import time, sys
print("ready", flush=True)
sys.stdin.readline()
"""

_PLAIN = r"""
import sys, dask, dask.dataframe as dd
sched = sys.argv[3]
if sched.startswith("tcp://"):
    from distributed import Client
    Client(sched)
else:
    dask.config.set(scheduler=sched)
dd.read_parquet(sys.argv[1]).to_parquet(sys.argv[2], write_index=False)
"""


_FILE_FLOOR = r"""
import os, sys, dask, dask.dataframe as dd, pandas as pd, pyarrow as pa
from dask_cumbatch.export.formats import encode
inp, out, sched, n_files, weight = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
if sched.startswith("tcp://"):
    from distributed import Client
    Client(sched)
else:
    dask.config.set(scheduler=sched)
ddf = dd.read_parquet(inp)
# The contract's first pass (docs/design.md, "Out of core and at scale": data needed twice is
# read twice): the weights.
if weight:
    ddf[weight].sum().compute()
os.makedirs(out)
def write(df, partition_info=None):
    k, table = partition_info["number"], pa.Table.from_pandas(df, preserve_index=False)
    per = max(1, -(-table.num_rows * ddf.npartitions // n_files))
    for i, a in enumerate(range(0, table.num_rows, per)):  # the export's encoder, written in place
        with open(os.path.join(out, f"part-{k:06d}-{i:06d}.parquet"), "wb") as f:
            f.write(encode(table.slice(a, per), "parquet"))
    return pd.Series([table.num_rows])
ddf.map_partitions(write, meta=pd.Series([0])).compute()
"""

FLOORS = ("plain files, as many", "weight pass + plain files")

_IDIOM = r"""
import sys, dask, dask.dataframe as dd
dask.config.set(scheduler=sys.argv[3])
ddf = dd.read_parquet(sys.argv[1])
ddf.assign(batch=ddf.tokens.cumsum() // int(sys.argv[4])).to_parquet(
    sys.argv[2], partition_on=["batch"], write_index=False)
"""


def run_idiom(inp, out, sched, limit, cap) -> tuple[float, int, bool]:
    """The Dask idiom, stopped after ``cap`` seconds: (seconds, batch folders written, finished)."""
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen([sys.executable, "-c", _IDIOM, inp, out, sched, str(limit)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.perf_counter()
    try:
        finished = proc.wait(timeout=cap) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        finished = False
    seconds = time.perf_counter() - t0
    folders = len([f for f in os.listdir(out) if f.startswith("batch=")]) if os.path.isdir(out) else 0
    return seconds, folders, finished


def _tree_rss(pid) -> int:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_sampled(cmd, client=None) -> tuple[float, int, dict]:
    """Run ``cmd``; return (seconds, peak RSS of its process tree, peak RSS per cluster worker)."""
    peak, workers = [0], {}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            if client is not None:
                try:
                    for k, v in client.run(_worker_rss).items():
                        workers[k] = max(workers.get(k, 0), v)
                except Exception:
                    pass
            time.sleep(0.02)

    t0 = time.perf_counter()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    if proc.returncode:
        raise SystemExit(f"{cmd[:4]} failed:\n{err}")
    return seconds, peak[0], workers


def _worker_rss():
    import psutil

    return psutil.Process().memory_info().rss


def _warm_worker_rss():
    """RSS of a worker after loading what the export's tasks load (libraries, numba kernels)."""
    import numpy as np
    import pandas as pd

    from dask_cumbatch import engine, options
    from dask_cumbatch.export.formats import encode, parquet_read

    df = pd.DataFrame({"tokens": np.arange(1, 10_000), "source": "x"})
    opts = options.BatchOptions.make("tokens", 1_000)
    engine.summarize(df, engine.BatchContext(opts, False))
    encode(parquet_read(encode(
        __import__("pyarrow").Table.from_pandas(df), "parquet")), "parquet")
    return _worker_rss()


def baseline_rss() -> int:
    """RSS of a process that imported everything an export imports (numba kernels loaded)."""
    proc = subprocess.Popen([sys.executable, "-c", _BASELINE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    proc.stdout.readline()
    rss = _tree_rss(proc.pid)
    proc.communicate("\n")
    return rss


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--parts", type=int, default=40, help="input files (partitions)")
    ap.add_argument("--limit", default="1000000", help="tokens per batch")
    ap.add_argument("--dir", help="work folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--cluster", action="store_true", help="LocalCluster, one thread per worker")
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs of each (best time kept)")
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--fsync-cost", action="store_true", help="also run the export without fsync")
    ap.add_argument("--file-floor", action="store_true",
                    help="also write as many plain files as the export wrote (no plan, no safety)")
    ap.add_argument("--idiom-cap", type=float, default=120.0,
                    help="seconds the Dask idiom (cumsum // limit, partition_on) may run (0: skip it)")
    ap.add_argument("--url", help="s3://BUCKET/PREFIX: benchmark against a local S3 API server instead")
    args = ap.parse_args(argv)
    if args.url:
        return object_store(args)

    import pandas as pd

    from dask_cumbatch.demo import write_dataset

    root = args.dir or tempfile.mkdtemp(prefix="cumbatch-bench-")
    inp = os.path.join(root, "input")
    t0 = time.perf_counter()
    write_dataset(inp, rows=args.rows, parts=args.parts)
    print(f"dataset: {args.rows:,} rows in {args.parts} files ({time.perf_counter() - t0:.1f} s to make)",
          file=sys.stderr)
    part_bytes = pd.read_parquet(os.path.join(inp, "part-000.parquet")).memory_usage(deep=True).sum()
    disk = sum(os.path.getsize(os.path.join(inp, f)) for f in os.listdir(inp))

    client = cluster = None
    sched = "threads"
    threads = os.cpu_count() or 1
    if args.cluster:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(threads_per_worker=1, processes=True, dashboard_address=None,
                               env={"ARROW_DEFAULT_MEMORY_POOL": "system"})
        client = Client(cluster)
        sched = cluster.scheduler_address
        threads = 1
        idle = max(client.run(_worker_rss).values())
        warm = max(client.run(_warm_worker_rss).values())
    base = baseline_rss()

    results = {"to_parquet": [], "export": []}
    if args.fsync_cost:
        results["export, no fsync"] = []
    if args.file_floor:
        results.update({name: [] for name in FLOORS})
    for r in range(args.repeat):
        for name in results:
            out = os.path.join(root, f"out-{name.replace(', ', '-').replace(' ', '-')}")
            shutil.rmtree(out, ignore_errors=True)
            export_args = ["export", inp, out, "-w", "tokens", "-l", args.limit, "--quiet", "--scheduler", sched]
            if name == "to_parquet":
                cmd = [sys.executable, "-c", _PLAIN, inp, out, sched]
            elif name == "export":
                cmd = [sys.executable, "-m", "dask_cumbatch", *export_args]
            elif name in FLOORS:
                written = len([f for f in os.listdir(os.path.join(root, "out-export")) if f.startswith("part-")])
                weight = "tokens" if name == FLOORS[1] else ""
                cmd = [sys.executable, "-c", _FILE_FLOOR, inp, out, sched, str(written), weight]
            else:
                cmd = [sys.executable, "-c", _NO_FSYNC, *export_args]
            results[name].append(run_sampled(cmd, client))
            print(f"run {r + 1}: {name:10s} {results[name][-1][0]:.2f} s", file=sys.stderr)
    n_files = len([f for f in os.listdir(os.path.join(root, "out-export")) if f.startswith("part-")])

    rows = []
    for name, runs in results.items():
        secs, peak, workers = min(runs, key=lambda x: x[0])
        row = {"command": name, "seconds": secs, "rows/s": args.rows / secs}
        if args.cluster:
            worker_peak = max(workers.values()) if workers else float("nan")
            row["peak per worker (MiB)"] = worker_peak / 2**20
            row["above idle / partition"] = (worker_peak - idle) / part_bytes
            row["above warmed-up / partition"] = (worker_peak - warm) / part_bytes
        else:
            row["peak RSS (MiB)"] = peak / 2**20
            row["above baseline / (partition x threads)"] = (peak - base) / (part_bytes * threads)
        rows.append(row)
    ratio = rows[0]["seconds"] / rows[1]["seconds"]
    table = pd.DataFrame(rows)
    header = (f"{args.rows:,} rows, {args.parts} partitions ({part_bytes / 2**20:.0f} MiB each in memory, "
              f"{disk / 2**20:.0f} MiB on disk), limit {args.limit} tokens -> {n_files:,} files; "
              f"{'LocalCluster, 1 thread/worker' if args.cluster else f'local threads ({threads})'}; "
              f"import baseline {base / 2**20:.0f} MiB"
              + (f"; idle worker {idle / 2**20:.0f} MiB, warmed-up worker {warm / 2**20:.0f} MiB"
                 if args.cluster else ""))
    text = (header + "\n\n" + table.to_markdown(index=False, floatfmt=",.2f") if _has_tabulate()
            else header + "\n\n" + table.to_string(index=False))
    text += f"\n\nexport throughput / to_parquet throughput = {ratio:.2f} (target >= 0.9)\n"
    if args.idiom_cap > 0:
        secs, folders, finished = run_idiom(inp, os.path.join(root, "out-idiom"), sched if not args.cluster else "threads",
                                            int(float(args.limit)), args.idiom_cap)
        text += (f"Dask idiom (cumsum // limit, partition_on=['batch']): "
                 + (f"finished in {secs:.1f} s, {folders:,} folders\n" if finished else
                    f"stopped after {secs:.0f} s with {folders:,} of about {n_files:,} batch folders written\n"))
    if args.fsync_cost:
        text += f"fsync cost: export {rows[1]['seconds']:.2f} s with fsync, {rows[2]['seconds']:.2f} s without\n"
    if args.file_floor:
        seconds = {row["command"]: row["seconds"] for row in rows}
        for name, what in zip(FLOORS, ("no plan or safety", "one read of the weights first, no safety")):
            floor = seconds[name]
            text += (f"{name}: {n_files:,} files ({what}) in {floor:.2f} s, "
                     f"{seconds['to_parquet'] / floor:.2f}x to_parquet's throughput; the export takes "
                     f"{seconds['export'] / floor:.2f}x their time\n")
    print(text)
    print(json.dumps({"ratio": ratio, "rows": rows}), file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if client is not None:
        client.close()
        cluster.close()
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


_MOTO = r"""
import logging, sys
from moto.server import ThreadedMotoServer
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]))
server.start()
print("ready", flush=True)
sys.stdin.read()
"""


class MotoServer:
    """moto's S3 server in its own process (not competing for this process's GIL); its request
    log (one line per request) is collected for counting."""

    def __init__(self):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-c", _MOTO, str(self.port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while self.proc.stdout.readline().strip() != "ready":
            if self.proc.poll() is not None:
                raise SystemExit("the moto server did not start (pip install 'moto[server]')")
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def logged(self) -> int:
        """How many requests the server logged so far (after a short wait for the last ones)."""
        time.sleep(0.5)
        return len(self.lines)

    def requests(self, start: int, stop: int) -> dict:
        """The requests logged between two :meth:`logged` counts, by kind (LIST: a GET of the
        bucket, i.e. a listing; POST: a batch delete)."""
        import re

        out = {}
        for line in self.lines[start:stop]:
            m = re.search(r'"(GET|PUT|HEAD|POST|DELETE) /([^/?\s]*)(/?)(\S*) HTTP', line)
            if m:
                method, _, slash, key = m.groups()
                kind = "LIST" if method == "GET" and not (slash and key) else method
                out[kind] = out.get(kind, 0) + 1
        return out

    def close(self):
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()


def object_store(args) -> int:
    """The ``--url`` benchmark: plain ``to_parquet`` and the export to the same local S3 server."""
    import dask
    import dask.dataframe as dd
    import pandas as pd

    from dask_cumbatch.demo import write_dataset
    from dask_cumbatch.export import to_files

    if not args.url.startswith("s3://") or len(args.url[5:].strip("/").split("/")) < 2:
        raise SystemExit("--url takes s3://BUCKET/PREFIX")
    bucket, prefix = args.url[5:].strip("/").split("/", 1)
    server = None
    if not os.environ.get("AWS_ENDPOINT_URL"):
        server = MotoServer()
        os.environ.update(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID="dummy",
                          AWS_SECRET_ACCESS_KEY="dummy", AWS_DEFAULT_REGION="us-east-1")
    import boto3

    client = boto3.client("s3")
    if bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=bucket)
    root = args.dir or tempfile.mkdtemp(prefix="cumbatch-bench-")
    inp = os.path.join(root, "input")
    write_dataset(inp, rows=args.rows, parts=args.parts)
    many = "to_parquet, as many files"  # repartitioned to the export's file count: the cost of the files
    runs = {"to_parquet": [], "export": [], many: []}
    for r in range(args.repeat):
        for name in runs:
            sub = f"{prefix}/{name.replace('_', '-').replace(', ', '-').replace(' ', '-')}-{r}"
            url = f"s3://{bucket}/{sub}"
            start = server.logged() if server else 0
            t0 = time.perf_counter()
            with dask.config.set(scheduler="threads"):
                if name == "to_parquet":
                    dd.read_parquet(inp).to_parquet(url, write_index=False)
                elif name == many:
                    n_files = runs["export"][-1][1]
                    dd.read_parquet(inp).repartition(npartitions=n_files).to_parquet(url, write_index=False)
                else:
                    to_files(inp, url, "tokens", args.limit, progress=False)
            seconds = time.perf_counter() - t0
            counts = server.requests(start, server.logged()) if server else {}
            files = sum(1 for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sub + "/")
                        for o in page.get("Contents", []) if o["Key"].rsplit("/", 1)[-1].startswith("part"))
            runs[name].append((seconds, files, counts))
            print(f"run {r + 1}: {name:10s} {seconds:.2f} s", file=sys.stderr)
    rows = []
    for name, results in runs.items():
        seconds, files, counts = min(results, key=lambda x: x[0])
        total = sum(counts.values())
        rows.append({"command": name, "seconds": seconds, "rows/s": args.rows / seconds, "data files": files,
                     "requests": total or float("nan"), "requests / data file": total / files if total else float("nan"),
                     **{k: counts.get(k, 0) for k in ("PUT", "GET", "HEAD", "LIST", "DELETE", "POST")}})
    table = pd.DataFrame(rows)
    header = (f"{args.rows:,} rows, {args.parts} partitions, limit {args.limit} tokens; local input, output "
              f"{args.url} on a local moto S3 server ({'its own process' if server else 'AWS_ENDPOINT_URL'}); "
              "Dask threaded scheduler")
    text = header + "\n\n" + (table.to_markdown(index=False, floatfmt=",.2f") if _has_tabulate()
                                else table.to_string(index=False))
    text += f"\n\nexport throughput / to_parquet throughput = {rows[0]['seconds'] / rows[1]['seconds']:.2f}\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if server:
        server.close()
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401

        return True
    except ImportError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
