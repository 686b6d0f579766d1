"""The backend seam: lazy imports (no numba on ``import dask_cumbatch``), device choice, contract."""
from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch.engine import backend_for

CONTRACT = ["walk_batches", "chain_table", "grid_cell", "floor_walk", "floor_risky", "cap_walk",
            "count_invalid", "starts_to_ids", "batch_stats", "I64_MAX", "NO_POSITION", "CELL_MAX",
            "asarray", "to_numpy", "check_available"]
GPU_MODULE = "dask_cumbatch.engine.backends.gpu"


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_import_loads_no_numba_until_ids_of_a_large_input_are_computed():
    # tiny inputs run the kernels as plain Python: numba loads for the large one only
    done = run_python(
        "import sys, pandas as pd, dask_cumbatch\n"
        "assert 'numba' not in sys.modules, 'numba imported by import dask_cumbatch'\n"
        "print(pd.DataFrame({'w': [3, 3, 3]}).cumbatch.ids('w', 6).tolist())\n"
        "assert 'numba' not in sys.modules, 'numba imported for 3 rows'\n"
        "print(pd.DataFrame({'w': [3] * 100_000}).cumbatch.ids('w', 6).max())\n"
        "assert 'numba' in sys.modules\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[0,", "0,", "1]", "49999"]


def test_cpu_backend_has_the_whole_contract():
    cpu = backend_for("cpu")
    missing = [name for name in CONTRACT if not hasattr(cpu, name)]
    assert missing == []
    a = np.arange(3)
    assert cpu.asarray(a) is a and cpu.to_numpy(a) is a


def test_gpu_without_cupy_or_simulator_raises_one_line_before_any_data(monkeypatch):
    import dask.dataframe as dd

    from dask_cumbatch.options import for_cli

    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.setitem(sys.modules, "cupy", None)  # as on a machine without CuPy
    with pytest.raises(RuntimeError, match=r"pip install 'dask-cumbatch\[gpu\]'") as err:
        backend_for("gpu")
    assert "\n" not in str(err.value) and "device='gpu'" in str(err.value)
    assert "--device gpu" in for_cli(err.value)

    def unread(_):
        raise AssertionError("a partition was read")

    ddf = dd.from_map(unread, [0, 1], meta=pd.DataFrame({"w": pd.Series([], dtype="int64")}))
    with pytest.raises(RuntimeError, match=r"dask-cumbatch\[gpu\]"):
        ddf.cumbatch.ids("w", 5, device="gpu")
    assert backend_for("auto", n_rows=10**9).__name__.endswith(".cpu")


def fake_gpu(available: bool):
    gpu = types.ModuleType(GPU_MODULE)
    gpu.AUTO_MIN_ROWS = 1000

    def check_available():
        if not available:
            raise RuntimeError("device='gpu' needs CuPy: pip install 'dask-cumbatch[gpu]'")

    gpu.check_available = check_available
    return gpu


def test_auto_picks_an_available_gpu_backend_for_large_partitions(monkeypatch):
    gpu = fake_gpu(available=True)
    monkeypatch.setitem(sys.modules, GPU_MODULE, gpu)
    assert backend_for("auto", n_rows=1000) is gpu
    assert backend_for("auto", n_rows=999).__name__.endswith(".cpu")
    assert backend_for("auto").__name__.endswith(".cpu")
    assert backend_for("gpu") is gpu


def test_auto_never_picks_a_gpu_backend_without_a_threshold(monkeypatch):
    gpu = fake_gpu(available=True)
    gpu.AUTO_MIN_ROWS = None  # as gpu.py sets it: measured slower than the CPU at every size
    monkeypatch.setitem(sys.modules, GPU_MODULE, gpu)
    assert backend_for("auto", n_rows=10**12).__name__.endswith(".cpu")
    assert backend_for("gpu") is gpu  # asking for it by name still gets it


def test_unavailable_gpu_backend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, GPU_MODULE, fake_gpu(available=False))
    with pytest.raises(RuntimeError, match=r"\[gpu\]"):
        backend_for("gpu")
    assert backend_for("auto", n_rows=10**6).__name__.endswith(".cpu")
