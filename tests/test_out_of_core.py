"""Out of core and on a cluster: an export of a dataset 3x larger than the workers' memory
limit, through a scheduler address; the input read twice at most; same bytes on a cluster."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dask.callbacks import Callback

import dask_cumbatch  # noqa: F401
from dask_cumbatch.export import to_files
from conftest import tree

MEMORY_LIMIT = 512 * 2**20


def write_wide(folder, files, rows, seed=1):
    """Parquet files small on disk (dictionary-encoded strings), ~250 bytes a row in memory."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    variants = pa.array([chr(65 + i) * 230 for i in range(16)])
    for f in range(files):
        idx = pa.array(rng.integers(0, 16, rows).astype("int32"))
        table = pa.table({
            "id": np.arange(f * rows, (f + 1) * rows, dtype="int64"),
            "w": rng.integers(1, 1000, rows),
            "payload": variants.take(idx),
        })
        pq.write_table(table, os.path.join(folder, f"part-{f:03d}.parquet"))


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    # pyarrow's default mimalloc pool keeps freed memory; the system allocator returns it, which
    # is what a memory-tight worker wants (see docs/export.md)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, memory_limit=MEMORY_LIMIT, processes=True,
        dashboard_address=None, env={"ARROW_DEFAULT_MEMORY_POOL": "system"},
    ) as lc, distributed.Client(lc) as client:
        yield lc, client


def _rss():
    import psutil

    return psutil.Process().memory_info().rss


@pytest.mark.slow
def test_export_three_times_the_memory_limit_via_scheduler_address(tmp_path, cluster):
    lc, client = cluster
    inp, out = tmp_path / "in", tmp_path / "out"
    # partitions of 60,000 rows (< the core's 65,536-row summary head) and batches of ~40,000
    # rows: the scan never re-reads a partition (see test_input_is_read_at_most_twice_*)
    files, rows = 112, 60_000
    write_wide(inp, files, rows)
    one = pd.read_parquet(inp / "part-000.parquet")
    in_memory = one.memory_usage(deep=True).sum() * files
    assert in_memory >= 3 * MEMORY_LIMIT, in_memory / MEMORY_LIMIT

    workers = set(client.scheduler_info()["workers"])
    peak: dict = {}
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                for k, v in client.run(_rss).items():
                    peak[k] = max(peak.get(k, 0), v)
            except Exception:  # pragma: no cover - a worker going away shows below
                pass
            time.sleep(0.1)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dask_cumbatch", "export", str(inp), str(out), "-w", "w", "-l", "20M",
             "--scheduler", lc.scheduler_address],
            capture_output=True, text=True, timeout=540,
        )
    finally:
        stop.set()
        thread.join()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert set(client.scheduler_info()["workers"]) == workers  # no worker was killed or restarted
    assert peak and max(peak.values()) < MEMORY_LIMIT, {k: v / 2**20 for k, v in peak.items()}
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows"] == files * rows and all(b["total"] <= 20_000_000 for b in m["batches"])
    ids = pd.concat([pd.read_parquet(out / f, columns=["id"]) for f in dict.fromkeys(b["file"] for b in m["batches"])])
    assert (ids["id"].to_numpy() == np.arange(files * rows)).all()


def _cluster_and_local(tmp_path, lc, frames, weight, limit, **opts):
    """Export the same Parquet files through the cluster and on local threads."""
    inp = tmp_path / "in"
    inp.mkdir()
    for i, frame in enumerate(frames):
        frame.to_parquet(inp / f"p{i}.parquet", index=False)
    to_files(str(inp), str(tmp_path / "cluster"), weight, limit, scheduler=lc.scheduler_address,
             progress=False, **opts)
    with dask.config.set(scheduler="threads"):
        to_files(str(inp), str(tmp_path / "local"), weight, limit, scheduler="threads",
                 progress=False, **opts)
    return tree(tmp_path / "cluster"), tree(tmp_path / "local")


