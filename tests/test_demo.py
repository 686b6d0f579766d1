"""``cumbatch demo``: where it writes, that a second run reuses the folder, and its progress bar.

Run as a real subprocess, as a new user would, in a fresh current directory.
"""
from __future__ import annotations

import os
import pty
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

SMALL = ["--rows", "3000", "--parts", "3", "--limit", "50000"]


def demo(cwd, *args, **kw):
    env = {**os.environ, "TMPDIR": str(cwd.parent / "tmp")}
    os.makedirs(env["TMPDIR"], exist_ok=True)
    return subprocess.run([sys.executable, "-m", "dask_cumbatch", "demo", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, **kw)


def rows_in(folder):
    return sum(pq.ParquetFile(folder / name).metadata.num_rows for name in os.listdir(folder)
               if name.endswith(".parquet"))


@pytest.fixture
def cwd(tmp_path):
    here = tmp_path / "work"
    here.mkdir()
    return here


def test_default_folder_is_named_printed_and_reused(cwd):
    first = demo(cwd, *SMALL)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # not a terminal: no progress bar
    root = cwd / "cumbatch-demo"
    assert sorted(os.listdir(cwd)) == ["cumbatch-demo"]
    assert sorted(os.listdir(root)) == ["batches", "input"]
    assert os.listdir(cwd.parent / "tmp") == []  # nothing left in a temporary folder
    assert f"where     {os.path.join('cumbatch-demo', 'batches')}" in first.stdout
    assert "rm -r cumbatch-demo" in first.stdout
    assert rows_in(root / "batches") == 3000
    inputs = {p: os.stat(root / "input" / p).st_mtime_ns for p in os.listdir(root / "input")}

    again = demo(cwd, *SMALL)
    assert again.returncode == 0, again.stderr
    assert sorted(os.listdir(cwd)) == ["cumbatch-demo"]
    assert {p: os.stat(root / "input" / p).st_mtime_ns for p in os.listdir(root / "input")} == inputs
    assert rows_in(root / "batches") == 3000  # overwritten, not appended


def test_rerun_with_fewer_parts_leaves_no_stale_input(cwd):
    assert demo(cwd, *SMALL).returncode == 0
    fewer = demo(cwd, "--rows", "2000", "--parts", "2", "--limit", "50000")
    assert fewer.returncode == 0, fewer.stderr
    root = cwd / "cumbatch-demo"
    assert sorted(os.listdir(root / "input")) == ["part-000.parquet", "part-001.parquet"]
    assert rows_in(root / "input") == rows_in(root / "batches") == 2000


def test_refuses_a_folder_that_is_not_a_demo(cwd):
    mine = cwd / "cumbatch-demo"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    r = demo(cwd, *SMALL)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "cumbatch: error: cumbatch-demo holds files that are not from cumbatch demo (thesis.tex); "
        "give the demo another folder"
    ]
    assert sorted(os.listdir(mine)) == ["thesis.tex"] and (mine / "thesis.tex").read_text() == "precious"


def read_all(fd) -> bytes:
    """Everything written to a pseudo-terminal, until its other end is closed."""
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the writer has closed the terminal
            return out
        if not chunk:
            return out
        out += chunk


def test_progress_bar_on_a_terminal(cwd):
    controller, terminal = pty.openpty()
    env = {**os.environ, "TMPDIR": str(cwd)}
    proc = subprocess.Popen([sys.executable, "-m", "dask_cumbatch", "demo", *SMALL], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=terminal, text=True)
    os.close(terminal)  # the child holds its own copy; EOF when it exits
    try:
        drawn = read_all(controller).decode()
        stdout = proc.communicate(timeout=300)[0]
    finally:
        os.close(controller)
    assert proc.returncode == 0, drawn
    assert "[" + "#" * 30 + "] 3/3 files" in drawn  # the input bar, complete
    assert "where" in stdout
