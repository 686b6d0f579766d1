"""Hand-worked examples for the sequential reference (tests/reference.py).

Each case is worked out by hand in the comment next to it, straight from docs/design.md, so
that the reference itself is checked before it is used to check the library.
"""
import math

import numpy as np
import pytest

from reference import INT64_MAX, reference_ids, reference_plan


# ---------------------------------------------------------------- greedy, cost="sum"
def test_greedy_even():
    # tot: 3 | 3+3=6 (not > 6, join) | 6+3=9 > 6 -> new, tot 3 | 3+3=6 join
    assert reference_ids([3, 3, 3, 3], 6) == [0, 0, 1, 1]


def test_greedy_uneven():
    # 5 | 5+2=7>6 new (tot 2) | 2+4=6 join | 6+1=7>6 new (tot 1) | 1+7=8>6 new (tot 7)
    # | 7+1=8>6 new
    assert reference_ids([5, 2, 4, 1, 7, 1], 6) == [0, 1, 1, 2, 3, 4]


def test_greedy_oversize_row_stands_alone():
    # 2 | 2+10>5 new (tot 10) | 10+0=10>5 new (tot 0) | 0+1=1 join
    assert reference_ids([2, 10, 0, 1], 5) == [0, 1, 2, 2]


def test_greedy_zeros_join():
    # 5 | 5+0=5 join | 5+0 join | 5+1=6>5 new
    assert reference_ids([5, 0, 0, 1], 5) == [0, 0, 0, 1]


def test_greedy_bool():
    # bools are 0/1 ints: 1 | 2 | 2 | 2+1=3>2 new
    assert reference_ids([True, True, False, True], 2) == [0, 0, 0, 1]


def test_greedy_float_is_sequential_float64():
    # 0.1+0.2 = 0.30000000000000004; + 0.3 = 0.6000000000000001 > 0.6 -> new batch
    assert 0.1 + 0.2 + 0.3 > 0.6
    assert reference_ids([0.1, 0.2, 0.3], 0.6) == [0, 0, 1]
    # other order: 0.3+0.2 = 0.5; 0.5+0.1 = 0.6 exactly -> one batch
    assert 0.3 + 0.2 + 0.1 == 0.6
    assert reference_ids([0.3, 0.2, 0.1], 0.6) == [0, 0, 0]


def test_greedy_float_sums_restart_at_batch_start():
    # limit 0.6. row0: 0.7 (first row, oversize, alone) | row1: 0.7+0.1>0.6 new, tot 0.1 (the sum
    # restarts from the batch's first row) | row2: 0.1+0.2 = 0.30000000000000004 join
    # | row3: +0.3 = 0.6000000000000001 > 0.6 -> new
    assert 0.1 + 0.2 + 0.3 > 0.6
    assert reference_ids([0.7, 0.1, 0.2, 0.3], 0.6) == [0, 1, 1, 2]


def test_greedy_float32_widened_exactly():
    # float32(0.1) = 0.100000001490116..., widened exactly: five of them sum to > 0.5
    w = [np.float32(0.1)] * 5
    tot = 0.0
    for x in w:
        tot += float(x)
    assert tot > 0.5
    # 0.1f*5 > 0.5 -> the 5th row starts a new batch
    assert reference_ids(w, 0.5) == [0, 0, 0, 0, 1]


# ---------------------------------------------------------------- greedy, cost="padded"
def test_greedy_padded():
    # limit 8. row0: mx1 rows1 | row1: max(1,3)*2=6 join (mx3, rows2) | row2: max(3,2)*3=9>8 new
    # (mx2 rows1) | row3: 2*2=4 join (rows2) | row4: max(2,5)*3=15>8 new
    assert reference_ids([1, 3, 2, 2, 5], 8, cost="padded") == [0, 0, 1, 1, 2]


def test_greedy_padded_oversize():
    # limit 4. row0: 5 alone (5*1 > 4 but it is the first row) | row1: max(5,1)*2=10>4 new
    # | row2: max(1,1)*2=2 join | row3: max(1,2)*3=6>4 new
    assert reference_ids([5, 1, 1, 2], 4, cost="padded") == [0, 1, 1, 2]


# ---------------------------------------------------------------- fill
def test_fill_sum():
    # limit 6. tot 2 | 2>=6? no, join -> 7 | 7>=6 new (tot 1) | 1>=6 no, join
    assert reference_ids([2, 5, 1, 1], 6, mode="fill") == [0, 0, 1, 1]


def test_fill_exact_limit_and_zeros():
    # limit 6. tot 6 | 6>=6 new (tot 0) | 0 join -> 3 | 3 join -> 6 | 6>=6 new
    assert reference_ids([6, 0, 3, 3, 0], 6, mode="fill") == [0, 1, 1, 1, 2]


