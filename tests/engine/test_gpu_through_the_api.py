"""``device="gpu"`` through the public API (accessor, ``to_files``, the CLI) equals ``device="cpu"``.

Under numba-cuda's simulator (NumPy arrays, the GPU backend's kernels) or on a CUDA device with
CuPy; skipped when numba-cuda is not installed (the plain ``pytest`` run): the simulator step of
``.ci/run`` installs the ``gpusim`` extra and runs this file. The error without CuPy, device or
simulator is tested in ``tests/engine/test_backends.py`` (no extra needed).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from test_gpu_kernels import ON_DEVICE, simulator, tiles  # noqa: F401  (skips without numba-cuda)

import dask.dataframe as dd  # noqa: E402

from dask_cumbatch.engine import backend_for  # noqa: E402
from dask_cumbatch.engine.backends import gpu  # noqa: E402

OPTION_SETS = [
    dict(mode="greedy", by="k", max_rows=7),
    dict(mode="greedy", multiple=2, invalid="skip"),
    dict(mode="fill", cost="padded", by="k"),
    dict(mode="floor", max_rows=5, by="k"),
]


def frame(n=240, seed=3, invalid=False):
    rng = np.random.default_rng(seed)
    w = rng.random(n) * 9
    if invalid:
        w[rng.integers(0, n, 10)] = np.nan
    return pd.DataFrame({"w": w, "k": rng.integers(0, 4, n) // 3, "x": np.arange(n)})


def cli(*args, simulate=True):
    env = dict(os.environ)
    if simulate and not ON_DEVICE:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    else:
        env.pop("NUMBA_ENABLE_CUDASIM", None)
    return subprocess.run([sys.executable, "-m", "dask_cumbatch", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("kw", OPTION_SETS, ids=lambda kw: kw["mode"] + "-" + "-".join(kw)[5:])
def test_ids_and_plan_on_gpu_equal_cpu(kw):
    ddf = dd.from_pandas(frame(invalid=kw.get("invalid") == "skip"), npartitions=3)
    expected_ids = ddf.cumbatch.ids("w", 20, device="cpu", **kw).compute()
    expected_plan = ddf.cumbatch.plan("w", 20, device="cpu", **kw).batches
    with tiles(1, 2):  # the tiled walk and the scans, not the one-thread walk
        got_ids = ddf.cumbatch.ids("w", 20, device="gpu", **kw).compute()
        got_plan = ddf.cumbatch.plan("w", 20, device="gpu", **kw).batches
    assert got_ids.equals(expected_ids)
    pd.testing.assert_frame_equal(got_plan, expected_plan)


def test_pandas_frame_on_gpu_equals_cpu():
    pdf = frame(50)
    with tiles(1, 2):
        got = pdf.cumbatch.ids("w", 12, device="gpu")
    assert got.equals(pdf.cumbatch.ids("w", 12, device="cpu"))


def test_to_files_on_gpu_writes_the_cpu_files(tmp_path):
    ddf = dd.from_pandas(frame(), npartitions=3)
    ddf.cumbatch.to_files(tmp_path / "cpu", "w", 20, device="cpu", progress=False)
    with tiles(1, 2):
        ddf.cumbatch.to_files(tmp_path / "gpu", "w", 20, device="gpu", progress=False)
    cpu_out, gpu_out = (pd.read_parquet(tmp_path / d) for d in ("cpu", "gpu"))
    assert len(gpu_out) == 240
    pd.testing.assert_frame_equal(gpu_out, cpu_out)


def test_cli_export_and_plan_with_device_gpu(tmp_path):
    frame().to_parquet(tmp_path / "in.parquet")
    args = ["-w", "w", "-l", "20", "--by", "k", "--mode", "fill"]
    for device in ("cpu", "gpu"):
        done = cli("export", str(tmp_path / "in.parquet"), str(tmp_path / device), *args,
                   "--device", device, "--quiet")
        assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "gpu"), pd.read_parquet(tmp_path / "cpu"))
    plans = [cli("plan", str(tmp_path / "in.parquet"), *args, "--device", d, "--json") for d in ("cpu", "gpu")]
    assert all(p.returncode == 0 for p in plans), [p.stderr for p in plans]
    cpu_plan, gpu_plan = (json.loads(p.stdout) for p in plans)
    assert gpu_plan["options"].pop("device") == "gpu" and cpu_plan["options"].pop("device") == "cpu"
    assert gpu_plan == cpu_plan and gpu_plan["n_batches"] > 1


@pytest.mark.skipif(ON_DEVICE or importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cli_without_simulator_or_cupy_says_which_extra(tmp_path):
    frame().to_parquet(tmp_path / "in.parquet")
    done = cli("plan", str(tmp_path / "in.parquet"), "-w", "w", "-l", "20", "--device", "gpu",
               simulate=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--device gpu" in lines[0] and "pip install 'dask-cumbatch[gpu]'" in lines[0]


def test_auto_never_picks_the_simulator(monkeypatch):
    monkeypatch.setattr(gpu, "AUTO_MIN_ROWS", 1)
    assert backend_for("gpu").module is gpu  # the simulator (or a device) runs here
    expected = backend_for("gpu") if ON_DEVICE else backend_for("cpu")
    assert backend_for("auto", n_rows=10) is expected
    assert backend_for("auto", n_rows=None) is backend_for("cpu")
