"""The output formats of the batch iterator: how a partition becomes batches of one format.

A format converts a whole partition once (in the prefetch thread); each batch is then a cheap
slice of it. :data:`FORMAT_TYPES` is the registry: a new format is one class and one entry.

>>> sorted(FORMAT_TYPES)
['arrow', 'cupy', 'numpy', 'pandas', 'torch']
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..options import hinted, keyword


def _numeric(arr) -> bool:
    return isinstance(arr, np.ndarray) and arr.dtype.kind in "biufc"


def to_numpy(frame: pd.DataFrame) -> dict:
    """``{column: numpy array}`` (the index is left out; ``reset_index()`` first to keep it).

    >>> to_numpy(pd.DataFrame({"a": [1, 2]}))["a"].tolist()
    [1, 2]
    """
    return {c: frame[c].to_numpy() for c in frame.columns}


class PandasFormat:
    """How batches of one format are made: a whole partition is converted once (in the
    prefetch thread), then each batch is a cheap slice of it; ``detach`` copies a batch
    that outlives its partition (in the shuffle buffer) so the partition can be freed."""

    def partition(self, frame):
        return frame

    def slice(self, part, a, b):
        return part.iloc[a:b]

    def detach(self, batch):
        out = batch.copy(deep=True)  # copies NumPy blocks; Arrow columns would still share
        for i in range(out.shape[1]):
            arr = out.iloc[:, i].array
            if hasattr(arr, "__arrow_array__"):  # Arrow-backed: take() compacts the buffers
                out.isetitem(i, arr.take(np.arange(len(arr))))
        return out


class NumpyFormat(PandasFormat):
    def partition(self, frame):
        return to_numpy(frame)

    def slice(self, part, a, b):
        return {c: v[a:b] for c, v in part.items()}

    def detach(self, batch):
        return {c: v.copy() for c, v in batch.items()}


class ArrowFormat(PandasFormat):
    def partition(self, frame):
        import pyarrow as pa

        return pa.Table.from_pandas(frame, preserve_index=False)

    def slice(self, part, a, b):
        return part.slice(a, b - a)

    def detach(self, batch):
        return batch.take(np.arange(batch.num_rows))


class CupyFormat(NumpyFormat):
    """Numeric columns go to the GPU once per partition; batches are device slices."""

    def partition(self, frame):
        import cupy

        return {c: cupy.asarray(v) if _numeric(v) else v for c, v in to_numpy(frame).items()}


class TorchFormat(NumpyFormat):
    """Numeric columns become CPU tensors that own their memory (one copy per batch)."""

    def slice(self, part, a, b):
        import torch

        out = {}
        for c, v in part.items():
            piece = v[a:b].copy()
            if _numeric(piece):
                try:
                    piece = torch.from_numpy(piece)
                except TypeError:  # a dtype this torch cannot hold: left as NumPy
                    pass
            out[c] = piece
        return out

    def detach(self, batch):
        return batch  # already owns its memory


FORMAT_TYPES = {"pandas": PandasFormat, "numpy": NumpyFormat, "arrow": ArrowFormat,
                "cupy": CupyFormat, "torch": TorchFormat}


def batch_bounds(ids: np.ndarray):
    """``(batch ids, start/stop bounds)`` of the runs of equal ids in a partition's id column.

    >>> batch_bounds(np.array([4, 4, 5, 6, 6]))
    ([4, 5, 6], [0, 2, 3, 5])
    """
    if len(ids) == 0:
        return [], []
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [len(ids)]]).tolist()
    return ids[bounds[:-1]].tolist(), bounds


_NEEDS = {
    "cupy": ("cupy", "CuPy and an NVIDIA GPU: pip install 'dask-cumbatch[gpu]' (or cupy-cuda12x)"),
    "torch": ("torch", "PyTorch: pip install torch (dask-cumbatch does not depend on it)"),
}


def require_format(fmt: str) -> None:
    """Raise a clear ``ImportError`` when ``fmt`` needs a library that is not installed.

    >>> require_format("numpy")
    """
    if fmt not in _NEEDS:
        return
    module, what = _NEEDS[fmt]
    try:
        __import__(module)
    except ImportError as err:
        message = (f"{keyword('format', fmt)} needs {what}; use {keyword('format', 'numpy')} "
                   "to get NumPy arrays instead")
        raise hinted(ImportError(message), ("format", fmt), ("format", "numpy")) from err