def test_fill_padded():
    # limit 6. row0 mx1 rows1 | 1*1=1>=6? no, join (mx3 rows2) | 3*2=6>=6 new (mx2 rows1)
    # | 2*1=2 no, join (rows2) | 2*2=4 no, join
    assert reference_ids([1, 3, 2, 2, 5], 6, mode="fill", cost="padded") == [0, 0, 1, 1, 1]


def test_fill_max_rows():
    # limit 2, max_rows 3. tot1 | 1>=2 no, join (2) | 2>=2 new (1) | join (2) | new
    assert reference_ids([1, 1, 1, 1, 1], 2, mode="fill", max_rows=3) == [0, 0, 1, 1, 2]


# ---------------------------------------------------------------- floor
def test_floor_exclusive_sum():
    # limit 6. S (exclusive) = 0, 4, 8, 12 -> S//6 = 0, 0, 1, 2 -> ids 0, 0, 1, 2
    assert reference_ids([4, 4, 4, 4], 6, mode="floor") == [0, 0, 1, 2]


def test_floor_zeros():
    # limit 6. S = 0, 0, 6, 6 -> 0, 0, 1, 1
    assert reference_ids([0, 6, 0, 1], 6, mode="floor") == [0, 0, 1, 1]


def test_floor_skips_grid_cells_but_ids_stay_dense():
    # limit 2. S = 0, 7, 8 -> S//2 = 0, 3, 4: three different cells, ids 0, 1, 2
    assert reference_ids([7, 1, 1], 2, mode="floor") == [0, 1, 2]


def test_floor_by_resets_sum():
    # limit 6, keys a a b b. row1: S=4 (cell 0) join | row2: group change, S reset to 0
    # | row3: S=4 (cell 0) join
    assert reference_ids([4, 4, 4, 4], 6, mode="floor", keys=list("aabb")) == [0, 0, 1, 1]


def test_floor_sum_not_reset_at_batch_start():
    # limit 3, max_rows 2. S = 0,1,2,3,4 -> cells 0,0,0,1,1.
    # row1 join (rows 2) | row2: cap -> new (rows 1) | row3: cell 0 -> 1, new | row4 join
    assert reference_ids([1, 1, 1, 1, 1], 3, mode="floor", max_rows=2) == [0, 0, 1, 2, 2]


def test_floor_float_limit():
    # limit 2.5. S = 0, 2, 4, 6 -> S/2.5 = 0, 0.8, 1.6, 2.4 -> cells 0, 0, 1, 2
    assert reference_ids([2, 2, 2, 2], 2.5, mode="floor") == [0, 0, 1, 2]


# ---------------------------------------------------------------- max_rows
def test_max_rows_greedy():
    # limit 100 never binds; the cap of 2 rows does
    assert reference_ids([1, 1, 1, 1, 1], 100, max_rows=2) == [0, 0, 1, 1, 2]


def test_max_rows_one():
    assert reference_ids([0, 0, 0], 100, max_rows=1) == [0, 1, 2]


# ---------------------------------------------------------------- by
def test_by_greedy():
    # limit 2. a: 1 | 2 join | b: change -> new | 2 join | 2+1>2 new | None vs b: change -> new
    keys = ["a", "a", "b", "b", "b", None]
    assert reference_ids([1] * 6, 2, keys=keys) == [0, 0, 1, 1, 2, 3]


def test_by_missing_keys_equal_each_other():
    # None, NaN, None are all "missing": one group; "x" is a new group
    keys = [None, float("nan"), None, "x"]
    assert reference_ids([1, 1, 1, 1], 10, keys=keys) == [0, 0, 0, 1]


def test_by_group_returns_to_earlier_key():
    # a b a: each change of key is a new batch, even back to an earlier key
    assert reference_ids([1, 1, 1], 10, keys=["a", "b", "a"]) == [0, 1, 2]


def test_by_several_columns():
    # keys as tuples: (1, x) (1, x) (1, y) (2, y)
    keys = [(1, "x"), (1, "x"), (1, "y"), (2, "y")]
    assert reference_ids([1, 1, 1, 1], 10, keys=keys) == [0, 0, 1, 2]


# ---------------------------------------------------------------- multiple (greedy only)
def test_multiple_cut_back():
    # multiple=4, limit 6, ten 1s. rows 0..5 reach tot 6; row 6: 6+1>6 -> would start a batch.
    # batch 0 holds r=6 >= 4 rows -> cut back to 4*floor(6/4)=4 rows: rows 0..3 are batch 0,
    # rows 4,5 start batch 1 (tot 2); row 6 tested again: 2+1=3 join; rows 7..9 join (tot 6).
    # the last batch (6 rows) is kept.
    assert reference_ids([1] * 10, 6, multiple=4) == [0] * 4 + [1] * 6


