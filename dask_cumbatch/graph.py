"""The former home of the Dask layer, kept as an import path for code written against it.

The Dask layer now lives in :mod:`dask_cumbatch.dask`, one module per concern; import from
there. These names stay here because code outside the package (tests/test_core_cases.py among
it) imports them from ``dask_cumbatch.graph``.

>>> from dask_cumbatch.dask.summaries import plan_partitions as moved
>>> plan_partitions is moved
True
"""
from __future__ import annotations

from .dask.finish import batch_frame, ids_series, plan_stats
from .dask.prepared import Prepared, prepare_frame
from .dask.repartition import output_ranges, repartition
from .dask.scheduler import active_client
from .dask.summaries import plan_partitions
from .dask_compat import as_mapped

__all__ = [
    "Prepared", "active_client", "as_mapped", "batch_frame", "ids_series", "output_ranges",
    "plan_partitions", "plan_stats", "prepare_frame", "repartition",
]
