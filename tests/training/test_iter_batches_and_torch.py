"""Feeding training jobs: shuffled, sharded, prefetched token-budget batches.

What is proven here:
* the order is a function of (plan, seed, epoch, shuffle_buffer, world_size) only: the same
  across runs and across the threaded scheduler and a multi-process LocalCluster; epochs differ;
* the ranks partition the stream: every batch exactly once, minus ``dropped`` (drop_last) or
  plus ``padded`` repeats of the stream's first batches, and every rank the same count;
* memory is bounded by ``shuffle_buffer`` batches and ``prefetch + 1`` partitions (counters);
* ``sort_window`` + ``cost="padded"`` keeps every batch under the limit and cuts padding;
* ``multiple=8`` gives row counts that are multiples of 8 except each group's last, no row lost;
* the DataLoader-worker split (tested without torch) and the torch adapter (where installed).
"""
from __future__ import annotations

import collections
import pickle
import threading

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch import training
from dask_cumbatch.training import BatchIterator, TrainingOptions, buffer_shuffle, make_schedule

LIMIT = 4096


def lengths(n, seed=0, sigma=0.9):
    rng = np.random.default_rng(seed)
    return np.minimum(rng.lognormal(4.5, sigma, n).astype(np.int64) + 1, 2000)


def token_frame(n=24_000, nparts=6, seed=0, **extra):
    pdf = pd.DataFrame({"n_tokens": lengths(n, seed), "pos": np.arange(n, dtype=np.int64), **extra})
    return pdf, dd.from_pandas(pdf, npartitions=nparts)


@pytest.fixture(scope="module")
def tokens():
    return token_frame()


def run(it):
    """``[(batch_id, sorted row positions)]`` in yield order (pandas format)."""
    return [(b, tuple(f["pos"].tolist())) for b, f in it]


def reference_batches(pdf, limit=LIMIT, **opts):
    ids = pdf.cumbatch.ids("n_tokens", limit, **opts)
    return {int(b): tuple(g["pos"].tolist()) for b, g in pdf.assign(_b=ids).groupby("_b", sort=True)}


SHUFFLED = dict(cost="padded", shuffle="batches", seed=7, shuffle_buffer=16)


# ------------------------------------------------------------------------------ defaults


def test_defaults_unchanged_in_order_pandas_frames(tokens):
    pdf, ddf = tokens
    ref = reference_batches(pdf, cost="padded")
    with dask.config.set(scheduler="threads"):
        it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, cost="padded")
        got = run(it)
    assert [b for b, _ in got] == list(range(len(ref)))
    assert dict(got) == ref
    assert it.batches_yielded == len(ref) == it.n_batches == len(it)
    assert it.dropped == 0 and it.padded == 0 and it.max_buffered == 0
    assert it.wait_seconds > 0
    assert it.max_partitions <= 2  # prefetch=1: the one being split and one ahead


def test_defaults_pandas_input_and_batches_per_partition():
    pdf, _ = token_frame(3000, 1)
    got = run(pdf.cumbatch.iter_batches("n_tokens", LIMIT, batches_per_partition=3))
    assert dict(got) == reference_batches(pdf)
    assert [b for b, _ in got] == sorted(b for b, _ in got)


@pytest.mark.parametrize("derived", [False, True])
def test_parquet_input_streams_every_batch(tmp_path, derived):
    """The main use: batches streamed from Parquet files (where Dask may fuse partitions of a
    column-projected read: the plan and the read must agree on the partitioning)."""
    from dask_cumbatch.demo import write_dataset

    write_dataset(str(tmp_path), rows=20_000, parts=4)
    pdf = pd.read_parquet(str(tmp_path))
    ddf = dd.read_parquet(str(tmp_path))
    if derived:  # a weight computed from a column (truncated documents)
        pdf = pdf.assign(tokens=pdf.tokens.clip(upper=2048))
        ddf = ddf.assign(tokens=ddf.tokens.clip(upper=2048))
    ref = pdf.assign(b=pdf.cumbatch.ids("tokens", LIMIT, cost="padded"))
    ref = {int(b): tuple(g["doc_id"].tolist()) for b, g in ref.groupby("b")}
    with dask.config.set(scheduler="threads"):
        it = ddf.cumbatch.iter_batches("tokens", LIMIT, cost="padded", **{
            k: v for k, v in SHUFFLED.items() if k != "cost"})
        got = {b: tuple(f["doc_id"].tolist()) for b, f in it}
    assert got == ref


