"""A batching mode is a plug-in: a toy mode registered, run through the public accessor on
pandas and on a multi-partition Dask frame against a plain reference, then unregistered."""
from __future__ import annotations

from dataclasses import dataclass

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch import engine
from dask_cumbatch.engine import Carry, Step, Summary
from dask_cumbatch.options import BatchOptions


@dataclass
class CountSummary(Summary):
    """The toy needs nothing beyond the common fields (``n``: batched rows)."""


class CountMode:
    """Toy mode "count": a new batch every ``limit`` batched rows, whatever they weigh."""

    def summarize(self, arrays, ctx):
        return CountSummary()

    def advance(self, summary, carry, ctx, load):
        end = carry.position + summary.n
        size = int(ctx.opts.limit)
        return Step(Carry(batches=-(-end // size), rows=end % size, has_prev=True, position=end))

    def finish(self, arrays, entry, ctx):
        positions = entry.carry.position + np.arange(len(arrays.w), dtype=np.int64)
        return positions // int(ctx.opts.limit)


def count_reference(n_rows, size):
    return [i // size for i in range(n_rows)]


@pytest.fixture
def count_mode():
    engine.register_mode("count", CountMode())
    try:
        yield
    finally:
        engine.unregister_mode("count")


def test_toy_mode_on_pandas(count_mode):
    df = pd.DataFrame({"w": np.arange(10, dtype=float)})
    assert df.cumbatch.ids("w", 4, mode="count").tolist() == count_reference(10, 4)
    plan = df.cumbatch.plan("w", 4, mode="count")
    assert plan.n_batches == 3 and plan.batches["rows"].tolist() == [4, 4, 2]


@pytest.mark.parametrize("sizes", [[3, 0, 5, 1, 7], [1] * 9, [16]])
def test_toy_mode_on_dask_partitions(count_mode, sizes):
    n = sum(sizes)
    pdf = pd.DataFrame({"w": np.ones(n)})
    bounds = np.cumsum([0] + sizes)
    parts = [pdf.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    ddf = dd.from_map(lambda part: part, parts, meta=pdf.iloc[:0])
    assert ddf.cumbatch.ids("w", 3, mode="count").compute().tolist() == count_reference(n, 3)
    out = ddf.cumbatch.repartition("w", 3, mode="count").compute()
    assert out["batch"].tolist() == count_reference(n, 3)


def test_unregistered_mode_is_refused(count_mode):
    engine.unregister_mode("count")
    with pytest.raises(ValueError, match="mode='count' is not one of"):
        BatchOptions.make("w", 3, mode="count")
    assert "count" not in engine.registered_modes()


def test_registering_needs_the_hooks():
    with pytest.raises(TypeError, match="advance"):
        engine.register_mode("broken", type("Broken", (), {"summarize": lambda *a: None})())
    assert "broken" not in engine.registered_modes()
