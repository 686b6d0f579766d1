"""The push API: any split of a table into pushed frames gives the rows and
ids of ``df.cumbatch.ids`` over the whole table, each batch returned whole in one call, and a
state saved through JSON at any point continues exactly."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dask_cumbatch
from dask_cumbatch import PushBatcher

SETTINGS = dict(deadline=None, max_examples=200,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# decimals whose float64 sums round: they make the order of summation visible
NASTY = [0.1, 0.2, 0.3, 0.7, 1 / 3, 2 / 3, 0.0, 1.1, 0.01, 5e-17]


@st.composite
def tables(draw):
    """(table, weight column, limit, options) for every combination docs/design.md allows."""
    mode = draw(st.sampled_from(["greedy", "greedy", "fill", "floor"]))
    kind = draw(st.sampled_from(["int", "float", "nasty"]))
    n = draw(st.one_of(st.integers(0, 8), st.integers(20, 60)))  # long tables cross many cuts
    if kind == "int":
        top = draw(st.sampled_from([2, 12]))  # small weights: long batches, cut back by multiple
        w = draw(st.lists(st.integers(0, top), min_size=n, max_size=n))
        limit = draw(st.sampled_from([1, 5, 10, 17]))
    elif kind == "float":
        top = draw(st.sampled_from([2.0, 12.0]))
        w = draw(st.lists(st.floats(0, top, allow_nan=False), min_size=n, max_size=n))
        limit = draw(st.sampled_from([0.5, 5.0, 10.0, 7.3]))
    else:
        w = draw(st.lists(st.sampled_from(NASTY), min_size=n, max_size=n))
        limit = draw(st.sampled_from([0.3, 1.0, 0.9]))
    options = {"mode": mode}
    if draw(st.booleans()):
        options["max_rows"] = draw(st.integers(1, 6))
    multiple = draw(st.sampled_from([None, 2, 3, 4]))
    if mode == "greedy" and multiple:
        options["multiple"] = multiple
    if mode != "floor" and draw(st.booleans()):
        options["cost"] = "padded"
    if kind != "int" and draw(st.booleans()):  # NaN and negative rows, skipped
        options["invalid"] = "skip"
        holes = draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=4)) if n else []
        for i in holes:
            w[i] = draw(st.sampled_from([float("nan"), -1.0]))
    frame = pd.DataFrame({"w": np.array(w, dtype="int64" if kind == "int" else "float64"),
                          "x": np.arange(n) * 10})
    if draw(st.booleans()):
        frame["k"] = draw(st.lists(st.sampled_from(["a", "b", None]), min_size=n, max_size=n))  # None: missing keys equal
        options["by"] = "k"
    frame.index = frame.index + 100  # labels are kept, not renumbered
    return frame, "w", limit, options


@st.composite
def splits(draw, n):
    """Cut points 0 = c0 <= c1 <= ... <= n: empty and one-row frames included."""
    cuts = draw(st.lists(st.integers(0, n), min_size=1, max_size=10))
    return [0, *sorted(cuts), n]


def expected(frame, weight, limit, options):
    return frame.assign(batch=frame.cumbatch.ids(weight, limit, **options))


def run_pushes(batcher, frame, cuts, save_at=()):
    """Everything push and flush return, one frame per call; restores through JSON at ``save_at``."""
    out = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        if i in save_at:
            batcher = restored(batcher)
        out.append(batcher.push(frame.iloc[a:b]))
    out.append((restored(batcher) if len(cuts) - 1 in save_at else batcher).flush())
    return out


def restored(batcher):
    return PushBatcher.restore(json.loads(json.dumps(batcher.state())))


def assert_same(out, want):
    got = pd.concat(out)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for f in out:  # the float columns bitwise, too (assert_frame_equal takes -0.0 == 0.0)
        assert f.dtypes.equals(want.dtypes)
    np.testing.assert_array_equal(got["w"].to_numpy().view("int64"), want["w"].to_numpy().view("int64"))
    seen = [set(f["batch"].dropna().tolist()) for f in out]
    for i, s in enumerate(seen):  # every batch whole in one call
        for t in seen[i + 1:]:
            assert not (s & t)


@settings(**SETTINGS)
@given(data=st.data())
def test_any_split_equals_whole_table(data):
    frame, weight, limit, options = data.draw(tables())
    cuts = data.draw(splits(len(frame)))
    out = run_pushes(PushBatcher(weight, limit, **options), frame, cuts)
    assert_same(out, expected(frame, weight, limit, options))


@settings(**SETTINGS)
@given(data=st.data())
def test_state_saved_and_restored_continues_exactly(data):
    frame, weight, limit, options = data.draw(tables())
    cuts = data.draw(splits(len(frame)))
    save_at = data.draw(st.sets(st.integers(0, len(cuts) - 1)))
    out = run_pushes(PushBatcher(weight, limit, **options), frame, cuts, save_at)
    assert_same(out, expected(frame, weight, limit, options))


def test_closed_batches_come_back_as_soon_as_the_next_starts():
    b = PushBatcher("w", 10, multiple=4)
    assert b.push(pd.DataFrame({"w": [1] * 9})).empty  # batch 0 open
    # the 5 cuts batch 0 back to 8 rows: row 8 starts batch 1 with the 5
    assert b.push(pd.DataFrame({"w": [5]}))["batch"].tolist() == [0] * 8
    assert b.flush()["batch"].tolist() == [1, 1]


def test_skipped_rows_are_returned_in_place():
    b = PushBatcher("w", 4, invalid="skip")
    out = b.push(pd.DataFrame({"w": [3.0, None, 3.0, None]}))
    assert out["batch"].tolist() == [0, pd.NA]
    assert b.flush()["batch"].tolist() == [1, pd.NA]


def test_other_columns_refused_in_one_line():
    b = PushBatcher("w", 5)
    b.push(pd.DataFrame({"w": [1, 2]}))
    with pytest.raises(ValueError, match=r"^the pushed frame's columns/dtypes w:float64 differ from the first frame's w:int64; push frames of one schema$"):
        b.push(pd.DataFrame({"w": [1.0]}))
    with pytest.raises(ValueError, match="w:int64, x:int64 differ"):
        b.push(pd.DataFrame({"w": [1], "x": [2]}))
    assert b.flush()["batch"].tolist() == [0, 0]  # the refused frames changed nothing


def test_push_after_flush_refused():
    b = PushBatcher("w", 5)
    b.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        b.push(pd.DataFrame({"w": [1]}))
    with pytest.raises(RuntimeError, match="flushed"):
        PushBatcher.restore(b.state()).flush()


def test_missing_weight_column_names_it():
    with pytest.raises(KeyError, match="tokens"):
        PushBatcher("tokens", 5).push(pd.DataFrame({"w": [1]}))


def test_invalid_weight_raises_and_changes_nothing():
    b = PushBatcher("w", 5)
    b.push(pd.DataFrame({"w": [2.0, 2.0]}))
    with pytest.raises(dask_cumbatch.WeightError):
        b.push(pd.DataFrame({"w": [2.0, float("nan")]}))
    assert b.push(pd.DataFrame({"w": [2.0]}))["batch"].tolist() == [0, 0]


def test_restore_keeps_integer_labels_and_dtypes():
    frame = pd.DataFrame({"w": [1, 2, 3], 0: [3, 4, 5], "n": pd.array([1, None, 3], dtype="Int64"),
                          "t": pd.to_datetime(["2020", "2021", "2022"]).tz_localize("UTC")})
    for limit, cut in itertools.product([4, 100], range(len(frame) + 1)):  # 100: nothing closes before flush
        b = PushBatcher("w", limit)
        out = [b.push(frame.iloc[:cut])]
        c = restored(b)
        out += [c.push(frame.iloc[cut:cut + 1]), c.push(frame.iloc[cut + 1:]), c.flush()]
        pd.testing.assert_frame_equal(pd.concat(out), expected(frame, "w", limit, {}))


def test_bad_options_and_states_refused():
    with pytest.raises(ValueError, match="limit"):
        PushBatcher("w", -1)
    with pytest.raises(ValueError, match="sort_window"):
        PushBatcher("w", 5, sort_window=10)
    with pytest.raises(ValueError, match="not a dask-cumbatch push state"):
        PushBatcher.restore({"carry": {}})
