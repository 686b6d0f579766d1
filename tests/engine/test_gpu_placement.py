"""Data placement: which columns a partition hands to the kernels, and what comes back.

A cuDF partition (dask-cudf) is recognised by module name: only its weight and key columns are
read and its ids come back as a cuDF column. The ``gpu``-marked test runs that on real cuDF data
(skipped without cuDF and a device); the other tests drive the same code with a stand-in whose
classes live in a module named ``cudf`` (cuDF cannot be installed without a GPU).
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

from dask_cumbatch.engine import finish_ids, plan_frame
from dask_cumbatch.engine.partition import host_columns, is_cudf, like_partition
from dask_cumbatch.options import BatchOptions
from dask_cumbatch.engine import BatchContext


def stand_in_cudf():
    """A module ``cudf`` whose DataFrame records which columns were copied to the host."""
    mod = types.ModuleType("cudf")

    class DataFrame:
        def __init__(self, pdf, copied):
            self._pdf, self.copied = pdf, copied

        def __len__(self):
            return len(self._pdf)

        def __getitem__(self, columns):
            return DataFrame(self._pdf[columns], self.copied)

        def to_pandas(self):
            self.copied.append(list(self._pdf.columns))
            return self._pdf.copy()

    class Series:
        def __init__(self, ps):
            self.ps = ps

        @classmethod
        def from_pandas(cls, ps):
            return cls(ps)

    DataFrame.__module__ = Series.__module__ = "cudf.core.dataframe"
    mod.DataFrame, mod.Series = DataFrame, Series
    return mod


@pytest.fixture
def cudf(monkeypatch):
    mod = stand_in_cudf()
    monkeypatch.setitem(sys.modules, "cudf", mod)
    return mod


def test_pandas_partition_is_used_as_it_is():
    df = pd.DataFrame({"w": [1.0, 2.0], "x": ["a", "b"]})
    opts = BatchOptions.make("w", 5)
    assert not is_cudf(df) and host_columns(df, opts) is df
    ids = pd.Series([0, 0])
    assert like_partition(ids, df) is ids


@pytest.mark.parametrize("invalid", ["raise", "skip"])
def test_cudf_partition_reads_weight_and_keys_and_gets_a_cudf_id_column(cudf, invalid):
    rng = np.random.default_rng(2)
    pdf = pd.DataFrame({"x": rng.random(40), "w": rng.integers(0, 9, 40).astype(float),
                        "k": rng.integers(0, 2, 40), "payload": ["p"] * 40},
                       index=pd.RangeIndex(100, 140))
    if invalid == "skip":
        pdf.loc[105, "w"] = np.nan
    copied = []
    gdf = cudf.DataFrame(pdf, copied)
    opts = BatchOptions.make("w", 12, by="k", max_rows=6, invalid=invalid)
    entry = plan_frame(pdf, BatchContext(opts, True)).entries[0]
    got = finish_ids(gdf, BatchContext(opts, True), entry)
    assert isinstance(got, cudf.Series) and is_cudf(got)
    pd.testing.assert_series_equal(got.ps, finish_ids(pdf, BatchContext(opts, True), entry))
    assert copied and all(cols == ["w", "k"] for cols in copied)


@pytest.mark.gpu
def test_dask_cudf_frame_on_gpu_gets_cudf_ids_equal_to_cpu():
    cudf = pytest.importorskip("cudf", reason="needs cuDF (RAPIDS) and a CUDA device")
    dask_cudf = pytest.importorskip("dask_cudf", reason="needs dask-cudf and a CUDA device")
    rng = np.random.default_rng(4)
    pdf = pd.DataFrame({"w": rng.random(100_000) * 9, "k": rng.integers(0, 3, 100_000) // 2})
    expected = pdf.cumbatch.ids("w", 40, by="k", device="cpu")
    gddf = dask_cudf.from_cudf(cudf.from_pandas(pdf), npartitions=4)
    got = gddf.cumbatch.ids("w", 40, by="k", device="gpu").compute()
    assert isinstance(got, cudf.Series)
    assert got.to_pandas().tolist() == expected.tolist()
