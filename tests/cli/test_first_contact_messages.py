"""What trips a new user on first contact:
the docs build without PyTorch, one name per parameter, "did you mean", one exit code for usage
errors, help that says what floor is, ``gpu_available()`` as documented, ``status`` that says
what it did not check and how far an interrupted run got, a Series with no columns, a plot
whose labels fit and integer totals printed as integers, and a README that can be pasted twice.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest

from conftest import failing_on_call

import dask_cumbatch  # noqa: F401  (registers the accessors)
from dask_cumbatch import cli
from dask_cumbatch.export import folder_status, tasks, to_files

ROOT = Path(__file__).resolve().parents[2]


def cumbatch(*args, **kw) -> subprocess.CompletedProcess:
    """``python -m dask_cumbatch ARGS`` in a subprocess, as a user runs it."""
    env = dict(os.environ, **kw.pop("env", {}))
    env.pop("CUMBATCH_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "dask_cumbatch", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env, **kw)


def error_line(proc: subprocess.CompletedProcess, prefix: str = "cumbatch") -> str:
    """The one line a failed command prints on stderr."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prefix}: error: "), proc.stderr
    return lines[0]


@pytest.fixture
def inp(tmp_path):
    """Four Parquet files of 250 rows with an integer weight ``w``."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(30)
    for i in range(4):
        pd.DataFrame({"w": rng.integers(1, 60, 250), "pos": np.arange(i * 250, (i + 1) * 250)}).to_parquet(
            folder / f"in-{i:02d}.parquet", index=False)
    return folder


# ------------------------------------------------------------------ 1. docs build without PyTorch


def api_doctests(extra_path=None) -> subprocess.CompletedProcess:
    """Run the docstring examples of dask_cumbatch/torch.py as docs/build.sh runs the API's."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                           "--doctest-modules", "dask_cumbatch/torch.py", "-rs"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_torch_examples_are_skipped_only_without_torch(tmp_path):
    hidden = tmp_path / "no-torch"
    (hidden / "torch").mkdir(parents=True)
    (hidden / "torch" / "__init__.py").write_text("raise ImportError('PyTorch hidden by the test')\n")
    without = api_doctests(hidden)
    assert without.returncode == 0, without.stdout + without.stderr
    assert "failed" not in without.stdout and re.search(r"\b[1-9]\d* skipped", without.stdout), without.stdout
    assert "needs PyTorch" in without.stdout  # the reason is shown (-rs)
    if importlib.util.find_spec("torch") is None:
        return  # without PyTorch here, the other half cannot run
    with_torch = api_doctests()
    assert with_torch.returncode == 0, with_torch.stdout
    passed = int(re.search(r"(\d+) passed", with_torch.stdout).group(1))
    assert passed >= 6 and "needs PyTorch" not in with_torch.stdout, with_torch.stdout


# ------------------------------------------------------------------ 2. to_files(source, path, ...)


def test_to_files_takes_source_as_documented_and_names_itself(tmp_path):
    import inspect

    df = pd.DataFrame({"w": [3, 3, 3]})
    result = to_files(source=df, path=str(tmp_path / "a"), weight="w", limit=6, progress=False)
    assert result.batches == 2
    documented = re.search(r"`dask_cumbatch\.export\.to_files\(([^)]*)\)`", (ROOT / "docs" / "export.md").read_text())
    names = [p.strip() for p in documented.group(1).split(",")][:4]
    assert names == list(inspect.signature(to_files).parameters)[:4] == ["source", "path", "weight", "limit"]
    with pytest.raises(TypeError, match=r"^to_files\(\) got an unexpected keyword argument 'mdoe'; "
                                        r"did you mean 'mode'\?$"):
        to_files(df, str(tmp_path / "b"), "w", 6, mdoe="fill")
    with pytest.raises(TypeError, match=r"^to_files\(\) got an unexpected keyword argument 'formt'; "
                                        r"did you mean 'format'\?$"):
        to_files(df, str(tmp_path / "b"), "w", 6, formt="csv")
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------ 3. did you mean