# ------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("world_size", [1, 3])
def test_same_seed_same_order_and_epochs_differ(tokens, world_size):
    _, ddf = tokens
    with dask.config.set(scheduler="threads"):
        def order(epoch, seed=7, rank=0):
            opts = dict(SHUFFLED, seed=seed)
            it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, epoch=epoch, rank=rank,
                                           world_size=world_size, **opts)
            return run(it)

        a, b = order(0), order(0)
        assert a == b
        assert [x for x, _ in order(1)] != [x for x, _ in a]
        assert [x for x, _ in order(0, seed=8)] != [x for x, _ in a]
        assert sorted(a) != a  # shuffled
        # the shuffled batches hold the same rows as the unshuffled ones
        ref = reference_batches(tokens[0], cost="padded")
        assert all(ref[bid] == rows for bid, rows in a)


def test_for_epoch_reuses_plan(tokens, monkeypatch):
    _, ddf = tokens
    with dask.config.set(scheduler="threads"):
        it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, epoch=0, **SHUFFLED)
        calls = []
        from dask_cumbatch.dask import summaries

        real = summaries.plan_partitions
        monkeypatch.setattr(summaries, "plan_partitions", lambda *a, **k: calls.append(1) or real(*a, **k))
        e1 = it.for_epoch(1)
        again = ddf.cumbatch.iter_batches("n_tokens", LIMIT, epoch=1, **SHUFFLED)
        assert run(e1) == run(again)
        assert calls == [1]  # only the second iter_batches planned


def test_schedule_depends_only_on_ranges_seed_epoch():
    ranges = [(0, 9), (10, 9), (10, 30), (31, 33)]  # an empty output partition in between
    opts = TrainingOptions.make(shuffle="batches", seed=3, shuffle_buffer=5, epoch=2)
    a = make_schedule(ranges, opts).order
    b = make_schedule(list(ranges), opts).order
    assert a.tolist() == b.tolist() and sorted(a.tolist()) == list(range(34))
    assert make_schedule(ranges, opts.with_(epoch=3)).order.tolist() != a.tolist()
    # pinned: numpy's PCG64 stream is platform-independent, so is this order; a failure
    # here means numpy changed Generator.integers/permutation (docs/training.md says so)
    assert a.tolist() == [2, 3, 1, 4, 0, 9, 6, 31, 32, 33, 10, 5, 12, 7, 13, 11, 16, 17, 19, 20,
                          18, 8, 21, 15, 14, 22, 24, 26, 29, 30, 27, 25, 23, 28]
    assert buffer_shuffle(np.arange(10), 3, np.random.default_rng([1, 0])).tolist() == \
        [1, 3, 2, 5, 0, 7, 6, 8, 4, 9]


def test_buffer_shuffle_is_a_bounded_delay_permutation():
    ids = np.arange(1000)
    out = buffer_shuffle(ids, 10, np.random.default_rng(0))
    assert sorted(out.tolist()) == ids.tolist()
    # an item is emitted no earlier than (its arrival - buffer): at most `buffer` early
    pos = np.empty(1000, dtype=int)
    pos[out] = np.arange(1000)
    assert (pos >= ids - 10).all()
    assert buffer_shuffle(ids, 1, np.random.default_rng(0)).tolist() == ids.tolist()
    assert sorted(buffer_shuffle(ids[:5], 50, np.random.default_rng(0)).tolist()) == list(range(5))


