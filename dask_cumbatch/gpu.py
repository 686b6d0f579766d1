"""GPU support (CuPy, imported lazily): availability checks for ``device="gpu"``."""
from __future__ import annotations


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device.

    >>> isinstance(gpu_available(), bool)
    True
    """
    try:
        import cupy
    except ImportError:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device
        return False


def require_gpu() -> None:
    """Raise a clear error unless a GPU path can run."""
    if not gpu_available():
        raise RuntimeError(
            "device='gpu' needs CuPy and an NVIDIA GPU: pip install 'dask-cumbatch[gpu]' "
            "on a machine with CUDA, or use device='cpu'"
        )
    raise NotImplementedError(
        "the CuPy kernels are not part of this release; use device='cpu' (see docs/gpu.md)"
    )
