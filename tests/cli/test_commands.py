"""The ``cumbatch`` command line: happy paths, one-line errors, JSON/plot output, subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from dask_cumbatch.cli import main


@pytest.fixture
def inp(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i, n in enumerate((200, 150)):
        pd.DataFrame({
            "w": rng.integers(1, 50, n),
            "f": rng.random(n),
            "k": np.repeat(["a", "b"], n // 2),
            "t": ["x"] * n,
        }).to_parquet(folder / f"p{i}.parquet", index=False)
    return folder


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, pattern, exit_code=1, prefix="cumbatch: error: "):
    assert code == exit_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), err
    assert "Traceback" not in err
    import re

    assert re.search(pattern, lines[0]), lines[0]


def test_export_status_and_rerun(inp, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(["export", inp, out, "--weight", "w", "--limit", "1KB"], capsys)
    assert code == 0 and err == ""  # stderr is not a TTY here: no progress bar
    assert "exported 350 rows" in stdout and str(out) in stdout
    m = json.loads((out / "_manifest.json").read_text())
    assert m["settings"]["limit"] == 1000 and all(b["total"] <= 1000 for b in m["batches"])
    code, stdout, err = run(["export", inp, out, "-w", "w", "-l", "1000"], capsys)
    assert code == 0 and "up to date" in stdout
    code, stdout, err = run(["status", out], capsys)
    assert code == 0 and "complete" in stdout and "350" in stdout and "open" in stdout
    code, stdout, err = run(["status", out, "--json", "--verify"], capsys)
    st = json.loads(stdout)
    assert st["state"] == "complete" and st["verified"] and st["rows"] == 350 and len(st["inputs"]) == 2
    code, stdout, err = run(["export", inp, out, "-w", "w", "-l", "1000", "--quiet"], capsys)
    assert code == 0 and stdout == "" and err == ""


def test_export_options_are_passed(inp, tmp_path, capsys):
    out = tmp_path / "o"
    code, stdout, err = run(["export", inp, out, "-w", "w", "-l", "100", "--mode", "fill", "--max-rows", "7",
                             "--by", "k", "--format", "csv", "--batches-per-file", "2", "--name", "bid"], capsys)
    assert code == 0, err
    s = json.loads((out / "_manifest.json").read_text())["settings"]
    assert (s["mode"], s["max_rows"], s["by"], s["format"], s["batches_per_file"], s["name"]) == \
        ("fill", 7, ["k"], "csv", 2, "bid")
    first = pd.read_csv(out / "part-00000000.csv")
    assert "bid" in first.columns and len(first) <= 14


def test_status_shows_every_result_option_that_is_set(inp, tmp_path, capsys):
    """The options line lists the weight, the limit, mode and cost, each other option that changes
    the result where it is not at its default (from the option spec), and the format."""
    out = tmp_path / "o"
    code, _, err = run(["export", inp, out, "-w", "w", "-l", "100", "--max-rows", "7", "--by", "k",
                        "--invalid", "skip", "--name", "bid", "--format", "csv"], capsys)
    assert code == 0, err
    code, stdout, err = run(["status", out], capsys)
    line = next(ln for ln in stdout.splitlines() if ln.startswith("  options"))
    assert line.split(None, 1)[1] == ("weight='w' limit=100 mode='greedy' cost='sum' max_rows=7 by=['k'] "
                                      "invalid='skip' name='bid' format='csv'")


def test_append_via_cli(inp, tmp_path, capsys):
    out = tmp_path / "o"
    other = tmp_path / "more"
    other.mkdir()
    (inp / "p1.parquet").rename(other / "p1.parquet")
    assert run(["export", inp, out, "-w", "w", "-l", "300", "--append"], capsys)[0] == 0
    (other / "p1.parquet").rename(inp / "p1.parquet")
    code, stdout, err = run(["export", inp, out, "-w", "w", "-l", "300", "--append"], capsys)
    assert code == 0 and stdout.startswith("appended 150 rows"), stdout
    code, stdout, err = run(["export", inp, out, "-w", "w", "-l", "301", "--append"], capsys)
    assert_one_line_error(code, err, r"other options \(limit=300 there, 301 now\)")
    pd.DataFrame({"w": [1]}).to_parquet(inp / "p0.parquet")  # an exported input changes
    code, stdout, err = run(["export", inp, out, "-w", "w", "-l", "300", "--append"], capsys)
    assert_one_line_error(code, err, r"p0\.parquet changed since it was exported")


def test_plan_text_json_and_plot(inp, tmp_path, capsys):
    code, stdout, err = run(["plan", inp, "-w", "w", "-l", "500"], capsys)
    assert code == 0 and err == ""
    assert "batches" in stdout and "350 rows" in stdout
    png = tmp_path / "hist.png"
    code, stdout, err = run(["plan", inp, "-w", "w", "-l", "500", "--json", "--plot", png], capsys)
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["n_rows"] == 350 and doc["n_batches"] == len(doc["batches"]) > 1
    assert set(doc["batches"][0]) == {"batch", "rows", "total", "max", "start", "stop"}
    assert all(b["total"] <= 500 for b in doc["batches"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_is_friendly(tmp_path, capsys):
    code, stdout, err = run(["demo", tmp_path / "d", "--rows", "20000", "--parts", "3", "--limit", "50000"], capsys)
    assert code == 0 and err == ""
    for word in ("batches", "rows", "files", "time", "where"):
        assert word in stdout
    assert "20,000" in stdout and str(tmp_path / "d" / "batches") in stdout
    code, stdout, err = run(["demo", tmp_path / "d", "--rows", "20000", "--parts", "3", "--limit", "50000",
                             "-q"], capsys)
    assert code == 0 and stdout == "" and err == ""


@pytest.mark.parametrize(
    "args, pattern, exit_code",
    [
        (["--limit", "5XB"], r"cannot read limit '5XB'", 2),  # usage errors: found before any work
        (["--limit", "0"], r"limit must be a finite number > 0", 2),
        (["--limit", "-3"], r"limit must be a finite number > 0, got -3", 2),
        (["--weight", "nope"], r"weight column 'nope' not found; available columns", 1),
        (["--weight", "t"], r"weight column 't' has dtype .*must be numeric", 1),
        (["--by", "zz"], r"--by column 'zz' not found", 1),
        (["--mode", "fill", "--multiple", "8"], r"--multiple applies to --mode greedy only", 2),
        (["--mode", "floor", "--cost", "padded"], r"use --cost sum", 2),
        (["--oversize", "raise", "--limit", "10"], r"above the limit 10", 1),
    ],
)
def test_export_errors_are_one_line(inp, tmp_path, capsys, args, pattern, exit_code):
    base = {"--weight": "w", "--limit": "1000"}
    extra = []
    i = 0
    while i < len(args):
        if args[i] in base:
            base[args[i]] = args[i + 1]
        else:
            extra += args[i:i + 2]
        i += 2
    argv = ["export", inp, tmp_path / "o"] + [x for kv in base.items() for x in kv] + extra
    code, stdout, err = run(argv, capsys)
    prefix = "cumbatch export: error: " if exit_code == 2 else "cumbatch: error: "
    assert_one_line_error(code, err, pattern, exit_code, prefix)
    assert not (tmp_path / "o" / "_SUCCESS").exists()
    assert not (tmp_path / "o").exists() or not any(p.name.startswith("part-") for p in (tmp_path / "o").iterdir())


def test_input_and_folder_errors(inp, tmp_path, capsys):
    code, _, err = run(["export", tmp_path / "nothing", tmp_path / "o", "-w", "w", "-l", "5"], capsys)
    assert_one_line_error(code, err, r"input not found: .*nothing")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    code, _, err = run(["export", bad, tmp_path / "o", "-w", "w", "-l", "5"], capsys)
    assert_one_line_error(code, err, r"cannot read the input")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("hi")
    code, _, err = run(["export", inp, busy, "-w", "w", "-l", "500"], capsys)
    assert_one_line_error(code, err, r"not empty .*--overwrite")
    code, _, err = run(["export", inp, busy, "-w", "w", "-l", "500", "--overwrite"], capsys)
    assert code == 0 and not (busy / "x.txt").exists()
    code, _, err = run(["status", inp], capsys)
    assert_one_line_error(code, err, r"holds files but no cumbatch export", exit_code=4)  # status: 4 = not an export


def test_invalid_weights_raise_or_skip(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    pd.DataFrame({"w": [1.0, np.nan, 3.0, -1.0, 2.0]}).to_parquet(folder / "a.parquet")
    code, _, err = run(["export", folder, tmp_path / "o", "-w", "w", "-l", "4"], capsys)
    assert_one_line_error(code, err, r"weight column 'w' has 2 invalid value\(s\).*pass --invalid skip\.")
    code, _, err = run(["export", folder, tmp_path / "o", "-w", "w", "-l", "4", "--invalid", "skip",
                        "--max-skips", "1"], capsys)
    assert_one_line_error(code, err, r"2 row\(s\) have invalid weights .*more than --max-skips 1")
    assert not (tmp_path / "o" / "_SUCCESS").exists()
    code, stdout, err = run(["export", folder, tmp_path / "o", "-w", "w", "-l", "4", "--invalid", "skip",
                             "--max-skips", "2"], capsys)
    assert code == 0 and "2 rows rejected" in stdout
    assert pd.read_parquet(tmp_path / "o" / "_cumbatch" / "rejects.pqt")["reason"].tolist() == ["NaN", "negative"]


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["export", "a", "b", "-l", "5"], r"the following arguments are required: --weight"),
        (["export", "a", "b", "-w", "w", "-l", "5", "--max-rows", "0"], r"--max-rows: expected a number >= 1"),
        (["export", "a", "b", "-w", "w", "-l", "5", "--mode", "best"], r"invalid choice: 'best'"),
        (["frobnicate"], r"invalid choice"),
        ([], r"required: COMMAND"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, pattern):
    code, _, err = run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    import re

    assert re.search(pattern, lines[0]), lines[0]


def test_help_and_version(capsys):
    code, stdout, _ = run(["--help"], capsys)
    assert code == 0 and "demo" in stdout and "export" in stdout
    code, stdout, _ = run(["--version"], capsys)
    assert code == 0 and "dask-cumbatch" in stdout


def test_console_script_and_module_in_subprocesses(inp, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "cumbatch")
    env = dict(os.environ, PYTHONWARNINGS="default")
    proc = subprocess.run([sys.executable, "-m", "dask_cumbatch", "export", str(inp), str(tmp_path / "o"),
                           "-w", "w", "-l", "2KiB"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "exported 350 rows" in proc.stdout
    if os.path.exists(exe):
        proc = subprocess.run([exe, "plan", str(inp), "-w", "w", "-l", "5XB"], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stdout == ""
