"""Inputs that used to be taken silently: a column the id
column would replace, decimal weights summed as float64, ``bool[pyarrow]`` weights with
missing values, and limit strings rounded to float64."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch import OversizeError, WeightError, parse_limit
from dask_cumbatch.export import to_files

from reference import reference_ids


def cli(*args):
    return subprocess.run([sys.executable, "-m", "dask_cumbatch", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def with_text_batch(n=12):
    return pd.DataFrame({"w": np.arange(1, n + 1) % 4 + 1, "batch": [f"s{i}" for i in range(n)]})


def as_dask(pdf, parts=3):
    return dd.from_pandas(pdf, npartitions=parts, sort=False)


# ----------------------------------------------------------------- item 3: the id column's name

CLASH = r"already has a column 'batch'.*name="


@pytest.mark.parametrize("frame", [lambda df: df, as_dask], ids=["pandas", "dask"])
def test_assign_refuses_to_replace_a_column_named_like_the_ids(frame):
    df = frame(with_text_batch())
    with pytest.raises(ValueError, match=CLASH):
        df.cumbatch.assign("w", 5)
    out = df.cumbatch.assign("w", 5, name="batch_id")
    out = out.compute() if hasattr(out, "compute") else out
    assert out["batch"].tolist() == with_text_batch()["batch"].tolist()
    assert out["batch_id"].tolist() == reference_ids(with_text_batch()["w"].tolist(), 5)


def test_the_refusal_names_a_free_id_column_name():
    df = with_text_batch().assign(batch_id=0)
    with pytest.raises(ValueError) as info:
        df.cumbatch.assign("w", 5)
    message = str(info.value)
    assert "\n" not in message
    suggested = message.split("name=")[1].split("'")[1]
    assert suggested not in df.columns
    assert suggested in df.cumbatch.assign("w", 5, name=suggested).columns


def test_assign_refuses_the_weight_column_as_the_id_column():
    df = pd.DataFrame({"w": [1, 2, 3, 4]})
    with pytest.raises(ValueError, match=r"already has a column 'w'.*name="):
        df.cumbatch.assign("w", 5, name="w")
    assert df["w"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("frame", [lambda df: df, as_dask], ids=["pandas", "dask"])
def test_ids_and_plan_keep_working_with_a_batch_column(frame):
    df = frame(with_text_batch())
    ids = df.cumbatch.ids("w", 5)
    ids = ids.compute() if hasattr(ids, "compute") else ids
    assert ids.name == "batch"
    assert ids.tolist() == reference_ids(with_text_batch()["w"].tolist(), 5)
    assert df.cumbatch.plan("w", 5).batches["rows"].sum() == 12


@pytest.mark.parametrize("frame", [lambda df: df, as_dask], ids=["pandas", "dask"])
def test_repartition_and_iter_batches_refuse_the_clash(frame):
    df = frame(with_text_batch())
    with pytest.raises(ValueError, match=CLASH):
        df.cumbatch.repartition("w", 5)
    with pytest.raises(ValueError, match=CLASH):
        df.cumbatch.repartition("w", 5, index=True)
    with pytest.raises(ValueError, match=CLASH):
        df.cumbatch.iter_batches("w", 5)
    batches = list(df.cumbatch.iter_batches("w", 5, name="b"))
    assert pd.concat([b for _, b in batches])["batch"].tolist() == with_text_batch()["batch"].tolist()


@pytest.mark.parametrize("frame", [lambda df: df, as_dask], ids=["pandas", "dask"])
def test_a_named_index_batch_is_a_clash_too(frame):
    df = frame(with_text_batch().set_index("batch"))
    with pytest.raises(ValueError, match=r"index named 'batch'.*name="):
        df.cumbatch.assign("w", 5)
    with pytest.raises(ValueError, match=r"index named 'batch'.*name="):
        df.cumbatch.repartition("w", 5)
    assert df.cumbatch.ids("w", 5).name == "batch"


@pytest.mark.parametrize("frame", [lambda df: df, as_dask], ids=["pandas", "dask"])
def test_to_files_refuses_the_clash_before_touching_the_folder(tmp_path, frame):
    df = frame(with_text_batch())
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=CLASH):
        df.cumbatch.to_files(str(out), "w", 5, progress=False)
    with pytest.raises(ValueError, match=CLASH):
        to_files(df, str(out), "w", 5, progress=False)
    assert not out.exists()
    indexed = frame(with_text_batch().set_index("batch"))
    with pytest.raises(ValueError, match=r"index named 'batch'"):
        to_files(indexed, str(out), "w", 5, progress=False)
    assert not out.exists()


def test_to_files_with_overwrite_keeps_the_old_export_when_refused(tmp_path):
    out = tmp_path / "out"
    to_files(pd.DataFrame({"w": [1, 2, 3]}), str(out), "w", 5, progress=False)
    before = sorted(os.listdir(out))
    with pytest.raises(ValueError, match=CLASH):
        to_files(with_text_batch(), str(out), "w", 5, progress=False, overwrite=True)
    assert sorted(os.listdir(out)) == before
    assert pd.read_parquet(out)["w"].tolist() == [1, 2, 3]


def test_cli_export_refuses_the_clash_with_one_line_naming_the_flag(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    with_text_batch().to_parquet(inp / "a.parquet", index=False)
    proc = cli("export", inp, out, "-w", "w", "-l", 5)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "'batch'" in lines[0] and "--name batch_id" in lines[0] and "name=" not in lines[0]
    assert not out.exists()
    proc = cli("export", inp, out, "-w", "w", "-l", 5, "--name", "batch_id")
    assert proc.returncode == 0, proc.stderr
    back = pd.read_parquet(out)
    assert back["batch"].tolist() == with_text_batch()["batch"].tolist()
    assert back["batch_id"].tolist() == reference_ids(with_text_batch()["w"].tolist(), 5)
    assert cli("status", out, "--verify").returncode == 0


# ----------------------------------------------------------------- item 6: decimal weights


def arrow_decimals(values, precision, scale):
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.array(values, pa.decimal128(precision, scale))))


def test_whole_decimal_weights_are_summed_exactly():
    big = arrow_decimals([2**53 + 1, 1], 20, 0)
    with pytest.raises(OversizeError):
        pd.DataFrame({"w": big}).cumbatch.ids("w", 2**53, oversize="raise")
    weights = [2**53 - 1, 1, 1, 5, 2**52, 2**52]
    df = pd.DataFrame({"w": arrow_decimals(weights, 20, 0)})
    for mode in ("greedy", "fill", "floor"):
        expected = reference_ids(weights, 2**53, mode=mode)
        assert df.cumbatch.ids("w", 2**53, mode=mode).tolist() == expected, mode
        ddf = dd.from_pandas(df, npartitions=3, sort=False)
        assert ddf.cumbatch.ids("w", 2**53, mode=mode).compute().tolist() == expected, mode
    ids = reference_ids(weights, 2**53)
    expected = [sum(w for w, b in zip(weights, ids) if b == batch) for batch in sorted(set(ids))]
    assert df.cumbatch.plan("w", 2**53).batches["total"].tolist() == expected


def test_whole_decimal_weights_export_exact_totals(tmp_path):
    weights = [2**53 - 1, 1, 1, 5]
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    pa_table = pa.table({"w": pa.array(weights, pa.decimal128(20, 0))})
    import pyarrow.parquet as pq

    pq.write_table(pa_table, inp / "a.parquet")
    proc = cli("export", inp, out, "-w", "w", "-l", 2**53)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "_manifest.json").read_text())
    assert [b["total"] for b in manifest["batches"]] == [2**53, 6]
    assert cli("status", out, "--verify").returncode == 0


def test_decimal_weights_beyond_int64_raise_one_line():
    df = pd.DataFrame({"w": arrow_decimals([10**20, 1], 25, 0)})
    with pytest.raises(OverflowError, match=r"'w'.*2\*\*63") as info:
        df.cumbatch.ids("w", 5)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("weights", [
    arrow_decimals([Decimal("0.1")] * 10, 5, 1),
    pd.Series([Decimal("0.1")] * 10, dtype=object),
], ids=["arrow", "object"])
def test_fractional_decimal_weights_are_refused_with_one_line(weights):
    df = pd.DataFrame({"w": weights})
    with pytest.raises(TypeError) as info:
        df.cumbatch.ids("w", 1, mode="fill")
    message = str(info.value)
    assert "\n" not in message and "'w'" in message
    if isinstance(weights.dtype, pd.ArrowDtype):
        assert "decimal" in message and "int64" in message and "float64" in message


def test_fractional_decimal_refused_before_the_export_folder_exists(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(TypeError, match="decimal"):
        to_files(pd.DataFrame({"w": arrow_decimals([Decimal("0.1")] * 10, 5, 1)}), str(out), "w", 1,
                 progress=False)
    assert not out.exists()


# ----------------------------------------------------------------- item 9a: bool[pyarrow] with NA


def bools_with_na():
    return pd.DataFrame({"w": pd.array([True, None, True, False, None, True], dtype="bool[pyarrow]")},
                        index=list("abcdef"))


@pytest.mark.parametrize("frame", [lambda df: df, lambda df: as_dask(df, 2)], ids=["pandas", "dask"])
def test_arrow_bool_weights_with_missing_values_skip_and_raise(frame):
    df = frame(bools_with_na())
    ids = df.cumbatch.ids("w", 2, invalid="skip")
    ids = ids.compute() if hasattr(ids, "compute") else ids
    assert ids.tolist() == [0, pd.NA, 0, 0, pd.NA, 1]
    with pytest.raises(WeightError, match=r"weight column 'w' has 2 invalid value.*index 'b'"):
        df.cumbatch.ids("w", 2)


# ----------------------------------------------------------------- item 9b: limit strings


@pytest.mark.parametrize("text", ["9007199254740993.5", "1.00000000000000001", "0.99999999999999999",
                                  "4503599627370495.9999", "9007199254740993.5 B"])
def test_limit_strings_that_float64_would_move_across_a_whole_number_are_refused(text):
    with pytest.raises(ValueError, match="limit") as info:
        parse_limit(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, value", [
    ("9007199254740993", 2**53 + 1), ("0.1", 0.1), ("2.5", 2.5), ("1.5 KiB", 1536), ("0.5KB", 500),
    ("1e3", 1000), ("4503599627370495.5", 4503599627370495.5), ("1e-7", 1e-7),
])
def test_limit_strings_parse_exactly_or_to_the_nearest_float(text, value):
    got = parse_limit(text)
    assert got == value and type(got) is type(value)


def test_cli_refuses_a_limit_string_that_would_round(tmp_path):
    inp = tmp_path / "in.parquet"
    pd.DataFrame({"w": [1, 2, 3]}).to_parquet(inp, index=False)
    proc = cli("plan", inp, "-w", "w", "-l", "9007199254740993.5")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "9007199254740993.5" in lines[0], proc.stderr
