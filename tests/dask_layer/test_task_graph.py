"""The summary pass's graph: few fat tasks, Dask's string conversion only where it converts.

Each case checks the ids against the sequential reference (tests/reference.py) as well as the
shape of the work, so a faster graph can never pass with a different result.
"""
from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask.callbacks import Callback
from dask.dataframe.dask_expr.io.io import FromPandas

from conftest import ids_list
from reference import reference_ids

import dask_cumbatch  # noqa: F401  (registers the accessors)
from dask_cumbatch import dask_compat
from dask_cumbatch.dask import gather, in_memory
from dask_cumbatch.options import BatchOptions

pytestmark = pytest.mark.usefixtures("threaded")


class _CountTasks(Callback):
    def __init__(self):
        super().__init__()
        self.tasks = 0

    def _pretask(self, key, dsk, state):
        self.tasks += 1


def _weights(n, seed=3):
    return np.random.default_rng(seed).integers(0, 9, n)


@pytest.mark.parametrize("source", ["in-memory column", "computed column"])
@pytest.mark.parametrize("mode", ["greedy", "floor"])
def test_many_partitions_are_summarised_in_few_tasks(mode, source):
    w = _weights(6000)
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=3000)
    if source == "computed column":  # each partition's own tasks, run inside the fat tasks
        ddf = ddf.assign(w=ddf.w + 0)
        assert in_memory.in_memory_column(gather.SummarySource(ddf, BatchOptions.make("w", 20)).frame,
                                      BatchOptions.make("w", 20)) is None
    with _CountTasks() as counted:
        ids = ddf.cumbatch.ids("w", 20, mode=mode)  # the plan (summary pass) runs here
    assert counted.tasks <= gather.FAT_TASKS + 2, counted.tasks  # 3,000 partitions, not 3,000 tasks
    assert ids_list(ids) == reference_ids(w.tolist(), 20, mode=mode)


def test_partitions_sharing_tasks_are_summarised_one_task_each():
    # repartition: an output partition is cut from two input partitions, which two outputs share
    w = _weights(500)
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=7).repartition(npartitions=3)
    frame = gather.SummarySource(ddf, BatchOptions.make("w", 20)).frame
    assert dask_compat.partition_tasks(frame) is None
    for mode in ("greedy", "fill", "floor"):
        assert ids_list(ddf.cumbatch.ids("w", 20, mode=mode)) == reference_ids(w.tolist(), 20, mode=mode)


def test_string_keys_keep_their_conversion_and_numeric_reads_skip_it():
    w = _weights(400)
    keys = np.repeat(np.array(["a", "b", "c", "d"], dtype=object), 100)
    pdf = pd.DataFrame({"w": w, "k": keys.astype(object), "x": np.arange(400.0)})
    with dask.config.set({"dataframe.convert-string": True}):
        ddf = dd.from_pandas(pdf, npartitions=9)

    def conversion(opts):
        frame = gather.SummarySource(ddf, opts).frame
        return [r.operand("pyarrow_strings_enabled") for r in frame.expr.find_operations(FromPandas)]

    assert conversion(BatchOptions.make("w", 20)) == [False]  # weights only: nothing to convert
    assert conversion(BatchOptions.make("w", 20, by="k")) == [True]  # a string key is read as Dask reads it
    got = ids_list(ddf.cumbatch.ids("w", 20, by="k"))
    assert got == reference_ids(w.tolist(), 20, keys=keys.tolist())


def test_a_partition_of_several_tasks_runs_inside_one_fat_task():
    w = _weights(2400)
    pieces = [pd.DataFrame({"w": w[i:i + 200]}, index=range(i, i + 200)) for i in range(0, 2400, 200)]
    ddf = dd.from_delayed([dask.delayed(lambda p: p)(p) for p in pieces], meta=pieces[0].iloc[:0])
    frame = gather.SummarySource(ddf, BatchOptions.make("w", 20)).frame
    parts = dask_compat.partition_tasks(frame)
    assert parts is not None and all(len(p.graph) >= 2 for p in parts)  # the piece, then the call
    assert ids_list(ddf.cumbatch.ids("w", 20)) == reference_ids(w.tolist(), 20)


def test_a_partition_s_own_tasks_run_once_and_let_go_of_what_is_used():
    import weakref

    from dask._task_spec import Task, TaskRef

    class Piece:
        pass

    made, calls = [], []

    def make():
        piece = Piece()
        made.append(weakref.ref(piece))
        return piece

    def step(x):
        calls.append("piece" if isinstance(x, Piece) else x)
        return 1 if isinstance(x, Piece) else x + 1

    def last(b, c):
        assert made[0]() is None  # the read's result was dropped once its only user ran
        return b + c

    own = {"a": Task("a", make), "b": Task("b", step, TaskRef("a")), "c": Task("c", step, TaskRef("b")),
           "d": Task("d", last, TaskRef("b"), TaskRef("c"))}
    assert dask_compat.PartitionTasks(own, "d").run() == 3  # b = 1, c = 2
    assert len(made) == 1 and calls == ["piece", 1]  # each task ran once, b although c and d use it