def test_did_you_mean_for_modes_and_columns():
    df = pd.DataFrame({"w": [1, 2, 3], "Key": list("aab")})
    with pytest.raises(ValueError, match=r"mode='gready' is not one of .*; did you mean 'greedy'\?"):
        df.cumbatch.ids("w", 5, mode="gready")
    with pytest.raises(KeyError, match=r"weight column 'W' not found; did you mean 'w'\?"):
        df.cumbatch.ids("W", 5)
    with pytest.raises(KeyError, match=r"by= column 'key' not found; did you mean 'Key'\?"):
        df.cumbatch.ids("w", 5, by="key")


def test_misspelt_and_abbreviated_flags_name_the_subcommand_help(inp, tmp_path):
    out = tmp_path / "out"
    proc = cumbatch("export", inp, out, "-w", "w", "-l", "5", "--limt", "5")
    assert proc.returncode == cli.EXIT_USAGE == 2
    assert error_line(proc, "cumbatch export") == (
        "cumbatch export: error: unrecognized argument --limt; did you mean --limit? "
        "(see cumbatch export --help)")
    proc = cumbatch("export", inp, out, "-w", "w", "-l", "5", "--max-row", "5")  # no abbreviations
    assert proc.returncode == 2
    assert "unrecognized argument --max-row; did you mean --max-rows?" in error_line(proc, "cumbatch export")
    proc = cumbatch("status", out, "--verif")
    assert proc.returncode == 2
    assert error_line(proc, "cumbatch status").endswith("did you mean --verify? (see cumbatch status --help)")
    proc = cumbatch("export", inp, out, "-w", "w", "-l", "5", "--mode", "gready")
    assert proc.returncode == 2 and "did you mean 'greedy'?" in error_line(proc, "cumbatch export")
    assert not out.exists()
    for parser in _all_parsers(cli.build_parser()):
        assert parser.allow_abbrev is False, parser.prog


def _all_parsers(parser):
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


# ------------------------------------------------------------------ 4. one exit code for usage errors


@pytest.mark.parametrize("args, message", [
    (["-l", "-5"], r"limit must be a finite number > 0, got -5$"),
    (["-l", "0"], r"limit must be a finite number > 0, got 0$"),
    (["-l", "5 apples"], r"cannot read limit '5 apples'"),
    (["-l", "5", "--max-rows", "0"], r"--max-rows: expected a number >= 1, got 0"),
    (["-l", "5", "--multiple", "8", "--mode", "fill"], r"--multiple applies to --mode greedy only"),
    (["-l", "5", "--batches-per-file", "0"], r"--batches-per-file: expected a number >= 1"),
])
def test_every_usage_error_exits_2_before_any_work(inp, tmp_path, args, message):
    out = tmp_path / "out"
    proc = cumbatch("export", inp, out, "-w", "w", *args)
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc, "cumbatch export")
    assert re.search(message, line.removesuffix(" (see cumbatch export --help)")) and line.endswith("(see cumbatch export --help)"), line
    assert "use a number" not in line or "apples" in line
    assert not out.exists()
    assert "| 2 | usage error" in (ROOT / "docs" / "cli.md").read_text()


def test_demo_limit_is_a_usage_error(tmp_path):
    proc = cumbatch("demo", tmp_path / "demo", "--rows", "100", "-l", "0")
    assert proc.returncode == 2 and "limit must be a finite number > 0" in error_line(proc, "cumbatch demo")
    assert not (tmp_path / "demo").exists()


# ------------------------------------------------------------------ 5. what floor is


