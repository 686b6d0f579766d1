"""An input that changes between the summary and the finish pass fails, never gives wrong ids
(issue 12, defect 4): the finish checks each partition's row count and exact weight total
against its summary and raises ``InputChangedError`` naming the partition."""
from __future__ import annotations

import dask.dataframe as dd
import pandas as pd
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch import InputChangedError, engine
from dask_cumbatch.options import BatchOptions


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

    plan = engine.plan_frame(load(), opts, False)
    with pytest.raises(InputChangedError, match="4 rows / total 12 where the summary saw 3 rows / total 9") as err:
        engine.finish_ids(pd.DataFrame({"w": [3, 3, 3, 3]}), opts, False, plan.entries[0])
    assert err.value.partition == 0
    with pytest.raises(InputChangedError):
        engine.finish_ids(load(), opts, False, plan.entries[0])