def _sliced(ddf, opts) -> bool:
    return in_memory.in_memory_column(gather.SummarySource(ddf, opts).frame, opts) is not None


def test_an_in_memory_frame_is_summarised_from_slices_of_its_column():
    w = _weights(400, seed=8).astype("float64")
    pdf = pd.DataFrame({"w": w, "x": np.arange(400)}, index=np.arange(400)[::-1] * 3)  # sorted by from_pandas
    ddf = dd.from_pandas(pdf, npartitions=9)
    want = reference_ids(pdf.sort_index()["w"].tolist(), 20)
    opts = BatchOptions.make("w", 20)
    assert _sliced(ddf, opts)
    assert ids_list(ddf.cumbatch.ids("w", 20)) == want
    part = ddf.partitions[2:5]  # contiguous partitions: still one stretch of the column
    assert _sliced(part, opts)
    assert ids_list(part.cumbatch.ids("w", 20)) == reference_ids(part.compute()["w"].tolist(), 20)
    reordered = ddf.partitions[[4, 1]]  # not one stretch: each partition summarised on its own
    assert not _sliced(reordered, opts)
    rows = pd.concat([ddf.partitions[4].compute(), ddf.partitions[1].compute()])["w"]
    assert ids_list(reordered.cumbatch.ids("w", 20)) == reference_ids(rows.tolist(), 20)
    assert not _sliced(ddf, BatchOptions.make("w", 20, by="x"))  # keys: per partition
    assert not _sliced(ddf.astype({"w": "float32"}), opts)


def test_sliced_summaries_name_the_first_invalid_and_oversize_rows():
    pdf = pd.DataFrame({"w": [1.0, 2.0, 3.0, -1.0, 5.0, 50.0]}, index=list("abcdef"))
    ddf = dd.from_pandas(pdf, npartitions=3)
    assert _sliced(ddf, BatchOptions.make("w", 20))
    with pytest.raises(ValueError, match="1 invalid value.*index 'd'"):
        ddf.cumbatch.ids("w", 20)
    with pytest.raises(ValueError, match="index 'f' has weight 50.0"):
        ddf.cumbatch.ids("w", 20, invalid="skip", oversize="raise")
    got = ids_list(ddf.cumbatch.ids("w", 20, invalid="skip", oversize="allow"))
    assert got == [0, 0, 0, None, 0, 1]



def test_small_in_memory_partitions_are_summarised_in_the_calling_thread(monkeypatch):
    """Tiny summaries are GIL-bound: Dask's synchronous scheduler runs them in the caller's
    thread; partitions above ``GIL_BOUND_ROWS`` rows on average keep the configured scheduler."""
    import threading

    seen = set()
    summarize = in_memory._summarize_slices

    def spy(*args):
        seen.add(threading.get_ident())
        return summarize(*args)

    monkeypatch.setattr(in_memory, "_summarize_slices", spy)
    w = _weights(4000, seed=4)
    ddf = dd.from_pandas(pd.DataFrame({"w": w}), npartitions=40)
    for bound, in_caller in ((1 << 16, True), (1, False)):
        monkeypatch.setattr(in_memory, "GIL_BOUND_ROWS", bound)
        seen.clear()
        ids = ddf.cumbatch.ids("w", 20)  # the plan's summary pass runs here
        assert seen and (seen == {threading.get_ident()}) == in_caller, seen
        assert ids_list(ids) == reference_ids(w.tolist(), 20)


def test_finish_reads_in_memory_partitions_without_idle_string_conversion():
    """Dask converts each ``from_pandas`` partition as its task is built; the finish turns that
    off where it converts nothing (numeric columns), and keeps it where it does (text)."""
    from dask.dataframe.dask_expr.io.io import FromPandas

    def conversions(collection):
        return [r.operand("pyarrow_strings_enabled") for r in collection.optimize().expr.find_operations(FromPandas)]

    numeric = dd.from_pandas(pd.DataFrame({"w": np.arange(1.0, 9.0)}), npartitions=2)
    assert conversions(numeric.cumbatch.ids("w", 5).max()) == [False]
    with_text = dd.from_pandas(pd.DataFrame({"w": np.arange(1.0, 9.0), "s": list("abcdefgh")}), npartitions=2)
    batched = with_text.cumbatch.assign("w", 5)
    assert conversions(batched) == [True]
    assert batched.compute()["s"].dtype == with_text.compute()["s"].dtype
    assert batched.compute()["batch"].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]
