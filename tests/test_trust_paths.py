"""Exports you can trust, second round (issue 27, items 1, 2, 8 and part of 9): an output that
overlaps the input through links, globs or ``..`` is refused before anything is written or
deleted; entries a reader would take as data but the manifest does not list fail ``status
--verify`` and stop a resume or an append; ``_SUCCESS`` must be a regular file.

Real folders, real symbolic links, real subprocesses for the command line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch.export import ExportError, folder_status, tasks, to_files
from conftest import manifest, tree

ROWS = 60  # per input file


def write_inputs(path, n_files=2, seed=0, first=0):
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(first, first + n_files):
        pd.DataFrame({"w": rng.integers(1, 9, ROWS), "pos": np.arange(i * ROWS, (i + 1) * ROWS)}).to_parquet(
            os.path.join(path, f"in-{i:03d}.parquet"), index=False)
    return str(path)


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dask_cumbatch", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cumbatch: error: "), stderr
    return lines[0]


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """``P/in/`` holds the input (and ``P/in/old/`` one more file); ``link -> P/in`` and
    ``PL -> P`` (relative links, as ``ln -s`` makes them); the working directory is ``tmp_path``."""
    write_inputs(tmp_path / "P" / "in")
    write_inputs(tmp_path / "P" / "in" / "old", n_files=1, first=9)
    os.symlink("P/in", tmp_path / "link")
    os.symlink("P", tmp_path / "PL")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def spelled(path: str, layout, absolute: bool) -> str:
    return os.path.join(str(layout), path) if absolute else path


# ------------------------------------------------------------------ 1. overwrite never deletes an input
OVERWRITE_CASES = [
    ("P/in", "link"),               # the output is the input folder, through a link
    ("P/in", "link/"),              # ... with a trailing slash
    ("P/in", "PL"),                 # the output holds the input, through a link to its parent
    ("P/in/", "PL/"),
    ("link", "P/in"),               # the input through a link, the output its real folder
    ("PL/in", "P"),
    ("P/in", "PL/in/.."),           # `..` after a link
    ("P/in", "link/.."),            # lexically the working folder, which holds P
    ("P/in", "P/in/../in"),
    ("P/in/*.parquet", "PL/in"),    # a glob input
    ("P/in/in-000.parquet", "PL"),  # a single input file
]


@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
@pytest.mark.parametrize("inp, out", OVERWRITE_CASES)
def test_overwrite_never_deletes_an_input(layout, inp, out, absolute):
    before = tree(layout / "P")
    with pytest.raises(ExportError, match=r"input .* the output folder|output folder .* the input folder"):
        to_files(spelled(inp, layout, absolute), spelled(out, layout, absolute), "w", 5, overwrite=True,
                 progress=False)
    assert tree(layout / "P") == before


def test_overwrite_of_a_frame_never_deletes_its_files(layout):
    """A frame read from the input knows its files: the same check (Python ``overwrite=True``)."""
    before = tree(layout / "P")
    frame = dd.read_parquet("P/in")
    with pytest.raises(ExportError, match="input"):
        frame.cumbatch.to_files("PL", "w", 5, overwrite=True, progress=False)
    with pytest.raises(ExportError, match="input"):
        dd.read_parquet("link").cumbatch.to_files("P/in", "w", 5, overwrite=True, progress=False)
    assert tree(layout / "P") == before


def test_cli_overwrite_through_links_refuses_with_one_line(layout):
    """The issue's reproductions: ``ln -s in link; export in link --overwrite`` and the parent link."""
    before = tree(layout / "P")
    for inp, out in (("P/in", "link"), ("P/in", "PL")):
        proc = cli("export", inp, out, "--weight", "w", "--limit", 5, "--overwrite", "-q", cwd=layout)
        assert proc.returncode == 1
        line = one_line(proc.stderr)
        assert inp in line and out in line
    assert tree(layout / "P") == before