def test_mode_help_says_floor_is_the_grid_of_the_exclusive_running_sum():
    from dask_cumbatch.options import OPTIONS

    helps = [cumbatch("export", "--help").stdout, cumbatch("plan", "--help").stdout,
             pd.DataFrame.cumbatch.ids.__doc__, OPTIONS["mode"].help]
    for text in helps:
        flat = " ".join(text.split())
        assert "cumsum // limit grid" not in flat and "the cumsum // limit" not in flat, flat
        assert "(cumsum - w) // limit" in flat, flat
    df = pd.DataFrame({"w": [4, 3, 5, 2, 6, 1]})  # what the help says, checked
    cells = (df.w.cumsum() - df.w) // 10
    assert df.cumbatch.ids("w", 10, mode="floor").tolist() == pd.factorize(cells)[0].tolist()


# ------------------------------------------------------------------ 6. gpu_available() as documented


def _python(code: str, **env) -> subprocess.CompletedProcess:
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=full)


def _cupy_with_device() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def test_gpu_available_means_cupy_and_a_device_even_under_the_simulator():
    on_device = _cupy_with_device()
    for env in ({"NUMBA_ENABLE_CUDASIM": "1"}, {"NUMBA_ENABLE_CUDASIM": "0"}):
        proc = _python("from dask_cumbatch.engine import gpu_available; print(gpu_available())", **env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(on_device), (env, proc.stdout)
    from dask_cumbatch.engine.backends import gpu_path_available

    sim = _python("from dask_cumbatch.engine.backends import gpu_path_available as f; print(f())",
                  NUMBA_ENABLE_CUDASIM="1")
    simulator = importlib.util.find_spec("numba.cuda") is not None and _python(
        "from numba.cuda.core import config", NUMBA_ENABLE_CUDASIM="1").returncode == 0
    assert sim.stdout.strip() == str(on_device or simulator), sim.stderr
    assert gpu_path_available() in (True, False)


@pytest.mark.skipif(_cupy_with_device(), reason="a CUDA device is present: device='gpu' runs")
def test_device_gpu_error_names_the_simulator_route():
    proc = _python("import pandas as pd, dask_cumbatch\n"
                   "pd.DataFrame({'w': [1, 2]}).cumbatch.ids('w', 5, device='gpu')", NUMBA_ENABLE_CUDASIM="0")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "pip install 'dask-cumbatch[gpu]'" in last, last
    assert "NUMBA_ENABLE_CUDASIM=1" in last and "dask-cumbatch[gpusim]" in last, last


# ------------------------------------------------------------------ 7. status


def test_status_says_files_were_not_verified_and_how(inp, tmp_path):
    out = tmp_path / "out"
    to_files(str(inp), str(out), "w", 300, progress=False)
    part = out / "part-00000000.parquet"
    data = bytearray(part.read_bytes())
    data[10] ^= 1
    part.write_bytes(bytes(data))  # same size: only a checksum sees it
    proc = cumbatch("status", out)
    assert proc.returncode == 0
    first = proc.stdout.splitlines()[0]
    assert first == f"{out}: complete (files not verified: add --verify to check every file's checksum)"
    assert json.loads(cumbatch("status", out, "--json").stdout)["verified"] is False
    proc = cumbatch("status", out, "--verify")
    assert proc.returncode == cli.STATUS_CORRUPT == 3 and "part-00000000.parquet" in error_line(proc)


def test_status_exit_codes_are_distinct_from_usage_errors(inp, tmp_path):
    assert cli.STATUS_MISSING not in (cli.EXIT_USAGE, cli.STATUS_COMPLETE, cli.STATUS_INTERRUPTED,
                                      cli.STATUS_CORRUPT)
    missing = cumbatch("status", tmp_path / "nothing")
    assert missing.returncode == cli.STATUS_MISSING == 4, missing.stderr
    assert missing.stdout.strip() == f"{tmp_path / 'nothing'}: empty or missing (no export yet)"
    file = cumbatch("status", inp / "in-00.parquet")  # a regular file: no export there
    assert file.returncode == cli.STATUS_MISSING, file.stderr
    assert error_line(file).endswith("in-00.parquet is a file, not an export folder")
    assert cumbatch("status").returncode == cli.EXIT_USAGE
    out = tmp_path / "out"
    to_files(str(inp), str(out), "w", 300, progress=False)
    (out / "_manifest.json").write_text("null")  # a manifest, but not one: corrupt
    null = cumbatch("status", out)
    assert null.returncode == cli.STATUS_CORRUPT, null.stderr
    assert "_manifest.json" in error_line(null)
    codes = (ROOT / "docs" / "cli.md").read_text()
    assert "| 4 | missing" in codes and "| 2 | usage error" in codes


def test_interrupted_status_reports_rows_and_batches_done_of_the_total(inp, tmp_path, monkeypatch):
    import dask.dataframe as dd

    out = tmp_path / "out"
    ddf = dd.read_parquet(str(inp), split_row_groups=False)
    plan = ddf.cumbatch.plan("w", 300)
    real = tasks.export_partition
    monkeypatch.setattr(tasks, "export_partition", failing_on_call(real, 3))  # the 3rd partition task crashes
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="simulated"):
        to_files(str(inp), str(out), "w", 300, progress=False)
    monkeypatch.setattr(tasks, "export_partition", real)
    records = [json.loads(p.read_text()) for p in sorted((out / "_cumbatch" / "work" / "parts").glob("*.json"))]
    assert len(records) == 2  # the two tasks before the crash

    st = folder_status(str(out))
    progress = st["progress"]
    assert st["state"] == "interrupted export"
    assert progress["partitions_done"] == 2 and progress["partitions_total"] == 4
    assert progress["rows_done"] == sum(r["rows"] for r in records) == 500
    assert progress["rows_total"] == plan.n_rows == 1000
    assert progress["batches_total"] == plan.n_batches
    assert 0 < progress["batches_done"] < plan.n_batches
    proc = cumbatch("status", out)
    assert proc.returncode == cli.STATUS_INTERRUPTED
    assert (f"  progress  500 of 1,000 rows, {progress['batches_done']:,} of {plan.n_batches:,} batches "
            "written (2 of 4 partitions)") in proc.stdout, proc.stdout
    assert json.loads(cumbatch("status", out, "--json").stdout)["progress"] == progress
    run_record = out / "_cumbatch" / "work" / "run.json"
    saved = run_record.read_text()
    run_record.write_text(json.dumps({k: v for k, v in json.loads(saved).items() if k != "planned"}))
    assert "progress" not in folder_status(str(out))  # a record of an older version: no totals to report
    run_record.write_text(saved)

    to_files(str(inp), str(out), "w", 300, progress=False)  # the same command finishes it
    done = folder_status(str(out))
    assert done["state"] == "complete" and done["batches"] == plan.n_batches and "progress" not in done


