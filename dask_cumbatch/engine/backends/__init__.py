"""Kernel backends, chosen by ``device`` and imported lazily (``import dask_cumbatch`` loads no numba).

The backend contract: a backend is a module in this package that exposes

- the kernels, with the names, signatures and results of :mod:`.cpu`: ``walk_batches``,
  ``chain_table`` (a backend may set it to ``None``: then no chain table is built and the
  scan's fallback walk keeps the results exact), ``grid_cell``, ``floor_walk``,
  ``floor_risky``, ``cap_walk``, ``count_invalid``, ``starts_to_ids``, ``batch_stats``;
- the constants ``I64_MAX``, ``NO_POSITION`` and ``CELL_MAX``;
- ``asarray(numpy_array)``: host -> backend array (identity on the CPU), and
  ``to_numpy(array)``: backend array -> host (identity on the CPU). The engine passes every
  array through them at the kernel call (the seam), so kernels only ever see backend arrays
  and the engine only ever keeps host arrays;
- ``check_available()``: raises a clear error (naming the extra to install) when the backend
  cannot run here; a no-op on the CPU.

Tiny inputs (``n_rows`` < ``TINY_ROWS``) in a process that has not loaded numba get
:mod:`.python`: the same kernels (:mod:`.kernels`) run uncompiled, so a 10-row export pays
no numba import or cache load. A process walks at most ``TINY_ROWS`` rows in all that way;
after that (or once numba is loaded by anything) every call gets the compiled :mod:`.cpu`.

A GPU backend (``gpu.py``) additionally sets ``AUTO_MIN_ROWS``: ``device="auto"`` picks it for
partitions of at least that many rows when CuPy and a CUDA device are usable (never the
simulator, which ``simulated()`` reports); ``None``, as ``gpu.py`` sets it after measuring on
an H200, means never (see docs/gpu.md).

>>> backend_for("cpu").I64_MAX == 2**63 - 1
True
"""
from __future__ import annotations

import importlib
import sys
import threading

TINY_ROWS = 20_000  # rows a process walks in plain Python before it loads numba (about 0.1 s)
_tiny = {"left": TINY_ROWS}
_tiny_lock = threading.Lock()

from ...options import hinted


def backend_for(device: str = "cpu", n_rows: int | None = None):
    """The backend module for ``device`` ("cpu", "gpu" or "auto"), imported on first use.

    "gpu" is :mod:`.gpu` after its ``check_available()``, which raises one line naming the
    ``[gpu]`` extra when neither CuPy with a CUDA device nor numba-cuda's simulator
    (``NUMBA_ENABLE_CUDASIM=1``) is usable; the Dask layer calls this before any data is read.
    "auto" is the GPU backend when it runs here and ``n_rows >= AUTO_MIN_ROWS``; else the CPU.

    ``n_rows`` below ``TINY_ROWS`` may get :mod:`.python` (see the module docstring).

    >>> backend_for("auto", n_rows=10**6).__name__
    'dask_cumbatch.engine.backends.cpu'
    """
    if device == "gpu":
        gpu = importlib.import_module(".gpu", __name__)
        try:
            gpu.check_available()
        except RuntimeError as exc:  # the CLI shows the setting as --device gpu
            raise hinted(exc, ("device", "gpu"))
        return gpu
    if device == "auto" and n_rows is not None:
        gpu = _gpu_module()
        threshold = getattr(gpu, "AUTO_MIN_ROWS", None)  # None: auto never picks this backend
        if gpu is not None and threshold is not None and n_rows >= threshold and _on_device(gpu):
            return gpu
    elif device not in ("cpu", "auto"):
        raise ValueError(f"device={device!r} is not one of 'cpu', 'auto', 'gpu'")
    if n_rows is not None and _take_tiny(n_rows):
        return importlib.import_module(".python", __name__)
    return importlib.import_module(".cpu", __name__)


def _take_tiny(n_rows: int) -> bool:
    """Whether ``n_rows`` rows still fit the process's plain-Python budget (numba not loaded)."""
    if "numba" in sys.modules or n_rows >= TINY_ROWS:
        return False
    with _tiny_lock:
        if n_rows > _tiny["left"]:
            _tiny["left"] = 0  # from now on compiled: a long run of small inputs pays numba once
            return False
        _tiny["left"] -= n_rows
        return True


def gpu_available() -> bool:
    """True when CuPy is installed and a CUDA device is visible: ``device="gpu"`` runs on a GPU.

    numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``) is no GPU: under it this is False
    unless a device is there too (see :func:`gpu_path_available`).

    >>> isinstance(gpu_available(), bool)
    True
    """
    gpu = _gpu_module()
    if gpu is None:
        return False
    return _device_visible() if gpu.simulated() else _runs(gpu)


def gpu_path_available() -> bool:
    """True when ``device="gpu"`` can run here: on a CUDA device, or under numba-cuda's
    simulator (``NUMBA_ENABLE_CUDASIM=1`` with the ``gpusim`` extra), which runs the same
    kernels on the CPU, slowly.

    >>> gpu_path_available() >= gpu_available()
    True
    """
    gpu = _gpu_module()
    return gpu is not None and _runs(gpu)


def _gpu_module():
    """The GPU backend module; None when it cannot be imported here."""
    try:
        return importlib.import_module(".gpu", __name__)
    except ImportError:
        return None


def _on_device(backend) -> bool:
    """Whether ``backend`` runs on a real device: "auto" never picks the (slow) simulator."""
    simulated = getattr(backend, "simulated", None)
    return _runs(backend) and not (simulated and simulated())


def _device_visible() -> bool:
    """Whether CuPy is installed and sees a CUDA device (asked of CuPy, not of numba-cuda,
    whose simulator stands in for a device when ``NUMBA_ENABLE_CUDASIM=1``)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver
        return False


def _runs(backend) -> bool:
    try:
        backend.check_available()
    except Exception:  # no CuPy, no driver, no device: "auto" falls back to the CPU
        return False
    return True
