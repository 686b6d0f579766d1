"""The Python API as a new user meets it: signatures, messages, accepted weights, sizes, names.

* every accessor method shows the batching options (from the one spec) as keyword-only
  parameters with their defaults, and its docstring documents them;
* a misspelt option or column names the method called and the closest name;
* a NumPy array or list is a weight of a pandas frame when it has one value per row;
* errors raised from Python name keywords, the same errors from the command line name flags;
* ``repartition(partition_size=)`` groups whole batches into partitions near the target size;
* ``BatchPlan.padding_fraction`` is a deprecated alias of ``padding_ratio``.
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dask_cumbatch
from dask_cumbatch.cli import build_parser
from dask_cumbatch.options import OPTIONS, BatchOptions, for_cli, parse_limit

METHODS = ["ids", "assign", "plan", "repartition", "iter_batches", "to_files"]


def token_frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"doc": np.arange(n), "n_tokens": rng.integers(1, 60, n),
                         "lang": rng.choice(["en", "de"], n)})


def accessors():
    pdf = token_frame()
    return {"pandas": pdf.cumbatch, "dask": dd.from_pandas(pdf, npartitions=3).cumbatch}


# ------------------------------------------------------------------------------ signatures


def assert_shows_options(signature):
    for name, option in OPTIONS.items():
        param = signature.parameters[name]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert param.default == option.default, name
    assert not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


@pytest.mark.parametrize("kind", ["pandas", "dask"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_shows_the_options_in_its_signature(kind, method):
    bound = getattr(accessors()[kind], method)
    signature = inspect.signature(bound)
    assert_shows_options(signature)
    assert list(signature.parameters)[:2] == (["path", "weight"] if method == "to_files" else ["weight", "limit"])
    doc = inspect.getdoc(bound)
    for section in ("Parameters", "Returns", "Examples"):
        assert f"\n{section}\n---" in doc, (method, section)
    assert "mode : {'greedy', 'fill', 'floor'}, default 'greedy'" in doc
    assert "max_rows : int or None, default None" in doc
    assert "{batching_options}" not in doc


def test_series_ids_and_options_make_show_the_options():
    assert_shows_options(inspect.signature(pd.Series([1, 2]).cumbatch.ids))
    assert list(inspect.signature(pd.Series([1, 2]).cumbatch.ids).parameters)[0] == "limit"
    assert_shows_options(inspect.signature(BatchOptions.make))


def test_to_files_shows_the_export_settings():
    from dask_cumbatch.export import to_files

    params = inspect.signature(token_frame().cumbatch.to_files).parameters
    export_params = inspect.signature(to_files).parameters
    for name in ("format", "batches_per_file", "overwrite", "append", "resume", "max_skips", "progress"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default == export_params[name].default


def test_iter_batches_and_repartition_keep_their_own_parameters():
    pdf = token_frame()
    it_params = inspect.signature(pdf.cumbatch.iter_batches).parameters
    assert it_params["shuffle"].default is None and it_params["format"].default == "pandas"
    assert it_params["prefetch"].default == 1
    rp = inspect.signature(pdf.cumbatch.repartition).parameters
    assert rp["partition_size"].default is None and rp["index"].default is False


@pytest.mark.parametrize("method", ["ids", "assign", "repartition", "iter_batches"])
def test_docstrings_say_when_the_data_is_read(method):
    doc = " ".join(inspect.getdoc(getattr(token_frame().cumbatch, method)).split())
    assert "reads every partition once" in doc.lower()


def test_cli_flags_come_from_the_spec():
    parser = build_parser()
    for command in (["export", "in", "out"], ["plan", "in"]):
        args = parser.parse_args(command + ["-w", "n", "-l", "5", "--device", "auto", "--max-rows", "3"])
        assert args.device == "auto" and args.max_rows == 3
        defaults = parser.parse_args(command + ["-w", "n", "-l", "5"])
        for name, option in OPTIONS.items():
            assert getattr(defaults, name) == option.default, name
    with pytest.raises(SystemExit):
        parser.parse_args(["plan", "in", "-w", "n", "-l", "5", "--device", "tpu"])


# ------------------------------------------------------------------------------ did you mean


@pytest.mark.parametrize("method", METHODS)
def test_misspelt_option_names_the_method_and_the_closest_option(method, tmp_path):
    cb = token_frame().cumbatch
    args = (str(tmp_path / "o"), "n_tokens", 100) if method == "to_files" else ("n_tokens", 100)
    pattern = rf"^{method}\(\) got an unexpected keyword argument 'max_row'; did you mean 'max_rows'\?$"
    with pytest.raises(TypeError, match=pattern):
        getattr(cb, method)(*args, max_row=3)
    assert not (tmp_path / "o").exists()


def test_misspelt_method_own_keywords_are_suggested_too(tmp_path):
    cb = token_frame().cumbatch
    with pytest.raises(TypeError, match=r"iter_batches\(\) .* 'shufle'; did you mean 'shuffle'\?"):
        cb.iter_batches("n_tokens", 100, shufle="batches")
    with pytest.raises(TypeError, match=r"to_files\(\) .* 'overwrit'; did you mean 'overwrite'\?"):
        cb.to_files(str(tmp_path / "o"), "n_tokens", 100, overwrit=True)
    with pytest.raises(TypeError, match=r"^ids\(\) got an unexpected keyword argument 'modee'; did you mean 'mode'"):
        pd.Series([1, 2]).cumbatch.ids(5, modee="fill")


def test_unknown_option_without_a_close_one_lists_what_is_taken():
    with pytest.raises(TypeError, match=r"ids\(\) got an unexpected keyword argument 'zzz'; it takes .*max_rows"):
        token_frame().cumbatch.ids("n_tokens", 100, zzz=1)


@pytest.mark.parametrize("kind", ["pandas", "dask"])
def test_misspelt_column_suggests_the_closest(kind):
    cb = accessors()[kind]
    with pytest.raises(KeyError, match=r"weight column 'n_token' not found; did you mean 'n_tokens'\?"):
        cb.ids("n_token", 100)
    with pytest.raises(KeyError, match=r"by= column 'lan' not found; did you mean 'lang'\?"):
        cb.ids("n_tokens", 100, by="lan")


def test_misspelt_option_value_names_the_keyword():
    with pytest.raises(ValueError, match=r"mode='flor' is not one of 'greedy', 'fill', 'floor'"):
        token_frame().cumbatch.ids("n_tokens", 100, mode="flor")


# ------------------------------------------------------------------------------ array weights


@pytest.mark.parametrize("convert", [np.asarray, list], ids=["ndarray", "list"])
def test_array_weight_of_a_pandas_frame_is_accepted(convert):
    pdf = token_frame()
    weights = convert(pdf["n_tokens"].to_numpy())
    expected = pdf.cumbatch.ids("n_tokens", 100)
    got = pdf.cumbatch.ids(weights, 100)
    assert got.tolist() == expected.tolist() and got.index.equals(pdf.index)
    assigned = pdf.cumbatch.assign(weights, 100, name="b")
    assert assigned["b"].tolist() == expected.tolist() and list(assigned.columns) == list(pdf.columns) + ["b"]
    assert pdf.cumbatch.plan(weights, 100).n_batches == expected.max() + 1
    assert [b for b, _ in pdf.cumbatch.iter_batches(weights, 100)] == list(range(expected.max() + 1))


def test_array_weight_follows_a_non_default_index():
    pdf = token_frame().set_index(pd.Index(np.arange(200) * 7 + 3))
    got = pdf.cumbatch.ids(pdf["n_tokens"].to_numpy(), 100)
    assert got.index.equals(pdf.index)
    assert got.tolist() == pdf.cumbatch.ids("n_tokens", 100).tolist()


def test_array_weight_of_the_wrong_length_or_for_dask_says_what_is_accepted():
    pdf = token_frame()
    accepted = r"a column name, a Series aligned with the frame .*an array or list with one value per row"
    with pytest.raises(TypeError, match=accepted + r"; got ndarray of shape \(3,\) for 200 rows"):
        pdf.cumbatch.ids(np.array([1, 2, 3]), 100)
    with pytest.raises(TypeError, match=accepted):
        dd.from_pandas(pdf, npartitions=2).cumbatch.ids(pdf["n_tokens"].to_numpy(), 100)
    with pytest.raises(TypeError, match=accepted + "; got dict"):
        pdf.cumbatch.ids({"n_tokens": 1}, 100)


# ------------------------------------------------------------------------------ keyword vs flag


def invalid_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pd.DataFrame({"w": [1.0, np.nan, 2.0, -1.0]}).to_parquet(folder / "part.0.parquet")
    return folder


def test_python_errors_name_keywords(tmp_path):
    pdf = pd.DataFrame({"w": [1.0, np.nan, 2.0]})
    with pytest.raises(dask_cumbatch.WeightError) as info:
        pdf.cumbatch.ids("w", 4)
    assert "pass invalid='skip'" in str(info.value) and "--invalid" not in str(info.value)
    assert "pass --invalid skip" in for_cli(info.value)
    with pytest.raises(ValueError) as info:
        pdf.cumbatch.ids("w", 4, mode="fill", multiple=8)
    assert str(info.value) == "multiple= applies to mode='greedy' only, not mode='fill'"
    assert for_cli(info.value) == "--multiple applies to --mode greedy only, not --mode fill"


def test_command_line_errors_name_flags(tmp_path):
    folder = invalid_input(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    for args, flag, code in [([], "pass --invalid skip", 1), (["--mode", "fill", "--multiple", "8"], "--multiple applies", 2)]:
        proc = subprocess.run(
            [sys.executable, "-m", "dask_cumbatch", "export", str(folder), str(tmp_path / "out"), "-w", "w",
             "-l", "4", *args],
            capture_output=True, text=True, env=env, timeout=300,
        )
        assert proc.returncode == code, proc.stderr  # 2: a usage error, found before reading the data
        assert flag in proc.stderr and "invalid='skip'" not in proc.stderr and "mode='" not in proc.stderr
        assert proc.stderr.count("\n") == 1  # one line, no traceback


# ------------------------------------------------------------------------------ partition_size


def sized_frame(n=6000, seed=1, npartitions=7):
    rng = np.random.default_rng(seed)
    pdf = pd.DataFrame({"w": rng.integers(1, 40, n), "x": rng.random(n),
                        "s": [f"row-{i:08d}" for i in range(n)]})
    return pdf, dd.from_pandas(pdf, npartitions=npartitions)


@pytest.mark.parametrize("target", ["20KB", 50_000, "150KiB"])
def test_partition_size_groups_whole_batches_near_the_target(target):
    pdf, ddf = sized_frame()
    size = dask_cumbatch.parse_limit(target)
    out = ddf.cumbatch.repartition("w", 200, partition_size=target)
    parts = [p for p in out.to_delayed()]
    frames = [p.compute() for p in parts]
    expected = pdf.cumbatch.assign("w", 200)
    # the same rows in the same order, with the same ids
    pd.testing.assert_frame_equal(pd.concat(frames), expected, check_dtype=False)
    # whole batches: no batch id appears in two partitions
    owners = pd.concat([pd.Series(i, index=np.unique(f["batch"])) for i, f in enumerate(frames)])
    assert not owners.index.duplicated().any()
    sizes = [f.memory_usage(deep=True, index=True).sum() for f in frames]
    batch_sizes = expected.groupby("batch").apply(lambda b: b.memory_usage(deep=True, index=True).sum())
    biggest = batch_sizes.max()
    for k, (f, s) in enumerate(zip(frames, sizes)):
        assert s <= size * 1.05 or f["batch"].nunique() == 1, (k, s, size)
        if k + 1 < len(frames):  # closed because the next batch would not fit
            assert s + biggest > size * 0.95, (k, s, size)
    assert abs(len(frames) - sum(sizes) / size) <= max(2, 0.2 * len(frames))


def test_repartition_keeps_the_input_range_index():
    # partition_size plans with the input's per-row bytes: an output index of 8 bytes a row
    # (pandas 2 made one from a boolean mask) would overshoot the target
    pdf, ddf = sized_frame(n=900, npartitions=3)
    frames = [p.compute() for p in ddf.cumbatch.repartition("w", 200).to_delayed()]
    assert all(isinstance(f.index, pd.RangeIndex) for f in frames), [type(f.index) for f in frames]
    assert pd.concat(frames).index.tolist() == list(range(900))


def test_partition_size_with_index_and_on_pandas():
    pdf, ddf = sized_frame(n=3000, npartitions=4)
    out = ddf.cumbatch.repartition("w", 200, index=True, partition_size="30KB")
    assert out.known_divisions and out.npartitions > 4
    assert out.loc[5].compute()["w"].sum() <= 200
    assert out.compute().index.tolist() == pdf.cumbatch.ids("w", 200).tolist()
    got = pdf.cumbatch.repartition("w", 200, partition_size="30KB")
    assert isinstance(got, pd.DataFrame)
    pd.testing.assert_frame_equal(got, pdf.cumbatch.assign("w", 200), check_dtype=False)


def test_partition_size_checks():
    pdf, ddf = sized_frame(n=100, npartitions=2)
    with pytest.raises(ValueError, match="not both"):
        ddf.cumbatch.repartition("w", 200, batches_per_partition=2, partition_size="1MB")
    with pytest.raises(ValueError, match="cannot read limit"):
        ddf.cumbatch.repartition("w", 200, partition_size="5 bananas")
    with pytest.raises(ValueError, match="batches_per_partition must be >= 1"):
        ddf.cumbatch.repartition("w", 200, batches_per_partition=0)


# ------------------------------------------------------------------------------ padding ratio


def test_padding_ratio_can_exceed_one_and_the_old_name_warns():
    plan = pd.DataFrame({"w": [1, 1, 1, 9]}).cumbatch.plan("w", 100, cost="padded")
    padded = (plan.batches["max"] * plan.batches["rows"]).sum()
    assert plan.padding_ratio == padded / plan.batches["total"].sum() - 1 == 2.0
    with pytest.warns(FutureWarning, match="padding_ratio"):
        assert plan.padding_fraction == plan.padding_ratio
    assert plan.summary()["padding ratio"] == 2.0


@pytest.mark.parametrize("text, exact", [
    ("9007199254740993", 2**53 + 1),
    ("9007199254740993B", 2**53 + 1),
    ("9223372036854775807", 2**63 - 1),
    ("1.5KiB", 1536),
])
def test_integer_limit_strings_parse_exactly(text, exact):
    # integer strings were once read through float (2**53 + 1 became 2**53)
    assert parse_limit(text) == exact and isinstance(parse_limit(text), int)
    w = pd.DataFrame({"w": [exact - 1, 1, 1, 1]})
    assert w.cumbatch.ids("w", text).tolist() == w.cumbatch.ids("w", exact).tolist()


def test_integer_limit_string_on_the_command_line(tmp_path):
    pd.DataFrame({"w": [2**53, 1, 1, 1]}).to_parquet(tmp_path / "in.parquet")
    out = subprocess.run(
        [sys.executable, "-m", "dask_cumbatch", "plan", str(tmp_path / "in.parquet"), "-w", "w",
         "-l", "9007199254740993", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["n_batches"] == 2  # [2**53, 1] then [1, 1]