# ------------------------------------------------------------------------------ sharding


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_partition_the_stream(world_size, drop_last):
    pdf, ddf = token_frame(6000, 4, seed=world_size)
    ref = reference_batches(pdf, cost="padded")
    n = len(ref)
    with dask.config.set(scheduler="threads"):
        iters = [ddf.cumbatch.iter_batches("n_tokens", LIMIT, rank=r, world_size=world_size,
                                           drop_last=drop_last, **SHUFFLED) for r in range(world_size)]
        per_rank = [run(it) for it in iters]
    counts = {len(x) for x in per_rank}
    assert len(counts) == 1, counts  # every rank the same number of steps
    it = iters[0]
    got = collections.Counter(b for x in per_rank for b, _ in x)
    for x in per_rank:
        assert all(ref[b] == rows for b, rows in x)
    if drop_last:
        assert it.dropped == n % world_size == len(it.dropped_ids) and it.padded == 0
        assert set(got) | set(it.dropped_ids.tolist()) == set(range(n))
        assert not set(got) & set(it.dropped_ids.tolist())
        assert max(got.values()) == 1
        assert counts == {n // world_size}
    else:
        assert it.padded == (-n) % world_size and it.dropped == 0
        assert set(got) == set(range(n))
        assert sum(got.values()) == n + it.padded
        repeats = sorted(b for b, c in got.items() if c == 2)
        assert repeats == sorted(it.schedule.order[: it.padded].tolist())  # the stream's first
        assert counts == {-(-n // world_size)}
    # interleaving the ranks gives back the single stream (rank r = positions r, r+W, ...)
    stream = [x[i][0] for i in range(min(counts)) for x in per_rank]
    assert stream[: min(n, len(stream))] == it.schedule.order[: len(stream)].tolist()[: min(n, len(stream))]


def test_more_ranks_than_batches():
    pdf = pd.DataFrame({"n_tokens": [3000, 3000, 3000], "pos": [0, 1, 2]})
    its = [pdf.cumbatch.iter_batches("n_tokens", LIMIT, rank=r, world_size=5) for r in range(5)]
    got = [[b for b, _ in it] for it in its]
    assert all(len(g) == 1 for g in got) and its[0].padded == 2
    assert sorted(b for g in got for b in g) == [0, 0, 1, 1, 2]
    its = [pdf.cumbatch.iter_batches("n_tokens", LIMIT, rank=r, world_size=5, drop_last=True) for r in range(5)]
    assert all(list(it) == [] for it in its) and its[0].dropped == 3


def test_empty_input():
    pdf = pd.DataFrame({"n_tokens": np.array([], dtype=np.int64)})
    it = pdf.cumbatch.iter_batches("n_tokens", LIMIT, shuffle="batches", world_size=2, rank=1)
    assert list(it) == [] and it.n_batches == 0 and len(it) == 0


@pytest.mark.parametrize("n_workers", [2, 3, 5])
def test_worker_split_without_torch(tokens, n_workers):
    """DataLoader workers of one rank: disjoint partitions, together exactly the rank's batches."""
    pdf, ddf = tokens
    with dask.config.set(scheduler="threads"):
        it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, rank=1, world_size=2, batches_per_partition=20,
                                       **SHUFFLED)
        rank_order = [b for b, _ in run(it)]
        workers = [BatchIterator(it.source, it.options, (j, n_workers)) for j in range(n_workers)]
        outs = [[b for b, _ in run(w)] for w in workers]
    parts = [set(w.schedule.needed) for w in workers]
    assert all(not (parts[i] & parts[j]) for i in range(n_workers) for j in range(i))
    assert sorted(b for o in outs for b in o) == sorted(rank_order)
    pos = {b: i for i, b in enumerate(rank_order[: len(rank_order) - it.padded])}
    for o in outs:  # each worker keeps the rank's order
        reg = [b for b in o if b in pos][: len(o) - len(workers[0].schedule.pads)]
        assert [pos[b] for b in reg] == sorted(pos[b] for b in reg)
    assert sum(len(w) for w in workers) == len(it) == it.batches_per_rank
    assert sum(w.partitions_computed for w in workers) == len(set().union(*parts))


# ------------------------------------------------------------------------------ memory


@pytest.mark.parametrize("buffer,prefetch,bpp", [(1, 0, None), (8, 1, None), (32, 2, 5), (200, 3, 40)])
def test_memory_bounded_by_buffer_and_prefetch(tokens, buffer, prefetch, bpp):
    _, ddf = tokens
    with dask.config.set(scheduler="threads"):
        it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, cost="padded", shuffle="batches", seed=1,
                                       shuffle_buffer=buffer, prefetch=prefetch,
                                       batches_per_partition=bpp, world_size=2, rank=0)
        for _ in it:
            pass
    assert it.max_buffered <= buffer
    assert it.max_partitions <= prefetch + 1
    assert it.max_ready <= training.READY_BATCHES
    assert it.partitions_computed == len(it.schedule.needed)
    if buffer >= 8:
        assert it.max_buffered >= 2  # the counter does count: a shuffle holds batches
    print(f"buffer={buffer} prefetch={prefetch}: max held {it.max_buffered} batches, "
          f"{it.max_partitions} partitions of {it.source.collection.npartitions}")


def test_close_stops_prefetch(tokens):
    _, ddf = tokens
    with dask.config.set(scheduler="threads"):
        it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, prefetch=2)
        next(it)
        it.close()
        assert list(it) == []
    for t in threading.enumerate():
        if t.name.startswith("cumbatch-prefetch"):
            t.join(timeout=10)
    assert not [t for t in threading.enumerate() if t.name.startswith("cumbatch-prefetch")]


