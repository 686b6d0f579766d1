"""Exactness on a real multi-process cluster (dask.distributed LocalCluster).

The same ids as the sequential reference, and as the threaded scheduler, when partitions are
computed in other processes (summaries are pickled, the scan runs on a worker).
"""
from __future__ import annotations

import math

import dask
import numpy as np
import pandas as pd
import pytest

from conftest import ids_list, make_ddf
from reference import reference_ids

distributed = pytest.importorskip("distributed")

import dask_cumbatch  # noqa: E402,F401


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=40,
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


CASES = [
    # (name, weights, partition sizes, limit, options)
    ("greedy-floats-one-row-parts", [0.1, 0.2, 0.3, 0.7, 1 / 3] * 40, [1] * 50 + [0, 0] + [150],
     1.0, dict()),
    ("fill-padded-ints", list(np.random.default_rng(1).integers(0, 9, 2000)), [400] * 5, 20,
     dict(mode="fill", cost="padded")),
    ("floor-ints-empty-parts", list(np.random.default_rng(2).integers(0, 50, 1000)),
     [0, 500, 0, 1, 499, 0], 333, dict(mode="floor")),
    ("greedy-multiple-maxrows", [1] * 3000, [997, 1003, 1000], 13,
     dict(multiple=4, max_rows=10)),
    ("constant-floats-fill", [0.1] * 5000, [1250] * 4, 0.7, dict(mode="fill")),
    ("spanning-batch", list(np.random.default_rng(3).random(3000)), [30] * 100, 400.0, dict()),
    # floor's running-sum total check, summary and finish on worker processes
    ("floor-floats-running-total", list(np.random.default_rng(4).random(2000) * 3), [250] * 8, 7.3,
     dict(mode="floor")),
]


def _run(ddf, limit, opts, scheduler):
    # build and compute under the scheduler: any eager pass (summaries) runs there too
    with dask.config.set(scheduler=scheduler):
        res = ddf.cumbatch.ids("w", limit, **opts)
        return ids_list(res.compute())


@pytest.mark.parametrize("name,w,sizes,limit,opts", CASES, ids=[c[0] for c in CASES])
def test_distributed_equals_reference_and_threads(client, name, w, sizes, limit, opts):
    w = [x.item() if hasattr(x, "item") else x for x in w]
    pdf, ddf = make_ddf(w, sizes)
    want = reference_ids(w, limit, **opts)
    got_dist = _run(ddf, limit, opts, client)
    got_threads = _run(ddf, limit, opts, "threads")
    assert got_dist == want
    assert got_threads == got_dist


def test_distributed_by_and_skip(client):
    rng = np.random.default_rng(4)
    n = 1200
    w = rng.random(n).tolist()
    for i in rng.choice(n, 30, replace=False):
        w[i] = math.nan
    keys = sorted(rng.choice(["a", "b", "c", "d"], n).tolist())
    pdf, ddf = make_ddf(w, [300, 0, 1, 299, 600], keys=keys)
    keep = [not math.isnan(x) for x in w]
    it = iter(reference_ids([x for x, ok in zip(w, keep) if ok], 5.0,
                            keys=[k for k, ok in zip(keys, keep) if ok]))
    want = [next(it) if ok else None for ok in keep]
    opts = dict(by="k", invalid="skip")
    assert _run(ddf, 5.0, opts, client) == want
    assert _run(ddf, 5.0, opts, "threads") == want


def test_distributed_repartition_and_plan(client):
    rng = np.random.default_rng(5)
    w = rng.integers(0, 20, 2000).tolist()
    pdf, ddf = make_ddf(w, [500, 500, 0, 1000])
    want = reference_ids(w, 57, mode="fill")
    with dask.config.set(scheduler=client):
        out = ddf.cumbatch.repartition("w", 57, mode="fill", batches_per_partition=5)
        parts = dask.compute(*out.to_delayed())
    owner = {}
    for k, part in enumerate(parts):
        for b in part["batch"].unique().tolist():
            assert b not in owner
            owner[b] = k
        assert part["batch"].nunique() <= 5
    whole = pd.concat(parts)
    assert whole["batch"].tolist() == want
    pd.testing.assert_frame_equal(whole[pdf.columns], pdf)
    with dask.config.set(scheduler=client):
        plan = ddf.cumbatch.plan("w", 57, mode="fill")
    assert plan.n_batches == max(want) + 1
    assert plan.batches["rows"].tolist() == np.bincount(want).tolist()


