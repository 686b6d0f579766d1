"""The CPU backend: the kernels of :mod:`.kernels`, compiled with numba (``njit``).

A backend module (see :mod:`dask_cumbatch.engine.backends`); arrays are NumPy arrays, so
:func:`asarray` and :func:`to_numpy` are the identity and :func:`check_available` does nothing.
The kernels' source lives in :mod:`.kernels` (no numba there), so that :mod:`.python` can run
the very same code uncompiled for tiny inputs. All compiled kernels release the GIL.

>>> import numpy as np
>>> starts_to_ids(np.array([True, False, True]), 0).tolist()
[0, 0, 1]
"""
from __future__ import annotations

import numpy as np
from numba import njit

from . import kernels
from .python import asarray, check_available, to_numpy  # noqa: F401  (NumPy arrays as they are)

I64_MAX = kernels.I64_MAX
NO_POSITION = kernels.NO_POSITION
CELL_MAX = kernels.CELL_MAX


def _compile_all() -> dict:
    namespace = dict(vars(kernels))
    for name in kernels.BLOCK_HELPERS:
        namespace[name] = njit(nogil=True, cache=True, fastmath={"reassoc"}, inline="never")(
            kernels.with_globals(getattr(kernels, name), namespace))
    for name in kernels.HELPERS:
        namespace[name] = njit(nogil=True, cache=True, inline="always")(kernels.with_globals(getattr(kernels, name), namespace))
    for name in kernels.COLD_HELPERS:
        namespace[name] = njit(nogil=True, cache=True, inline="never")(kernels.with_globals(getattr(kernels, name), namespace))
    return {name: njit(nogil=True, cache=True)(kernels.with_globals(getattr(kernels, name), namespace))
            for name in kernels.KERNELS} | {"grid_cell": namespace["grid_cell"]}


globals().update(_compile_all())
