"""The following reader: follow_batches and CumbatchFollowDataset over real
export folders on disk, appended to while they are read."""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from dask_cumbatch.export import ExportError, follow_batches, to_files

LIMIT = 7
READERS = {"parquet": pd.read_parquet, "csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True)}


def frame(rows: int, first: int = 0, seed: int = 0) -> pd.DataFrame:
    """``rows`` rows of weights 1..5 and a running row number ``v`` from ``first``."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"w": rng.integers(1, 6, rows), "v": np.arange(first, first + rows)})


def write_input(folder, k: int, rows: int, first: int) -> None:
    os.makedirs(folder, exist_ok=True)
    frame(rows, first, seed=k).to_parquet(os.path.join(folder, f"in-{k:04d}.parquet"), index=False)


def export_rows(out, fmt: str) -> pd.DataFrame:
    """Every row of the export in ``out``, read straight from its data files with pandas."""
    names = sorted(n for n in os.listdir(out) if n.startswith("part-"))
    return pd.concat([READERS[fmt](os.path.join(out, n)) for n in names], ignore_index=True)


def n_batches(out) -> int:
    with open(os.path.join(out, "_manifest.json")) as f:
        return len(json.load(f)["batches"])


def joined(pairs) -> pd.DataFrame:
    return pd.concat([b for _, b in pairs], ignore_index=True) if pairs else pd.DataFrame()


def closed_rows(out, fmt: str) -> pd.DataFrame:
    rows = export_rows(out, fmt)
    return rows[rows["batch"] < n_batches(out) - 1].reset_index(drop=True)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
@pytest.mark.parametrize("bpf", [1, 3])
def test_a_finished_export_yields_every_batch_but_the_last(tmp_path, fmt, bpf):
    out = tmp_path / "out"
    to_files(frame(40), out, "w", LIMIT, format=fmt, batches_per_file=bpf)
    got = list(follow_batches(out, idle_exit=0))
    n = n_batches(out)
    assert n > 4
    assert [i for i, _ in got] == list(range(n - 1))
    assert all(b["batch"].eq(i).all() and b.index.equals(pd.RangeIndex(len(b))) for i, b in got)
    pd.testing.assert_frame_equal(joined(got), closed_rows(out, fmt))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_final_yields_the_last_batch_of_a_complete_folder(tmp_path, fmt):
    out = tmp_path / "out"
    to_files(frame(30), out, "w", LIMIT, format=fmt, batches_per_file=2)
    got = list(follow_batches(out, idle_exit=0, final=True))
    assert [i for i, _ in got] == list(range(n_batches(out)))
    pd.testing.assert_frame_equal(joined(got), export_rows(out, fmt))


def test_final_skips_the_last_batch_while_a_run_is_in_progress(tmp_path):
    out = tmp_path / "out"
    to_files(frame(30), out, "w", LIMIT)
    os.makedirs(out / "_cumbatch" / "work")
    (out / "_cumbatch" / "work" / "run.json").write_text(json.dumps({"kind": "append", "inputs": []}))
    got = [i for i, _ in follow_batches(out, idle_exit=0, final=True)]
    assert got == list(range(n_batches(out) - 1))


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_start_resumes_and_columns_select(tmp_path, fmt):
    out = tmp_path / "out"
    to_files(frame(40), out, "w", LIMIT, batches_per_file=2, format=fmt)
    n = n_batches(out)
    got = list(follow_batches(out, start=3, idle_exit=0, columns=["v"]))
    assert [i for i, _ in got] == list(range(3, n - 1))
    assert all(list(b.columns) == ["v"] for _, b in got)
    expected = closed_rows(out, fmt)
    pd.testing.assert_frame_equal(joined(got), expected.loc[expected["batch"] >= 3, ["v"]].reset_index(drop=True))
    assert list(follow_batches(out, start=n + 5, idle_exit=0)) == []


def _appender(src, out, fmt, bpf, sizes, done):
    """Add one input file per size and append it. Then record in ``done`` the batch count the
    last append will make: a row of weight ``LIMIT`` starts a batch of its own, closing the
    batch before it, so the reader yields one more batch after ``done`` is set."""
    first = 0
    for k, rows in enumerate([*sizes, None]):
        time.sleep(0.05)  # let the reader poll between appends
        if rows is None:
            done["batches"] = n_batches(out) + 1
            pd.DataFrame({"w": [LIMIT], "v": [first]}).to_parquet(src / "in-last.parquet", index=False)
        else:
            write_input(src, k, rows, first)
            first += rows
        to_files(str(src), str(out), "w", LIMIT, append=True, format=fmt, batches_per_file=bpf,
                 scheduler="sync", progress=False)


def _record_error(work, done, *args):
    try:
        work(*args)
    except BaseException as exc:  # reported by the test
        done["error"] = exc


def follow_until(out, done, **kwargs):
    """Follow ``out`` until the appender is done and its closed batches are all read; return
    them and how many came while the appender was still at work."""
    got, early = [], 0
    for i, b in follow_batches(out, poll=0.01, idle_exit=30, **kwargs):
        got.append((i, b))
        early += "batches" not in done
        if "batches" in done and i == done["batches"] - 2:
            break
    return got, early


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("bpf", [1, 3])
def test_reading_while_appends_commit_yields_each_closed_batch_once(tmp_path, fmt, bpf):
    src, out = tmp_path / "in", tmp_path / "out"
    sizes = [9, 1, 0, 14, 3, 7, 2, 11]
    done = {}
    writer = threading.Thread(target=_record_error, args=(_appender, done, src, out, fmt, bpf, sizes, done))
    writer.start()
    try:
        got, early = follow_until(out, done)
    finally:
        writer.join()
    assert "error" not in done, done.get("error")
    assert early > 0  # batches came as the appends committed them, not all at the end
    assert [i for i, _ in got] == list(range(done["batches"] - 1))
    pd.testing.assert_frame_equal(joined(got), closed_rows(out, fmt))
    assert joined(got)["v"].tolist() == list(range(len(joined(got))))


def test_a_folder_created_after_the_reader_starts(tmp_path):
    out = tmp_path / "later" / "out"
    late = threading.Timer(0.3, lambda: to_files(frame(20), str(out), "w", LIMIT, progress=False))
    late.start()
    try:
        got = []
        for i, b in follow_batches(out, poll=0.02, idle_exit=10):
            got.append((i, b))
            if out.exists() and i == n_batches(out) - 2:
                break
    finally:
        late.join()
    pd.testing.assert_frame_equal(joined(got), closed_rows(out, "parquet"))


def test_idle_exit_stops_a_reader_of_a_folder_that_never_comes(tmp_path):
    t0 = time.monotonic()
    assert list(follow_batches(tmp_path / "never", poll=0.05, idle_exit=0.3, final=True)) == []
    assert 0.3 <= time.monotonic() - t0 < 5


def test_an_overwritten_folder_with_fewer_batches_raises(tmp_path):
    out = tmp_path / "out"
    to_files(frame(40), out, "w", LIMIT)
    reader = follow_batches(out, poll=0.02, idle_exit=5)
    seen = [next(reader)[0] for _ in range(n_batches(out) - 1)]
    assert seen == list(range(n_batches(out) - 1))
    to_files(frame(4), out, "w", LIMIT, overwrite=True)
    with pytest.raises(ExportError, match="overwritten") as err:
        next(reader)
    assert str(out) in str(err.value) and "\n" not in str(err.value)


def test_a_damaged_manifest_raises(tmp_path):
    out = tmp_path / "out"
    to_files(frame(20), out, "w", LIMIT)
    m = json.loads((out / "_manifest.json").read_text())
    m["batches"][0]["rows"] += 1
    (out / "_manifest.json").write_text(json.dumps(m))
    with pytest.raises(ExportError, match="checksum") as err:
        list(follow_batches(out, idle_exit=0))
    assert str(out) in str(err.value) and "\n" not in str(err.value)


def test_a_file_that_lacks_its_batch_raises(tmp_path):
    out = tmp_path / "out"
    to_files(frame(30), out, "w", LIMIT, batches_per_file=3)
    part = out / "part-00000000.parquet"
    rows = pd.read_parquet(part)
    rows[rows["batch"] != 1].to_parquet(part, index=False)
    reader = follow_batches(out, idle_exit=0)
    assert next(reader)[0] == 0
    with pytest.raises(ExportError, match="holds 0 rows of batch 1"):
        next(reader)


@settings(max_examples=8, deadline=None)
@given(sizes=st.lists(st.integers(0, 8), min_size=1, max_size=4),
       bpf=st.sampled_from([1, 2]), fmt=st.sampled_from(["parquet", "jsonl"]))
def test_any_appends_then_resumed_reads_yield_exactly_the_closed_batches(tmp_path_factory, sizes, bpf, fmt):
    """After each append a reader resumes from where the last stopped: together they yield
    exactly the final export's closed batches, each once, in order."""
    root = tmp_path_factory.mktemp("prop")
    src, out = root / "in", root / "out"
    got, first = [], 0
    for k, rows in enumerate(sizes):
        write_input(src, k, rows, first)
        first += rows
        to_files(str(src), str(out), "w", LIMIT, append=True, format=fmt, batches_per_file=bpf,
                 scheduler="sync", progress=False)
        start = got[-1][0] + 1 if got else 0
        got += list(follow_batches(out, start=start, idle_exit=0))
    assert [i for i, _ in got] == list(range(max(n_batches(out) - 1, 0)))
    if got:
        pd.testing.assert_frame_equal(joined(got), closed_rows(out, fmt))


# ---------------------------------------------------------------- torch
def _ids(items) -> list:
    return [int(item["batch"][0]) for item in items]


def test_two_ranks_together_yield_every_closed_batch_once(tmp_path):
    torch = pytest.importorskip("torch")
    from dask_cumbatch.torch import CumbatchFollowDataset

    out = tmp_path / "out"
    to_files(frame(60), out, "w", LIMIT, batches_per_file=2)
    ranks = [_ids(CumbatchFollowDataset(out, idle_exit=0, rank=r, world_size=2)) for r in (0, 1)]
    assert all(i % 2 == r for r, ids in enumerate(ranks) for i in ids)
    assert sorted(ranks[0] + ranks[1]) == list(range(n_batches(out) - 1))
    item = next(iter(CumbatchFollowDataset(out, idle_exit=0)))
    assert isinstance(item["w"], torch.Tensor) and item["w"].tolist() == closed_rows(out, "parquet").query(
        "batch == 0")["w"].tolist()


def test_the_workers_of_a_rank_split_its_batches(tmp_path):
    pytest.importorskip("torch")
    from dask_cumbatch.torch import CumbatchFollowDataset

    out = tmp_path / "out"
    to_files(frame(60), out, "w", LIMIT)
    ds = CumbatchFollowDataset(out, idle_exit=0, rank=1, world_size=2)
    workers = [[i for i, _ in ds.batches((w, 3))] for w in range(3)]
    assert sorted(sum(workers, [])) == [i for i in range(n_batches(out) - 1) if i % 2 == 1]
    assert len(set(sum(workers, []))) == len(sum(workers, []))
    from torch.utils.data import DataLoader

    loaded = _ids(DataLoader(ds, batch_size=None, num_workers=2))
    assert sorted(loaded) == sorted(sum(workers, []))


def test_shuffle_buffer_changes_the_order_not_the_set(tmp_path):
    pytest.importorskip("torch")
    from dask_cumbatch.torch import CumbatchFollowDataset

    out = tmp_path / "out"
    to_files(frame(80), out, "w", LIMIT)
    plain = _ids(CumbatchFollowDataset(out, idle_exit=0))
    shuffled = _ids(CumbatchFollowDataset(out, idle_exit=0, shuffle_buffer=4, seed=1))
    assert plain == list(range(n_batches(out) - 1))
    assert shuffled != plain and sorted(shuffled) == plain
    assert _ids(CumbatchFollowDataset(out, idle_exit=0, shuffle_buffer=4, seed=1)) == shuffled


@pytest.mark.parametrize("bad", [{"start": -1}, {"poll": 0}, {"idle_exit": -1}, {"start": True}])
def test_bad_arguments_are_refused_when_called(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        follow_batches(tmp_path, **bad)  # no iteration needed