def test_abandoned_iterator_stops_its_threads(tokens):
    import gc
    import time

    _, ddf = tokens
    with dask.config.set(scheduler="threads"):
        it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, **SHUFFLED)
        next(it)
        del it
        gc.collect()
        deadline = time.time() + 20
        while time.time() < deadline and any(t.name == "cumbatch-batches" for t in threading.enumerate()):
            time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "cumbatch-batches"]


@pytest.mark.parametrize("prefetch", [0, 1])
def test_errors_in_background_reach_the_caller(tokens, prefetch):
    _, ddf = tokens
    with dask.config.set(scheduler="threads"):
        it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, prefetch=prefetch)
        real = it.source.partition
        lo = it.source.ranges[1][0]

        def changed(k):  # the data changed after the plan: batch `lo` is gone
            frame = real(k)
            return frame[frame["batch"] != lo] if k == 1 else frame

        it.source.partition = changed
        with pytest.raises(RuntimeError, match="did the data or its partitioning change"):
            for _ in it:
                pass
        assert list(it) == []  # stays closed


@pytest.mark.parametrize("fmt", ["pandas", "numpy", "arrow"])
def test_detached_batches_own_their_memory(fmt):
    pdf, _ = token_frame(2000, 1, s=[f"r{i}" for i in range(2000)])
    part = training.FORMAT_TYPES[fmt]().partition(pdf)
    kind = training.FORMAT_TYPES[fmt]()
    batch = kind.detach(kind.slice(part, 10, 20))
    if fmt == "pandas":
        pdf = pdf.astype({"s": "string[pyarrow]"})
        part = kind.partition(pdf)
        batch = kind.detach(kind.slice(part, 10, 20))
        assert not np.shares_memory(batch["pos"].to_numpy(), pdf["pos"].to_numpy())
        assert batch["s"].array.__arrow_array__().nbytes < pdf["s"].array.__arrow_array__().nbytes / 20
        assert batch.dtypes.equals(pdf.dtypes) and batch.index.tolist() == list(range(10, 20))
        assert batch["pos"].tolist() == list(range(10, 20))
    elif fmt == "numpy":
        assert all(v.base is None for v in batch.values()) and batch["pos"].tolist() == list(range(10, 20))
    else:
        assert batch.get_total_buffer_size() < part.get_total_buffer_size() / 20
        assert batch.column("pos").to_pylist() == list(range(10, 20))


# ------------------------------------------------------------------------------ length grouping


def test_sort_window_respects_limit_and_cuts_padding():
    n = 40_000
    pdf = pd.DataFrame({"n_tokens": lengths(n, seed=5, sigma=1.0), "pos": np.arange(n)})
    ddf = dd.from_pandas(pdf, npartitions=4)
    with dask.config.set(scheduler="threads"):
        plain = ddf.cumbatch.plan("n_tokens", LIMIT, cost="padded")
        grouped = ddf.cumbatch.plan("n_tokens", LIMIT, cost="padded", sort_window=2048)
        it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, cost="padded", sort_window=2048, **{
            k: v for k, v in SHUFFLED.items() if k != "cost"})
        seen, padded, real = set(), 0, 0
        for b, f in it:
            w = f["n_tokens"].to_numpy()
            assert len(w) == 1 or w.max() * len(w) <= LIMIT
            padded += int(w.max()) * len(w)
            real += int(w.sum())
            seen.update(f["pos"].tolist())
    assert seen == set(range(n))
    assert grouped.padding_ratio < plain.padding_ratio
    assert padded / real - 1 == pytest.approx(grouped.padding_ratio)
    print(f"\npadding ratio on lognormal lengths: {plain.padding_ratio:.3f} without a window, "
          f"{grouped.padding_ratio:.3f} with sort_window=2048 "
          f"({plain.padding_ratio / grouped.padding_ratio:.1f}x less padding; "
          f"{plain.n_batches} -> {grouped.n_batches} batches)")