@pytest.mark.slow
def test_same_bytes_on_a_cluster_and_locally(tmp_path, cluster):
    rng = np.random.default_rng(0)
    frames = [pd.DataFrame({"w": rng.random(3000) * 10, "k": (np.arange(3000) // 700 + i) % 3})
              for i in range(5)]
    on_cluster, local = _cluster_and_local(tmp_path, cluster[0], frames, "w", 250.0, by="k",
                                           invalid="skip")
    assert on_cluster == local


@pytest.mark.slow
def test_token_counts_same_bytes_on_a_cluster_and_locally(tmp_path, cluster):
    # integer weights, ~200-row batches in 30,000-row partitions: the paths meet late, so on the
    # cluster the summaries carry chain tables, while locally they keep whole partitions
    rng = np.random.default_rng(1)
    frames = [pd.DataFrame({"tokens": rng.lognormal(4, 1, 30_000).astype(np.int64) + 1,
                            "doc": np.arange(30_000) + 30_000 * i}) for i in range(4)]
    on_cluster, local = _cluster_and_local(tmp_path, cluster[0], frames, "tokens", 20_000)
    assert on_cluster == local


class _CountReads(Callback):
    """Counts executed read tasks (a pass over all partitions, or a single re-read partition)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def _pretask(self, key, dsk, state):
        if isinstance(key, tuple) and str(key[0]).startswith("read_parquet"):
            self.total += 1


def _reads(tmp_path, limit, rows=5000):
    inp = tmp_path / "in"
    inp.mkdir(exist_ok=True)
    rng = np.random.default_rng(2)
    for i in range(12):
        w = np.clip(rng.lognormal(3.0, 1.0, rows).astype("int64"), 1, None)  # token-length-like
        pd.DataFrame({"w": w}).to_parquet(inp / f"p{i:02d}.parquet", index=False)
    counter = _CountReads()
    with counter, dask.config.set(scheduler="threads"):
        res = to_files(str(inp), str(tmp_path / f"o{limit}"), "w", limit, progress=False)
    assert res.rows == 12 * rows
    return counter.total, dd.read_parquet(str(inp)).npartitions


def test_input_is_read_at_most_twice(tmp_path):
    # once for the summaries, once to write the files; nothing is persisted
    reads, npart = _reads(tmp_path, 40_000)
    assert reads <= 2 * npart, (reads, npart)


def test_input_is_read_at_most_twice_mid_sized_batches(tmp_path):
    # ~90-row batches: the paths meet late, so this needs whole partitions in the summaries
    # (docs/design-decisions.md, "The head kept per partition")
    reads, npart = _reads(tmp_path, 3000, rows=12_000)
    assert reads <= 2 * npart, (reads, npart)


def test_summary_pass_reads_only_weight_and_key_columns(tmp_path):
    from dask_cumbatch import graph, options

    pd.DataFrame({"w": np.arange(6000) % 7, "k": np.arange(6000) // 900, "text": ["x" * 50] * 6000,
                  "other": np.arange(6000.0)}).to_parquet(tmp_path / "in.parquet", row_group_size=500)
    ddf = dd.read_parquet(tmp_path / "in.parquet", split_row_groups=True)
    opts = options.BatchOptions.make("w", 20, by="k")
    source = graph.SummarySource(ddf, opts)
    assert list(source.frame.columns) == ["w", "k"]
    assert source.frame.npartitions == ddf.optimize().npartitions == 12
    # a projection by the user: Dask fuses its partitions when a task is mapped over it
    narrow = dd.read_parquet(tmp_path / "in.parquet", split_row_groups=True)[["w", "k"]]
    fused = graph.SummarySource(narrow, opts)
    assert fused.frame.npartitions == len(narrow.map_partitions(len).compute()) < 12
    for i, frame in enumerate((ddf, narrow)):
        got = frame.cumbatch.ids("w", 20, by="k").compute()
        want = frame.compute().cumbatch.ids("w", 20, by="k")
        assert got.tolist() == want.tolist()
        res = to_files(frame, str(tmp_path / f"out{i}"), "w", 20, by="k", progress=False)
        assert res.rows == 6000
    with dask.config.set({"optimization.tune.active": False}):  # the user's own setting holds
        got = narrow.cumbatch.ids("w", 20, by="k").compute()
        assert got.tolist() == narrow.compute().cumbatch.ids("w", 20, by="k").tolist()
