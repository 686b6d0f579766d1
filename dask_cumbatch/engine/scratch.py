"""Working arrays a kernel needs only during one call, kept per thread for the next call.

Fresh memory costs a page fault for every 4 KiB the first time it is written: on the shared
virtual machines this project is measured on, more than most kernels take to read that much
(docs/performance.md). A summary's chain needs 8 bytes a row of such working memory (the prefix
sums of plain greedy, or the two int32 tables of the other rules), so each thread keeps its
arrays (up to :data:`MAX_BYTES` in all) for the next partition instead of asking the allocator
for new ones.

>>> a = scratch("doc", 4, np.int64)
>>> a.shape, a.dtype.name
((4,), 'int64')
>>> scratch("doc", 2, np.int32).base is a.base  # the same memory, a new view
True
"""
from __future__ import annotations

import threading

import numpy as np

MAX_BYTES = 32 << 20  # kept per thread, all names together; larger requests get fresh arrays
_local = threading.local()


def scratch(name: str, n: int, dtype) -> np.ndarray:
    """An uninitialised array of ``n`` items of ``dtype``, on memory this thread reuses for
    every call with the same ``name``: its contents are stale, and it is valid only until the
    next call with that name on this thread (so never return it, nor a view of it)."""
    dtype = np.dtype(dtype)
    nbytes = n * dtype.itemsize
    kept = getattr(_local, "buffers", None)
    if kept is None:
        kept = _local.buffers = {}
    buf = kept.get(name)
    if buf is None or buf.nbytes < nbytes:
        others = sum(b.nbytes for k, b in kept.items() if k != name)
        if others + nbytes > MAX_BYTES:
            return np.empty(n, dtype)
        buf = kept[name] = np.empty(max(nbytes, 1), np.uint8)
    return buf[:nbytes].view(dtype)