@pytest.mark.parametrize("cap", [455, 2000])
def test_multiple_of_8_keeps_every_row(cap):
    """Row counts are multiples of 8 except each group's last, and (the cut-back rule of
    docs/design.md, "Row multiple", applies to batches of >= 8 rows) a batch closed with fewer
    than 8 rows because the next row would not fit: with lengths <= 455, nine rows always fit in 4096, so none."""
    n = 12_000
    pdf = pd.DataFrame({"n_tokens": np.minimum(lengths(n, seed=3), cap), "pos": np.arange(n),
                        "lang": np.repeat(["de", "en", "fr", "ja"], n // 4)})
    ddf = dd.from_pandas(pdf, npartitions=5)
    with dask.config.set(scheduler="threads"):
        it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, cost="padded", multiple=8, by="lang",
                                       sort_window=512, shuffle="batches", seed=11)
        batches = {b: f for b, f in it}
    rows = pd.concat(batches.values())
    assert sorted(rows["pos"].tolist()) == list(range(n))  # no row lost, none twice
    last_of_group = {max(b for b, f in batches.items() if f["lang"].iloc[0] == g) for g in ("de", "en", "fr", "ja")}
    odd = []
    for b, f in batches.items():
        assert f["lang"].nunique() == 1
        w = f["n_tokens"].to_numpy()
        assert len(w) == 1 or w.max() * len(w) <= LIMIT
        if b not in last_of_group and len(f) % 8:
            odd.append(b)
            assert len(f) < 8  # never cut back: too few rows to make a multiple
    if cap == 455:
        assert not odd
    print(f"\nmultiple=8, lengths <= {cap}: {len(batches)} batches, {len(odd)} with < 8 rows "
          "because the next row did not fit")


# ------------------------------------------------------------------------------ formats


def test_formats_numpy_and_arrow(tokens):
    pa = pytest.importorskip("pyarrow")
    pdf, _ = token_frame(2000, 2, s=[f"r{i}" for i in range(2000)])
    ref = reference_batches(pdf)
    for b, d in pdf.cumbatch.iter_batches("n_tokens", LIMIT, format="numpy"):
        assert set(d) == {"n_tokens", "pos", "s", "batch"}
        assert isinstance(d["pos"], np.ndarray) and tuple(d["pos"].tolist()) == ref[b]
        assert (d["batch"] == b).all()
    for b, t in pdf.cumbatch.iter_batches("n_tokens", LIMIT, format="arrow", shuffle=True):
        assert isinstance(t, pa.Table) and tuple(t.column("pos").to_pylist()) == ref[b]


def test_format_errors_before_any_work(monkeypatch):
    pdf = pd.DataFrame({"n_tokens": [1, 2]})
    with pytest.raises(ValueError, match="format="):
        pdf.cumbatch.iter_batches("n_tokens", 10, format="jax")
    import builtins

    real_import = builtins.__import__

    def no_gpu_libs(name, *a, **k):
        if name in ("cupy", "torch"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_gpu_libs)
    with pytest.raises(ImportError, match="pip install 'dask-cumbatch\\[gpu\\]'"):
        pdf.cumbatch.iter_batches("n_tokens", 10, format="cupy")
    with pytest.raises(ImportError, match="pip install torch"):
        pdf.cumbatch.iter_batches("n_tokens", 10, format="torch")


@pytest.mark.parametrize("kw,err", [
    (dict(rank=2, world_size=2), ValueError), (dict(world_size=0), ValueError),
    (dict(shuffle="rows"), ValueError), (dict(shuffle_buffer=0), ValueError),
    (dict(seed=-1), ValueError), (dict(epoch=1.5), TypeError), (dict(prefetch=-1), ValueError),
    (dict(drop_last="yes"), TypeError), (dict(batches_per_partition=0), ValueError),
])
def test_invalid_training_options_fail_before_reading(kw, err):
    def boom(df):
        raise AssertionError("data was read")

    pdf = pd.DataFrame({"n_tokens": [1, 2, 3]})
    ddf = dd.from_pandas(pdf, npartitions=1).map_partitions(boom, meta=pdf.iloc[:0])
    with pytest.raises(err):
        ddf.cumbatch.iter_batches("n_tokens", 10, **kw)


def test_torch_format_from_iter_batches():
    torch = pytest.importorskip("torch")
    pdf, _ = token_frame(3000, 1, s=[f"r{i}" for i in range(3000)])
    ref = reference_batches(pdf)
    it = pdf.cumbatch.iter_batches("n_tokens", LIMIT, format="torch", shuffle=True, seed=2)
    for b, d in it:
        assert isinstance(d["pos"], torch.Tensor) and d["pos"].dtype == torch.int64
        assert isinstance(d["s"], np.ndarray)  # strings stay NumPy
        assert tuple(d["pos"].tolist()) == ref[b]
        d["pos"] += 1  # writable, owns its memory: no warning, no effect on later batches


# ------------------------------------------------------------------------------ distributed


def test_threaded_and_distributed_give_the_same_stream(tokens):
    distributed = pytest.importorskip("distributed")
    _, ddf = tokens
    configs = [dict(rank=r, world_size=3, epoch=e, drop_last=d)
               for r, e, d in [(0, 0, False), (2, 0, False), (1, 4, True)]]
    with dask.config.set(scheduler="threads"):
        threaded = [run(ddf.cumbatch.iter_batches("n_tokens", LIMIT, sort_window=300, **SHUFFLED, **c))
                    for c in configs]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:  # the default scheduler while open
        assert dask.base.get_scheduler() == client.get
        dist = [run(ddf.cumbatch.iter_batches("n_tokens", LIMIT, sort_window=300, **SHUFFLED, **c))
                for c in configs]
    assert dist == threaded


# ------------------------------------------------------------------------------ torch adapter


def test_torch_module_imports_without_torch(monkeypatch):
    import dask_cumbatch.torch as tmod

    monkeypatch.setattr(tmod, "torch", None)
    with pytest.raises(ImportError, match="needs PyTorch"):
        tmod.CumbatchIterableDataset(pd.DataFrame({"n_tokens": [1]}), "n_tokens", 10)
    assert tmod.worker_split(None) == (0, 1)
    info = collections.namedtuple("WorkerInfo", "id num_workers")(2, 4)
    assert tmod.worker_split(info) == (2, 4)
    assert tmod.distributed_rank_world(1, 4) == (1, 4)
    assert tmod.distributed_rank_world() == (0, 1)


def test_source_pickles_for_spawned_workers(tokens):
    _, ddf = tokens
    it = ddf.cumbatch.iter_batches("n_tokens", LIMIT, **SHUFFLED)
    clone = pickle.loads(pickle.dumps(it.source))
    with dask.config.set(scheduler="threads"):
        assert run(BatchIterator(clone, it.options)) == run(it)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_torch_dataset_splits_ranks_and_workers(num_workers):
    torch = pytest.importorskip("torch")
    from dask_cumbatch.torch import CumbatchIterableDataset

    pdf, ddf = token_frame(8000, 4)
    ref = reference_batches(pdf, cost="padded")
    world = 2
    seen = collections.Counter()
    lens = set()
    for rank in range(world):
        ds = CumbatchIterableDataset(ddf, "n_tokens", LIMIT, rank=rank, world_size=world,
                                     batches_per_partition=10, **SHUFFLED)
        ds.set_epoch(1)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers)
        got = list(loader)
        lens.add(len(got))
        assert len(got) == len(ds)
        for batch in got:
            assert isinstance(batch["n_tokens"], torch.Tensor)
            b = int(batch["batch"][0])
            assert tuple(batch["pos"].tolist()) == ref[b]
            seen[b] += 1
    assert len(lens) == 1
    assert set(seen) == set(ref) and sum(seen.values()) == len(ref) + ds.padded