def test_clear_checks_the_input_again(layout):
    """``Job.clear`` refuses on its own too (the guard before ``to_files``'s lock is not the only one)."""
    from dask_cumbatch.export import job as job_module
    from dask_cumbatch.export.folder import Folder
    from dask_cumbatch.export.inputs import Source

    before = tree(layout / "P")
    folder = Folder("PL")
    j = job_module.Job(folder=folder, source=Source("P/in"), options=None, settings={}, max_skips=0,
                       progress=False, verify=False)
    with pytest.raises(ExportError, match="input"):
        j.clear(folder.listing())
    assert tree(layout / "P") == before


# ------------------------------------------------------------------ 2. output inside the input
INSIDE_CASES = [
    ("P/in", "link/out"),                 # the case: the output inside the input, through a link
    ("P/in", "link/./out/"),
    ("P/in", "PL/in/out"),
    ("link", "P/in/out"),
    ("P/in", "P/in"),                     # the input folder itself
    ("P/in/**/*.parquet", "P/in/out"),    # a recursive glob
    ("link/**/*.parquet", "P/in/out"),
    ("P/in/**", "PL/in/sub/out"),
    ("P/in/*/*.parquet", "P/in/out"),     # a glob whose `*` folder matches the output's name
    ("P/in/o*/*.parquet", "link/out"),
]


@pytest.mark.parametrize("inp, out", INSIDE_CASES)
def test_output_inside_the_input_is_refused_before_writing(layout, inp, out):
    before = tree(layout / "P")
    for append in (False, True):
        with pytest.raises(ExportError, match=r"output folder .* the input folder"):
            to_files(inp, out, "w", 5, append=append, progress=False)
    assert tree(layout / "P") == before


def test_cli_append_into_the_input_through_a_link_is_refused(layout):
    """The issue's reproduction: ``export in link/out --append`` twice gave every row twice."""
    before = tree(layout / "P")
    for _ in range(2):
        proc = cli("export", "P/in", "link/out", "--weight", "w", "--limit", 5, "--append", "-q", cwd=layout)
        assert proc.returncode == 1
        line = one_line(proc.stderr)
        assert "link/out" in line and "P/in" in line
    assert tree(layout / "P") == before and not os.path.exists(layout / "P" / "in" / "out")


def test_a_glob_that_cannot_reach_the_output_is_allowed(layout):
    """``in/*.parquet`` never lists ``in/out/...``: an output beside the files is fine, and an
    append of a new file takes each row once."""
    to_files("P/in/*.parquet", "link/out", "w", 5, progress=False)
    write_inputs("P/in", n_files=1, first=2)
    to_files("P/in/*.parquet", "link/out", "w", 5, append=True, progress=False)
    assert to_files("P/in/*.parquet", "link/out", "w", 5, append=True, progress=False).up_to_date
    assert sorted(pd.read_parquet("P/in/out")["pos"]) == list(range(3 * ROWS))


def test_an_input_file_found_inside_the_output_is_refused(layout):
    """A listed input that is a link into the output: each listed file is checked, resolved."""
    to_files("P/in/*/*.parquet", "out", "w", 5, progress=False)  # P/in/old/in-009.parquet
    os.symlink("../../../out/part-00000000.parquet", "P/in/old/z.parquet")  # P/in/back/part-*.parquet are the output's files
    before = tree(layout / "out")
    with pytest.raises(ExportError, match=r"input .*part-00000000\.parquet.* output folder"):
        to_files("P/in/*/*.parquet", "out", "w", 5, append=True, progress=False)
    assert tree(layout / "out") == before


def test_frame_source_inside_the_output_or_around_it_is_refused(layout):
    before = tree(layout / "P")
    with pytest.raises(ExportError, match=r"output folder .* the input folder"):
        dd.read_parquet("P/in").cumbatch.to_files("link/out", "w", 5, progress=False)
    with pytest.raises(ExportError, match=r"output folder .* the input folder"):
        dd.read_parquet("link").cumbatch.to_files("P/in/out", "w", 5, append=True, progress=False)
    assert tree(layout / "P") == before
