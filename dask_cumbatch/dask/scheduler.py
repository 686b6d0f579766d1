"""Which scheduler runs the passes: a ``distributed`` client or a local one."""
from __future__ import annotations

import sys

import dask


def active_client():
    """The ``distributed.Client`` Dask would use now (None when a local scheduler is configured).

    >>> active_client() is None  # the threaded scheduler
    True
    """
    distributed = sys.modules.get("distributed")
    # No Client exists unless distributed was imported; importing it here would be slow
    # (docs/performance.md).
    if distributed is None:
        return None
    try:
        scheduler = dask.base.get_scheduler()
    except Exception:
        return None
    owner = getattr(scheduler, "__self__", None)
    return owner if isinstance(owner, distributed.Client) else None
