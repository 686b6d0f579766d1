"""Where an export's output may be: an output that overlaps the input through links, globs or ``..`` is
refused before anything is written or deleted; entries a reader would take as data but the manifest
does not list fail ``status --verify`` and stop a resume or an append; ``_SUCCESS`` must be a
regular file. Real folders, real symbolic links, real subprocesses for the command line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch.export import ExportError, folder_status, to_files
from conftest import manifest, tree
from test_writer_guarantees import interrupt

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


# ------------------------------------------------------------------ 8. entries readers would take as data
def exported(tmp_path, **kw):
    inp = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    to_files(inp, str(out), "w", 5, progress=False, **kw)
    return inp, out


def rows_read(out):
    """The rows each reader takes from the folder (an error counts: the reader took a file)."""
    got = {}
    for name, read in (("dask", lambda: len(dd.read_parquet(str(out)))),
                       ("pandas", lambda: len(pd.read_parquet(str(out)))),
                       ("pyarrow", lambda: pads.dataset(str(out)).count_rows())):
        try:
            got[name] = read()
        except Exception as exc:
            got[name] = type(exc).__name__
    return got


def plant(out, name):
    path = out / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith((".parquet", ".parq", ".pq", "_metadata")):
        shutil.copy(out / "part-00000000.parquet", path)
    else:
        path.write_text("w,pos\n1,1\n")


READ_AS_DATA = ["extra.parquet", "sub/x.parquet", "x.parq", "x.pq", "x.bin", "notes.txt", "sub/notes",
                "_x.parquet", ".x.parquet", "_cumbatch/x.parquet", "sub/.h/x.parquet", "_sub/x.pq", "_metadata"]


@pytest.mark.parametrize("name", READ_AS_DATA)
def test_entries_a_reader_takes_as_data_fail_verify(tmp_path, name):
    inp, out = exported(tmp_path)
    n = manifest(out)["rows"]
    assert rows_read(out) == {"dask": n, "pandas": n, "pyarrow": n}
    plant(out, name)
    assert rows_read(out) != {"dask": n, "pandas": n, "pyarrow": n}  # some reader takes it
    assert name in folder_status(str(out))["stray"]
    with pytest.raises(ExportError, match=f"{name}.*readers"):
        folder_status(str(out), verify=True)
    # a re-run (up to date) and an append refuse, naming it, and change nothing
    before = tree(out)
    with pytest.raises(ExportError, match=name):
        to_files(inp, str(out), "w", 5, progress=False)
    write_inputs(inp, n_files=1, first=2)
    with pytest.raises(ExportError, match=name):
        to_files(inp, str(out), "w", 5, append=True, progress=False)
    assert tree(out) == before


@pytest.mark.parametrize("name", ["_notes.txt", ".DS_Store", "_cumbatch/notes.txt", "_sub/readme", ".git/config"])
def test_entries_every_reader_skips_are_not_strays(tmp_path, name):
    inp, out = exported(tmp_path)
    n = manifest(out)["rows"]
    plant(out, name)
    assert rows_read(out) == {"dask": n, "pandas": n, "pyarrow": n}
    st = folder_status(str(out), verify=True)
    assert st["verified"] and st["stray"] == []
    write_inputs(inp, n_files=1, first=2)
    assert to_files(inp, str(out), "w", 5, append=True, progress=False).appended


def test_cli_status_verify_fails_on_a_stray_and_plain_status_warns(tmp_path):
    _, out = exported(tmp_path)
    plant(out, "sub/x.parquet")
    proc = cli("status", out, "--verify")
    assert proc.returncode == 3 and "sub/x.parquet" in one_line(proc.stderr)
    assert "complete" not in proc.stdout
    proc = cli("status", out)
    assert "sub/x.parquet" in proc.stdout and "sub/x.parquet" in proc.stderr


@pytest.mark.parametrize("name", ["extra.parquet", "_cumbatch/x.parquet", "part-00099999.parquet"])
def test_a_resume_refuses_a_stray_and_certifies_nothing(tmp_path, name):
    inp = write_inputs(tmp_path / "in")
    ref = tmp_path / "ref"
    to_files(inp, str(ref), "w", 5, progress=False)
    out = tmp_path / "out"
    interrupt(inp, str(out), limit=5)
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ref / "part-00000000.parquet", out / name)
    with pytest.raises(ExportError, match=name):
        to_files(inp, str(out), "w", 5, progress=False)
    assert folder_status(str(out))["state"] == "interrupted export"
    assert not (out / "_SUCCESS").exists() and not (out / "_manifest.json").exists()
    os.remove(out / name)
    to_files(inp, str(out), "w", 5, progress=False)
    assert {k: v for k, v in tree(out).items() if not k.startswith("_cumbatch/lock")} == \
        {k: v for k, v in tree(ref).items() if not k.startswith("_cumbatch/lock")}


def test_a_stray_landing_during_a_run_is_caught_before_certifying(tmp_path, monkeypatch):
    from dask_cumbatch.export import job as job_module

    inp = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    real = job_module.Run.build_manifest

    def with_a_stray(self, *args):
        shutil.copy(out / "part-00000000.parquet", out / "late.parquet")
        return real(self, *args)

    monkeypatch.setattr(job_module.Run, "build_manifest", with_a_stray)
    with pytest.raises(ExportError, match="late.parquet"):
        to_files(inp, str(out), "w", 5, progress=False)
    assert not (out / "_SUCCESS").exists() and not (out / "_manifest.json").exists()


def test_overwrite_removes_strays(tmp_path):
    inp, out = exported(tmp_path)
    ref = tree(out)
    plant(out, "_cumbatch/x.parquet")
    plant(out, "sub/x.parquet")
    to_files(inp, str(out), "w", 5, overwrite=True, progress=False)
    assert tree(out) == ref and folder_status(str(out), verify=True)["stray"] == []


# ------------------------------------------------------------------ 9a. _SUCCESS is a regular file
def _success_folder(path):
    os.mkdir(path)


def _success_dangling(path):
    os.symlink("nowhere", path)


def _success_link_to_file(path):
    open(path + ".real", "w").close()
    os.symlink(os.path.basename(path) + ".real", path)


@pytest.mark.parametrize("make", [_success_folder, _success_dangling, _success_link_to_file])
def test_success_must_be_a_regular_file(tmp_path, make):
    inp, out = exported(tmp_path)
    os.remove(out / "_SUCCESS")
    make(str(out / "_SUCCESS"))
    with pytest.raises(ExportError, match="_SUCCESS"):
        folder_status(str(out))
    proc = cli("status", out)
    assert proc.returncode != 0 and "_SUCCESS" in one_line(proc.stderr) and "complete" not in proc.stdout
    with pytest.raises(ExportError, match="_SUCCESS"):
        to_files(inp, str(out), "w", 5, progress=False)  # the up-to-date re-run does not certify it


@pytest.mark.parametrize("name", ["_x.csv", ".x.csv"])
def test_a_csv_a_glob_reader_takes_fails_verify(tmp_path, name):
    """``dd.read_csv("out/*.csv")`` matches ``_`` and ``.`` names at the top too."""
    _, out = exported(tmp_path, format="csv")
    n = manifest(out)["rows"]
    assert len(dd.read_csv(f"{out}/*.csv")) == n
    shutil.copy(out / "part-00000000.csv", out / name)
    assert len(dd.read_csv(f"{out}/*.csv")) > n
    with pytest.raises(ExportError, match=f"{name}.*readers"):
        folder_status(str(out), verify=True)