# ------------------------------------------------------------------ 8. a Series has no columns


def test_series_accessor_by_a_name_says_the_series_has_no_columns():
    s = pd.Series([1, 2, 3, 4], name="tokens")
    with pytest.raises(KeyError) as err:
        s.cumbatch.ids(5, by="x")
    message = err.value.args[0]
    assert "'weight'" not in message and "available columns" not in message
    assert message == ("by='x' names a column, and a Series has none: put the weights and the key in a "
                       "DataFrame and batch that: df.cumbatch.ids('tokens', limit, by='x')")
    with pytest.raises(KeyError, match=r"a Series has none: .* df\.cumbatch\.ids\('weight', limit, by=\['x', 'y'\]\)"):
        pd.Series([1, 2]).cumbatch.ids(5, by=["x", "y"])
    with pytest.raises(TypeError, match="unhashable"):  # keys as values are not taken (yet): as on a frame
        s.cumbatch.ids(5, by=pd.Series(list("aabb")))


# ------------------------------------------------------------------ 9. the plot and the summary


def test_plot_keeps_its_axis_labels_inside_the_figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plan = pd.DataFrame({"w": np.random.default_rng(0).integers(1, 500, 5000)}).cumbatch.plan("w", 4096)
    ax = plan.plot()
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for label in (ax.xaxis.label, ax.yaxis.label, ax.title):
        ext = label.get_window_extent(renderer)
        assert ext.x0 >= box.x0 and ext.y0 >= box.y0 and ext.x1 <= box.x1 and ext.y1 <= box.y1, label.get_text()
    assert all(float(t).is_integer() for t in ax.get_yticks()), ax.get_yticks()  # batch counts
    plt.close(fig)


