"""kill -9 an export (and an append) at random moments; re-running the same command finishes the
job, and the folder is byte-identical to an uninterrupted run: no duplicate, no lost row."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from dask_cumbatch.export import folder_status
from conftest import tree

pytestmark = pytest.mark.slow

LIMIT = "3000"


def write_inputs(folder, n_files, rows, first=0, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(first, first + n_files):
        pos = i * rows
        pd.DataFrame({
            "w": np.clip(rng.lognormal(3.0, 1.0, rows).astype("int64"), 1, None),
            "pos": np.arange(pos, pos + rows, dtype="int64"),
            "txt": pd.array([f"doc {j}" for j in range(pos, pos + rows)], dtype="str"),
        }).to_parquet(os.path.join(folder, f"in-{i:03d}.parquet"), index=False)


def command(inp, out, *extra):
    return [sys.executable, "-m", "dask_cumbatch", "export", str(inp), str(out), "-w", "w", "-l", LIMIT,
            "--quiet", *extra]


def run_to_end(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def n_parts(folder) -> int:
    try:
        return sum(1 for e in os.scandir(folder) if e.name.startswith("part-"))
    except FileNotFoundError:
        return 0


def kill_loop(cmd, out, first, total, seed):
    """kill -9 ``cmd`` at several moments: right after it planned (its work folder appears), then
    as the folder passes random fractions of the ``first..total`` data files. Each re-run resumes
    where the killed one stopped, so the moments are increasing. Returns the states seen."""
    rnd = random.Random(seed)
    work = os.path.join(out, "_cumbatch", "work", "run.json")
    targets = ["planned"] + sorted(first + int(rnd.uniform(0.05, 0.95) * (total - first)) for _ in range(4))
    states = []
    for target in targets:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            if os.path.exists(work) if target == "planned" else n_parts(out) >= target:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        proc.wait()
        state = folder_status(str(out))["state"] if os.path.exists(out) else "empty"
        states.append((target, proc.returncode, n_parts(out), state))
        if state == "complete":
            break
    return states


def check_rows(out, n_rows):
    m = json.loads(open(os.path.join(out, "_manifest.json")).read())
    files = list(dict.fromkeys(b["file"] for b in m["batches"]))
    pos = pd.concat([pd.read_parquet(os.path.join(out, f), columns=["pos"]) for f in files])["pos"]
    assert pos.tolist() == list(range(n_rows))  # no duplicate, no lost row, in order
    assert m["rows"] == n_rows


def test_kill9_export_resumes_to_identical_bytes(tmp_path):
    inp, ref, out = tmp_path / "in", tmp_path / "ref", tmp_path / "out"
    write_inputs(inp, n_files=16, rows=12_000)
    run_to_end(command(inp, ref))
    total = n_parts(ref)
    states = kill_loop(command(inp, out), out, 0, total, seed=1)
    killed = [s for s in states if s[1] == -signal.SIGKILL and s[3] == "interrupted export"]
    assert len(killed) >= 3, states
    run_to_end(command(inp, out))
    assert folder_status(str(out))["state"] == "complete"
    assert tree(out) == tree(ref)
    check_rows(out, 16 * 12_000)


def test_kill9_append_resumes_to_identical_bytes(tmp_path):
    inp, ref, out = tmp_path / "in", tmp_path / "ref", tmp_path / "out"
    write_inputs(inp, n_files=4, rows=12_000)
    run_to_end(command(inp, ref, "--append"))
    shutil.copytree(ref, out)
    write_inputs(inp, n_files=12, rows=12_000, first=4, seed=1)  # new inputs arrive
    before = tree(out)
    run_to_end(command(inp, ref, "--append"))
    states = kill_loop(command(inp, out, "--append"), out, n_parts(out), n_parts(ref), seed=2)
    killed = [s for s in states if s[1] == -signal.SIGKILL and s[3] == "interrupted append"]
    assert len(killed) >= 3, states
    # an interrupted append is reported, and a plain export is refused until it is repeated
    if folder_status(str(out))["state"] == "interrupted append":
        proc = subprocess.run(command(inp, out), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and "repeat it with --append" in proc.stderr
    run_to_end(command(inp, out, "--append"))
    after = tree(out)
    assert after == tree(ref)
    # the files of the first run, except its open last file, were never changed
    old_parts = sorted(n for n in before if n.startswith("part-"))
    assert all(after[n] == before[n] for n in old_parts[:-1])
    check_rows(out, 16 * 12_000)
