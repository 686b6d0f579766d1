"""An input that changes between the summary and the finish pass fails, never gives wrong ids:
the finish checks each partition's row count and exact weight total
against its summary and raises ``InputChangedError`` naming the partition."""
from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch import InputChangedError, engine
from dask_cumbatch.options import BatchOptions
from dask_cumbatch.engine import BatchContext


def read_part(path):
    return pd.read_parquet(path)


def write_parts(folder, parts):
    paths = []
    for i, w in enumerate(parts):
        path = folder / f"part-{i}.parquet"
        pd.DataFrame({"w": w}).to_parquet(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("new, what", [([3, 3, 4, 3], "total"), ([3, 3, 3], "rows")], ids=["weights", "rows"])
@pytest.mark.parametrize("mode", ["greedy", "fill", "floor"])
def test_partition_rewritten_between_passes_raises(tmp_path, new, what, mode):
    paths = write_parts(tmp_path, [[3, 3], [3, 3, 3, 3], [3, 3]])
    ddf = dd.from_map(read_part, paths, meta=pd.DataFrame({"w": pd.Series([], dtype="int64")}))
    ids = ddf.cumbatch.ids("w", 6, mode=mode)  # the summary pass runs now
    pd.DataFrame({"w": new}).to_parquet(paths[1])  # the input changes before the finish
    with pytest.raises(InputChangedError, match="partition 1 changed between the summary and the finish") as err:
        ids.compute(scheduler="sync")
    assert err.value.partition == 1
    assert what in str(err.value)


def test_unchanged_input_passes_and_changed_float_total_is_caught(tmp_path):
    paths = write_parts(tmp_path, [[0.5, 0.25], [1.5, 0.125]])
    ddf = dd.from_map(read_part, paths, meta=pd.DataFrame({"w": pd.Series([], dtype="float64")}))
    ids = ddf.cumbatch.ids("w", 1.0)
    assert ids.compute().tolist() == [0, 0, 1, 2]  # unchanged: the check passes
    pd.DataFrame({"w": [0.5, 0.25 + 2**-40]}).to_parquet(paths[0])
    with pytest.raises(InputChangedError, match="partition 0"):
        ids.compute()


def test_finish_with_a_load_that_changes_raises():
    # the engine alone: a source whose partition differs on its second read
    opts = BatchOptions.make("w", 6)
    reads = {"count": 0}

    def load():
        reads["count"] += 1
        return pd.DataFrame({"w": [3, 3, 3] if reads["count"] == 1 else [3, 2, 3]})

    plan = engine.plan_frame(load(), BatchContext(opts, False))
    with pytest.raises(InputChangedError, match="4 rows / total 12 where the summary saw 3 rows / total 9") as err:
        engine.finish_ids(pd.DataFrame({"w": [3, 3, 3, 3]}), BatchContext(opts, False), plan.entries[0])
    assert err.value.partition == 0
    with pytest.raises(InputChangedError):
        engine.finish_ids(load(), BatchContext(opts, False), plan.entries[0])


@pytest.mark.parametrize("mode, by", [("greedy", None), ("floor", None), ("floor", "k")])
def test_a_float_total_off_by_one_rounding_step_is_caught_in_every_mode(tmp_path, mode, by):
    """floor without ``by`` checks the running sum its kernels form in both passes, the
    others NumPy's sum: either way a change in the last bit of one weight is caught."""
    paths = []
    for i, w in enumerate([[0.5, 0.25, 0.1], [1.5, 0.125, 0.3]]):
        paths.append(str(tmp_path / f"part-{i}.parquet"))
        pd.DataFrame({"w": w, "k": [i] * 3}).to_parquet(paths[-1])
    meta = pd.DataFrame({"w": pd.Series([], dtype="float64"), "k": pd.Series([], dtype="int64")})
    ddf = dd.from_map(read_part, paths, meta=meta)
    ids = ddf.cumbatch.ids("w", 1.0, mode=mode, by=by)
    before = ids.compute(scheduler="sync").tolist()
    assert before == ids.compute(scheduler="sync").tolist()  # unchanged: the check passes
    pd.DataFrame({"w": [1.5, 0.125, 0.3 + 2**-40], "k": [1] * 3}).to_parquet(paths[1])
    with pytest.raises(InputChangedError, match="partition 1 changed .* total"):
        ids.compute(scheduler="sync")


def test_floor_summary_records_the_running_sum_its_kernels_form():
    w = np.random.default_rng(0).random(1000) * 3
    sequential = 0.0
    for x in w.tolist():
        sequential += x
    pairwise = float(w.sum())
    assert sequential != pairwise  # row order and NumPy's pairwise order round differently here
    df = pd.DataFrame({"w": w, "k": [0] * 500 + [1] * 500})
    # fractional weights take the exact kernels, which form no float64 running sum:
    # NumPy's sum is recorded and checked
    floor = engine.summarize(df, BatchContext(BatchOptions.make("w", 0.25, mode="floor"), True))
    assert (floor.total_kind, floor.total) == ("sum", pairwise)
    whole = np.round(w * 1000)  # integer-valued: the plain kernels' running sum (exact here)
    floor = engine.summarize(pd.DataFrame({"w": whole}), BatchContext(BatchOptions.make("w", 250.0, mode="floor"), True))
    assert (floor.total_kind, floor.total) == ("running", float(sum(whole.tolist())))
    for opts in (BatchOptions.make("w", 0.25, mode="floor", by="k"), BatchOptions.make("w", 0.25, mode="floor", max_rows=2)):
        summ = engine.summarize(df, BatchContext(opts, True))
        assert (summ.total_kind, summ.total) == ("sum", pairwise), opts


def test_a_finish_without_the_quick_kernel_still_checks_a_running_total(monkeypatch):
    """The summary formed the running sum with the quick kernel's backend, the finish runs on
    one without it (another worker's device): it sums the rows in order itself."""
    from dask_cumbatch.engine import context as context_module

    opts = BatchOptions.make("w", 10.0, mode="floor")
    df = pd.DataFrame({"w": [5.0, 2.0, 1.0, 7.0, 3.0]})  # integer-valued: the plain kernels
    entry = engine.plan_frame(df, BatchContext(opts, True)).entries[0]
    assert entry.total_kind == "running"
    assert engine.finish_ids(df, BatchContext(opts, True), entry).tolist() == [0, 0, 0, 0, 1]
    slow = engine.backend_for("cpu").without("floor_ids_quick")
    monkeypatch.setattr(context_module, "backend_for", lambda device, n_rows=0: slow)
    assert engine.finish_ids(df, BatchContext(opts, True), entry).tolist() == [0, 0, 0, 0, 1]  # the walk's ids
    with pytest.raises(InputChangedError, match="total"):
        engine.finish_ids(df.assign(w=[5.0, 2.0, 1.0 + 2**-48, 7.0, 3.0]), BatchContext(opts, True), entry)


def bits_by_hand(w) -> int:
    """The weights' bit total as anyone would write it: each float's bits as an unsigned
    integer, added up in Python, modulo 2**64."""
    return sum(int.from_bytes(np.float64(x).tobytes(), "little") for x in w) % 2**64


@pytest.mark.parametrize("mode", ["greedy", "fill"])
@pytest.mark.parametrize("by", [None, "k"])
def test_greedy_float_summaries_record_the_weights_bit_total(mode, by):
    """Greedy and fill use the total only to check the input, so for float weights it is the
    sum of their bits: exact in any order, formed by the validity test's own pass."""
    w = np.random.default_rng(5).random(50_000) * 3
    df = pd.DataFrame({"w": w, "k": np.repeat([0, 1], 25_000)})
    summ = engine.summarize(df, BatchContext(BatchOptions.make("w", 4.0, mode=mode, by=by), True))
    assert (summ.total_kind, summ.total) == ("bits", bits_by_hand(w))
    ints = engine.summarize(df.assign(w=np.arange(50_000)), BatchContext(BatchOptions.make("w", 400, mode=mode, by=by), False))
    assert (ints.total_kind, ints.total) == ("sum", sum(range(50_000)))


def test_greedy_bit_total_with_skipped_rows_covers_the_batched_weights_only():
    w = np.random.default_rng(6).random(30_000)
    w[[7, 20_000]] = [np.nan, -1.0]
    opts = BatchOptions.make("w", 2.0, invalid="skip")
    summ = engine.summarize(pd.DataFrame({"w": w}), BatchContext(opts, True))
    assert (summ.total_kind, summ.total, summ.n_invalid) == ("bits", bits_by_hand(np.delete(w, [7, 20_000])), 2)
    plan = engine.plan_frame(pd.DataFrame({"w": w}), BatchContext(opts, True))
    ids = engine.finish_ids(pd.DataFrame({"w": w}), BatchContext(opts, True), plan.entries[0])
    assert ids.isna().sum() == 2


@pytest.mark.parametrize("change", ["last bit", "swap with a new value", "negative zero"])
def test_greedy_float_finish_catches_any_change_of_one_weight(change):
    """A change of one weight's last bit moves the bit total by one: caught however large
    the other weights are (a float sum of 1e300 and 1.0 would not see the 1.0 change)."""
    w = np.array([1e300, 1.0, 2.0, 0.5] * 10_000)
    opts = BatchOptions.make("w", 1e301)
    entry = engine.plan_frame(pd.DataFrame({"w": w}), BatchContext(opts, True)).entries[0]
    assert entry.total_kind == "bits"
    assert engine.finish_ids(pd.DataFrame({"w": w}), BatchContext(opts, True), entry).max() >= 0  # unchanged: passes
    changed = w.copy()
    if change == "last bit":
        changed[1] = np.nextafter(1.0, 2.0)
    elif change == "swap with a new value":
        changed[2] = 3.0
    else:
        changed[1::4] = 0.0
        entry = engine.plan_frame(pd.DataFrame({"w": changed}), BatchContext(opts, True)).entries[0]
        changed[5] = -0.0  # still a valid weight, other bits
    with pytest.raises(InputChangedError, match="partition .* weights' bit total 0x"):
        engine.finish_ids(pd.DataFrame({"w": changed}), BatchContext(opts, True), entry)


@pytest.mark.parametrize("odd", [-0.0, np.nan, -2.0])
def test_a_weight_failing_the_quick_test_is_sorted_out_without_a_second_test(odd):
    """-0.0 fails the bits' quick test though it is a valid weight; NaN and negatives are
    invalid. Either way the summary makes no further validity pass (``count_invalid``), and
    its total is the bit total of the weights it batches."""
    from unittest import mock

    from dask_cumbatch.engine.backends import cpu

    w = np.random.default_rng(7).random(40_000)
    w[123] = odd
    opts = BatchOptions.make("w", 2.0, invalid="skip")
    with mock.patch.object(cpu, "count_invalid", side_effect=AssertionError("a second validity pass")):
        summ = engine.summarize(pd.DataFrame({"w": w}), BatchContext(opts, True))
    batched = w if odd == 0 else np.delete(w, 123)
    assert (summ.total_kind, summ.total, summ.n_invalid) == ("bits", bits_by_hand(batched), 0 if odd == 0 else 1)
