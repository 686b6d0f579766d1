"""dask-cumbatch: cut ordered tables into contiguous batches by cumulative weight.

Exact, parallel and out of core, on pandas and Dask. ``import dask_cumbatch`` registers the
``cumbatch`` accessor on pandas and Dask DataFrames and Series.

>>> import pandas as pd, dask_cumbatch
>>> pd.DataFrame({"w": [3, 3, 3, 3]}).cumbatch.ids("w", 6).tolist()
[0, 0, 1, 1]
"""
from .accessor import CumbatchDataFrameAccessor, CumbatchSeriesAccessor, register
from .options import BatchOptions, parse_limit
from .engine import Carry, InputChangedError, OversizeError, WeightError
from . import errors
from .result import BatchPlan
from .push import PushBatcher

__version__ = "0.1.0"
__all__ = [
    "BatchOptions",
    "BatchPlan",
    "Carry",
    "CumbatchDataFrameAccessor",
    "CumbatchSeriesAccessor",
    "InputChangedError",
    "OversizeError",
    "WeightError",
    "PushBatcher",
    "parse_limit",
]

register()