BIG = 4620693217682128901  # not a float64: printed through float it becomes ...896


def test_int_totals_are_printed_as_ints(tmp_path):
    df = pd.DataFrame({"w": np.array([BIG, 5, BIG, 10, BIG, 6], dtype="int64")})
    plan = df.cumbatch.plan("w", BIG + 10)
    assert plan.batches["total"].tolist() == [BIG + 5, BIG + 10, BIG + 6]
    summary = plan.summary()
    assert (summary["total min"], summary["total median"], summary["total max"]) == (BIG + 5, BIG + 6, BIG + 10)
    assert all(type(summary[k]) is int for k in ("total min", "total median", "total max", "rows median"))
    assert "batch totals: min 4,620,693,217,682,128,906  median 4,620,693,217,682,128,907  " \
           "max 4,620,693,217,682,128,911" in repr(plan), repr(plan)

    df.to_parquet(tmp_path / "big.parquet")
    text = cumbatch("plan", tmp_path / "big.parquet", "-w", "w", "-l", BIG + 10)
    assert text.returncode == 0, text.stderr
    assert "min 4,620,693,217,682,128,906" in text.stdout and "e+18" not in text.stdout, text.stdout
    doc = json.loads(cumbatch("plan", tmp_path / "big.parquet", "-w", "w", "-l", BIG + 10, "--json").stdout)
    assert (doc["summary"]["total min"], doc["summary"]["total median"], doc["summary"]["total max"]) == \
        (BIG + 5, BIG + 6, BIG + 10)
    assert doc["limit"] == BIG + 10 and [b["total"] for b in doc["batches"]] == [BIG + 5, BIG + 10, BIG + 6]
    small = pd.DataFrame({"w": [1619, 2000, 1700]}).cumbatch.plan("w", 2000)
    assert small.summary()["total min"] == 1619 and type(small.summary()["total min"]) is int
    assert "min 1,619  median 1,700  max 2,000" in repr(small)
    even = pd.DataFrame({"w": [3, 4]}).cumbatch.plan("w", 4).summary()
    assert even["total median"] == 3.5  # the middle of two ints is a float only when it must be


def test_float_totals_stay_floats():
    plan = pd.DataFrame({"w": [0.5, 0.25, 0.75]}).cumbatch.plan("w", 1.0)
    summary = plan.summary()
    assert isinstance(summary["total min"], float) and summary["total max"] == 0.75


# ------------------------------------------------------------------ 10. README and getting started


def test_readme_says_how_long_the_tests_take_and_what_turns_skips_on():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "about 7 minutes on 2 cores" in readme
    assert '-m "not slow"' in readme and "`slow`" in readme
    for extra in ("gpusim", "torch"):
        assert f".[test,{extra}]" in readme or f"[{extra}]" in readme, extra


def test_getting_started_lists_every_extra_and_what_it_adds():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    page = (ROOT / "docs" / "getting-started.md").read_text()
    rows = dict(re.findall(r"^\| `([\w-]+)` \| (.*?) \|", page, re.M))
    assert set(extras) <= set(rows), set(extras) - set(rows)
    for name, requirements in extras.items():
        if name in ("test", "docs"):
            continue  # listed as "pytest, hypothesis, ..."
        for req in requirements:
            package = re.match(r"[\w.-]+", req).group(0)
            assert f"`{package}" in rows[name], (name, package, rows[name])
