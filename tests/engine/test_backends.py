"""The backend seam: lazy imports (no numba on ``import dask_cumbatch``), device choice, contract."""
from __future__ import annotations

import importlib
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch.engine import backend_for
from dask_cumbatch.engine import batch_stats as engine_batch_stats
from dask_cumbatch.engine import BatchContext
from dask_cumbatch.engine.backends import (
    CONSTANTS, GPU_LACKS, OPTIONAL_KERNELS, REQUIRED_KERNELS, SEAM, Backend, backend_of, results,
)

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
    assert backend_for("auto", n_rows=10**9).name == "cpu"


def fake_gpu(available: bool):
    """A GPU backend module that runs the CPU's required kernels (and offers nothing optional)."""
    gpu = types.ModuleType(GPU_MODULE)
    cpu = backend_for("cpu").module
    for name in REQUIRED_KERNELS + CONSTANTS + SEAM:
        setattr(gpu, name, getattr(cpu, name))
    gpu.AUTO_MIN_ROWS = 1000

    def check_available():
        if not available:
            raise RuntimeError("device='gpu' needs CuPy: pip install 'dask-cumbatch[gpu]'")

    gpu.check_available = check_available
    return gpu


def test_auto_picks_an_available_gpu_backend_for_large_partitions(monkeypatch):
    gpu = fake_gpu(available=True)
    monkeypatch.setitem(sys.modules, GPU_MODULE, gpu)
    assert backend_for("auto", n_rows=1000).module is gpu
    assert backend_for("auto", n_rows=999).name == "cpu"
    assert backend_for("auto").name == "cpu"
    assert backend_for("gpu").module is gpu


def test_auto_never_picks_a_gpu_backend_without_a_threshold(monkeypatch):
    gpu = fake_gpu(available=True)
    gpu.AUTO_MIN_ROWS = None  # as gpu.py sets it: measured slower than the CPU at every size
    monkeypatch.setitem(sys.modules, GPU_MODULE, gpu)
    assert backend_for("auto", n_rows=10**12).name == "cpu"
    assert backend_for("gpu").module is gpu  # asking for it by name still gets it


def test_unavailable_gpu_backend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, GPU_MODULE, fake_gpu(available=False))
    with pytest.raises(RuntimeError, match=r"\[gpu\]"):
        backend_for("gpu")
    assert backend_for("auto", n_rows=10**6).name == "cpu"


def offered(module_name: str) -> set:
    module = importlib.import_module(f"dask_cumbatch.engine.backends.{module_name}")
    return {name for name in OPTIONAL_KERNELS if getattr(module, name, None) is not None}


def test_gpu_backend_offers_what_the_cpu_does_but_for_the_listed_differences():
    """A kernel added to one backend and not the other fails here until GPU_LACKS says why."""
    cpu, gpu = offered("cpu"), offered("gpu")
    assert gpu <= cpu, f"the GPU offers what the CPU does not: {sorted(gpu - cpu)}"
    assert sorted(cpu - gpu) == sorted(GPU_LACKS), "update GPU_LACKS (the difference and its reason)"
    assert all(reason.strip() for reason in GPU_LACKS.values())


def test_every_backend_module_declares_every_optional_kernel():
    """Declared absent means set to None, not left out (third-party modules may leave them out)."""
    for name in ("cpu", "python", "gpu"):
        module = importlib.import_module(f"dask_cumbatch.engine.backends.{name}")
        undeclared = [kernel for kernel in OPTIONAL_KERNELS + REQUIRED_KERNELS if not hasattr(module, kernel)]
        assert undeclared == [], name
    assert offered("python") == offered("cpu") == set(OPTIONAL_KERNELS)


def test_the_cpu_kernels_are_the_contract_and_nothing_more():
    kernels = importlib.import_module("dask_cumbatch.engine.backends.kernels")
    assert set(kernels.KERNELS) | {"grid_cell"} == set(REQUIRED_KERNELS + OPTIONAL_KERNELS)


def test_a_backend_declares_absent_kernels_and_names_results():
    cpu = backend_for("cpu")
    assert cpu.offers("greedy_walk") and not cpu.without("greedy_walk").offers("greedy_walk")
    with pytest.raises(ValueError, match="no kernel"):
        cpu.offers("greedy_walkk")
    with pytest.raises(ValueError, match="optional"):
        cpu.without("walk_batches")
    res = cpu.floor_walk(np.array([3, 3, 3]), np.zeros(3, bool), np.int64(0), np.int64(0), False, 6.0, 6, True,
                         np.zeros(0, bool), np.zeros(0, np.int64), 0)
    assert isinstance(res, results.FloorWalk) and (res.count, res.s_out, res.cell, res.overflow) == (2, 9, 1, -1)
    stats = engine_batch_stats(np.array([0, 0, 1]), np.array([2, 3, 4]), np.arange(3))
    assert stats.total.tolist() == [5, 4] and stats.max.tolist() == [3, 4]
    batch, rows, total, mx, first, last = stats  # still a tuple for callers that unpack it
    assert rows.tolist() == [2, 1]