def test_multiple_cut_back_twice():
    # continue the previous case to 12 rows: row 10: 6+1>6, batch 1 (first row 4) holds 6 rows
    # -> keep 4 (rows 4..7), rows 8,9 start batch 2 (tot 2); row 10 joins (3), row 11 joins (4)
    assert reference_ids([1] * 12, 6, multiple=4) == [0] * 4 + [1] * 4 + [2] * 4


def test_multiple_short_batch_not_cut():
    # multiple=4, limit 3: row 3 would start a batch; batch 0 holds r=3 < 4 rows -> no cut
    assert reference_ids([1] * 5, 3, multiple=4) == [0, 0, 0, 1, 1]


def test_multiple_retest_joins():
    # multiple=2, limit 5, w=[1,1,1,4,1]. row3: 3+4=7>5; r=3 -> keep 2: rows 0,1 batch 0,
    # row 2 starts batch 1 (tot 1); row 3 again: 1+4=5 join (tot 5); row 4: 5+1>5, batch 1 holds
    # r=2 rows, 2*floor(2/2)=2 = all of them, so no cut: row 4 starts batch 2.
    assert reference_ids([1, 1, 1, 4, 1], 5, multiple=2) == [0, 0, 1, 1, 2]


def test_multiple_retest_starts_again():
    # multiple=2, limit 5, w=[1,1,1,5]. row3: 3+5>5 -> keep 2, row 2 starts batch 1 (tot 1);
    # row 3 again: 1+5=6>5, batch 1 holds r=1 < 2 rows -> no cut, row 3 starts batch 2.
    assert reference_ids([1, 1, 1, 5], 5, multiple=2) == [0, 0, 1, 2]


def test_multiple_with_max_rows():
    # multiple=4, max_rows=6, limit 100, eight 1s. row 6: cap (6 rows) -> keep 4, rows 4,5 start
    # batch 1 (2 rows); row 6 again: not capped, joins; row 7 joins.
    assert reference_ids([1] * 8, 100, max_rows=6, multiple=4) == [0] * 4 + [1] * 4


def test_multiple_group_change_ends_batch_uncut():
    # multiple=4: the group change after 3 rows ends batch 0 with 3 rows, no cut-back
    assert reference_ids([1] * 5, 100, keys=list("aaabb"), multiple=4) == [0, 0, 0, 1, 1]


def test_multiple_one_is_no_multiple():
    assert reference_ids([3, 3, 3, 3], 6, multiple=1) == reference_ids([3, 3, 3, 3], 6)


# ---------------------------------------------------------------- overflow, plan, misc
def test_int64_overflow_raises_fill():
    # fill, limit 2**63-1: tot = 2**62, then 2**62 < limit joins: tot = 2**63 > int64 max
    with pytest.raises(ValueError, match="overflow"):
        reference_ids([2**62, 2**62, 1], INT64_MAX, mode="fill")


def test_int64_overflow_raises_floor():
    # floor: S for row 2 is 2**63, which int64 cannot hold
    with pytest.raises(ValueError, match="overflow"):
        reference_ids([2**62, 2**62, 1], 10, mode="floor")


def test_int64_big_greedy_no_overflow():
    # greedy never holds a sum above the limit: 2**62 | 2**62+2**62 > limit -> new
    assert reference_ids([2**62, 2**62, 5], 2**62 + 5) == [0, 1, 1]


def test_empty():
    assert reference_ids([], 10) == []


def test_every_id_dense_and_monotone():
    rng = np.random.default_rng(0)
    w = rng.integers(0, 20, 500).tolist()
    for mode in ("greedy", "fill", "floor"):
        ids = reference_ids(w, 37, mode=mode)
        steps = np.diff(ids)
        assert ids[0] == 0 and set(steps.tolist()) <= {0, 1}


def test_reference_plan():
    # [5,2,4,1,7,1] limit 6 greedy -> ids [0,1,1,2,3,4] (see test_greedy_uneven)
    plan = reference_plan([5, 2, 4, 1, 7, 1], [0, 1, 1, 2, 3, 4])
    assert [(b["rows"], b["total"], b["max"], b["start"], b["stop"]) for b in plan] == [
        (1, 5, 5, 0, 1),
        (2, 6, 4, 1, 3),
        (1, 1, 1, 3, 4),
        (1, 7, 7, 4, 5),
        (1, 1, 1, 5, 6),
    ]


def test_reference_plan_skipped_rows_keep_positions():
    plan = reference_plan([1, 9, 1], [0, None, 0])
    assert plan == [{"batch": 0, "rows": 2, "total": 2, "max": 1, "start": 0, "stop": 3}]


def test_greedy_batches_within_limit():
    rng = np.random.default_rng(1)
    w = rng.random(300).tolist()
    ids = reference_ids(w, 2.0)
    for b in reference_plan(w, ids):
        assert b["total"] <= 2.0 or b["rows"] == 1
        assert not math.isnan(b["total"])
