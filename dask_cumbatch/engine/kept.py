"""Start flags kept in the process between the summary pass and the finish (bounded).

The speculative walk of a greedy/fill summary finds every start of its partition from an
empty batch (1 byte a row). Where the finish runs in the same process (Dask's threaded
scheduler, a pandas input, a worker that summarised the same partition), it walks the true
path only until it meets the speculative one and counts the kept flags from there, instead of
walking every row again. A miss (another process, evicted) falls back to the full walk: the
ids are the same either way. The finish checks row count and exact weight total first.

>>> import numpy as np
>>> key = keep(np.array([True, False, True]))
>>> kept(key).tolist(), kept("no-such-key")
([True, False, True], None)
"""
from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict

import numpy as np

KEPT_BYTES = 1 << 27  # flags kept per process, least recently used dropped first (128 MiB: 1.3e8 rows)
KEEP_MIN_ROWS = 1 << 15  # smaller partitions walk again: cheaper than the bookkeeping

_store: OrderedDict = OrderedDict()
_lock = threading.Lock()
_size = [0]


def keep(flags: np.ndarray) -> str | None:
    """Keep ``flags`` (not copied: the caller hands them over) and return their key.

    The key is unique across processes, so a finish elsewhere simply misses. Inside a
    ``dask.distributed`` worker nothing is kept (None): a worker's memory is the cluster's to
    manage (small workers pause near their limit), and the finish often runs elsewhere.

    >>> len(keep(np.zeros(2, dtype=bool)))
    32
    """
    if _in_cluster_worker():
        return None
    key = os.urandom(16).hex()
    with _lock:
        _store[key] = flags
        _size[0] += flags.nbytes
        while _size[0] > KEPT_BYTES and _store:
            _size[0] -= _store.popitem(last=False)[1].nbytes
    return key


def _in_cluster_worker() -> bool:
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def kept(key: str | None):
    """The flags kept under ``key`` in this process, or None.

    >>> kept(None) is None
    True
    """
    if key is None:
        return None
    with _lock:
        flags = _store.get(key)
        if flags is not None:
            _store.move_to_end(key)
        return flags


def forget_all() -> None:
    """Drop every kept flag array (tests; memory pressure).

    >>> forget_all(); kept_bytes()
    0
    """
    with _lock:
        _store.clear()
        _size[0] = 0


def kept_bytes() -> int:
    """Bytes of flags kept now.

    >>> kept_bytes() >= 0
    True
    """
    return _size[0]