def test_distributed_errors_raise(client):
    pdf, ddf = make_ddf([1.0, 2.0, math.inf, 1.0], [2, 2])
    with pytest.raises(ValueError, match="'w'"):
        _run(ddf, 5, {}, client)
    pdf, ddf = make_ddf([2**62, 2**62, 1], [1, 1, 1])
    with pytest.raises((ValueError, OverflowError)):
        _run(ddf, 10, dict(mode="floor"), client)


def _read_parquet_part(path):
    return pd.read_parquet(path)


@pytest.mark.parametrize("mode", ["fill", "floor"])  # floor: the running-sum total check
def test_distributed_input_changed_between_passes_raises(client, tmp_path, mode):
    # worker processes read the files; a rewrite between the passes fails the finish on a
    # worker, and the error reaches the client with its partition number
    from dask_cumbatch import InputChangedError

    import dask.dataframe as dd

    paths = []
    for i, w in enumerate([[3, 3, 3], [3, 3, 3], [3, 3, 3]]):
        paths.append(str(tmp_path / f"part-{i}.parquet"))
        pd.DataFrame({"w": w}).to_parquet(paths[-1])
    ddf = dd.from_map(_read_parquet_part, paths, meta=pd.DataFrame({"w": pd.Series([], dtype="int64")}))
    with dask.config.set(scheduler=client):
        ids = ddf.cumbatch.ids("w", 6, mode=mode)
        assert ids.compute().tolist() == reference_ids([3] * 9, 6, mode=mode)
        pd.DataFrame({"w": [3, 5, 3]}).to_parquet(paths[2])
        _wait_until_forgotten(client)  # else a loaded cluster may hand back the first read
        with pytest.raises(InputChangedError, match="partition 2 changed") as err:
            ids.compute()
    assert err.value.partition == 2


def _scheduler_task_count(dask_scheduler):
    return len(dask_scheduler.tasks)


def _wait_until_forgotten(client, timeout=30.0):
    """Wait until the scheduler holds no task (the results of earlier computations released)."""
    import time

    deadline = time.monotonic() + timeout
    while client.run_on_scheduler(_scheduler_task_count) and time.monotonic() < deadline:
        time.sleep(0.05)


def _keep_two_flags():
    import numpy as np

    from dask_cumbatch.engine import kept

    return kept.keep(np.zeros(2, dtype=bool))


def test_workers_keep_no_start_flags(client):
    # a worker's memory is the cluster's: the summary's start flags are kept only outside workers
    assert client.submit(_keep_two_flags, pure=False).result() is None
    assert _keep_two_flags() is not None


def test_distributed_fat_summary_tasks_and_persisted_frames(client):
    # 600 partitions: the summary pass runs them two to a task on the workers (slices of the
    # in-memory column, or each partition's own tasks where the column is computed); a frame
    # persisted on the cluster (its partitions are results held there) is read as it is
    import dask.dataframe as dd

    w = np.random.default_rng(9).integers(0, 9, 1800).tolist()
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=600)
    computed = ddf.assign(w=ddf.w + 0)  # not one in-memory column: each partition's own tasks
    for mode in ("greedy", "floor"):
        assert _run(ddf, 20, dict(mode=mode), client) == reference_ids(w, 20, mode=mode)
        assert _run(computed, 20, dict(mode=mode), client) == reference_ids(w, 20, mode=mode)
    persisted = client.persist(dd.from_pandas(pd.DataFrame({"w": w}), npartitions=12))
    assert _run(persisted, 20, {}, client) == reference_ids(w, 20)