def test_patching_a_backend_module_patches_its_backends_after_they_read_it(monkeypatch):
    """A Backend keeps what it read (kernels are read ~50 times a partition); a write to its
    module's attribute, and the undoing of it, reach every Backend of that module."""
    cpu = backend_for("cpu")
    without = cpu.without("greedy_walk")
    real_walk, real_starts = cpu.walk_batches.__wrapped__, cpu.greedy_starts.__wrapped__  # read: kept
    assert without.greedy_walk is None and without.walk_batches.__wrapped__ is real_walk

    def patched(*args):
        return real_walk(*args)

    with monkeypatch.context() as patch:
        patch.setattr(cpu.module, "walk_batches", patched)
        patch.setattr(cpu.module, "greedy_starts", None)
        patch.setattr(cpu.module, "greedy_walk", patched)
        assert cpu.walk_batches.__wrapped__ is patched and without.walk_batches.__wrapped__ is patched
        assert not cpu.offers("greedy_starts") and cpu.greedy_starts is None
        assert without.greedy_walk is None  # declared absent whatever the module holds
    assert cpu.walk_batches.__wrapped__ is real_walk and cpu.greedy_starts.__wrapped__ is real_starts
    assert cpu.offers("greedy_starts") and without.walk_batches.__wrapped__ is real_walk


def test_a_module_without_a_required_kernel_is_no_backend():
    partial = types.ModuleType("partial_backend")
    partial.walk_batches = backend_for("cpu").module.walk_batches
    with pytest.raises(TypeError, match="lacks grid_cell"):
        Backend(partial)


def test_devices_are_checked_as_the_device_option_checks_them():
    from dask_cumbatch.options import OPTIONS

    with pytest.raises(ValueError) as by_engine:
        backend_for("tpu")
    with pytest.raises(ValueError) as by_option:
        OPTIONS["device"].check("tpu")
    assert str(by_engine.value) == str(by_option.value)
    assert backend_of(backend_for("cpu").module) is backend_for("cpu")


def test_a_device_resolves_once_per_finish_and_the_plan_names_its_backend(monkeypatch):
    """finish_stats resolves its backend once (the ids and the stats share it); the scan records
    the backend it ran on, and loads partitions again on that same backend."""
    from dask_cumbatch import engine
    from dask_cumbatch.engine import context as context_module
    from dask_cumbatch.options import BatchOptions

    df, opts = pd.DataFrame({"w": [3, 3, 3]}), BatchOptions.make("w", 6)
    plan = engine.plan_frame(df, BatchContext(opts, False))
    assert plan.backend in ("python", "cpu")
    calls = []
    real = context_module.backend_for

    def counted(device, n_rows=None):
        calls.append(device)
        return real(device, n_rows)

    monkeypatch.setattr(context_module, "backend_for", counted)
    assert engine.finish_stats(df, BatchContext(opts, False), plan.entries[0])["total"].tolist() == [6, 3]
    assert calls == ["cpu"]


@pytest.mark.parametrize("mode,extra", [("greedy", {}), ("fill", {}), ("floor", {}), ("floor", {"max_rows": 7}),
                                        ("greedy", {"multiple": 4})])
@pytest.mark.parametrize("dtype", ["int64", "float64", "fractional"])
def test_a_backend_without_any_optional_kernel_gives_the_same_ids(monkeypatch, mode, extra, dtype):
    """Every optional kernel declared absent: the engine's general paths, the CPU's ids."""
    import dask.dataframe as dd

    rng = np.random.default_rng(3)
    w = rng.integers(0, 40, 30_000)
    w = w + 0.1 if dtype == "fractional" else w.astype(dtype)
    df = pd.DataFrame({"w": w})
    want = dd.from_pandas(df, npartitions=6).cumbatch.ids("w", 100, mode=mode, **extra).compute()
    monkeypatch.setitem(sys.modules, GPU_MODULE, fake_gpu(available=True))
    assert backend_for("gpu").offered() == frozenset()
    got = dd.from_pandas(df, npartitions=6).cumbatch.ids("w", 100, mode=mode, device="gpu", **extra).compute()
    assert got.tolist() == want.tolist()


def test_chain_of_on_a_backend_without_chain_tables():
    from dask_cumbatch.engine.modes.greedy import chain_of
    from dask_cumbatch.options import BatchOptions

    w = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8], np.int64)
    spec = np.zeros(len(w), bool)
    spec[[0, 4, 5, 6, 8, 10, 11]] = True  # greedy batches of at most 10 from row 0
    no_table = backend_for("cpu").without("chain_table")
    fill, greedy = (BatchContext(BatchOptions.make("w", 10, mode=mode), False).on(no_table) for mode in ("fill", "greedy"))
    assert chain_of(w, np.zeros(len(w), bool), fill, spec) is None
    assert chain_of(w, np.zeros(len(w), bool), greedy, spec) is not None  # greedy_chain


def test_a_backend_first_used_by_many_threads_at_once_is_whole_in_each():
    """Eight threads resolve the CPU backend at the same moment in a fresh process: each gets
    the module after its import finished (a module stands in sys.modules while its import still
    runs; reading it from there gave 'backend ... lacks walk_batches' to all but the first)."""
    import subprocess
    import sys

    script = (
        "import threading\n"
        "from dask_cumbatch.engine.backends import backend_for\n"
        "barrier, errors = threading.Barrier(8), []\n"
        "def first_use():\n"
        "    barrier.wait()\n"
        "    try:\n"
        "        assert backend_for('cpu', 10**6).walk_batches is not None\n"
        "    except Exception as exc:\n"
        "        errors.append(repr(exc))\n"
        "threads = [threading.Thread(target=first_use) for _ in range(8)]\n"
        "for t in threads: t.start()\n"
        "for t in threads: t.join()\n"
        "print(errors or 'ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
