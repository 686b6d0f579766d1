"""The only door into the batching algorithm: summarize, scan, finish, stats.

Everything above the engine (the Dask layer, export, training) imports from here, never from
the engine's modules. The data flows: a pandas partition -> :func:`summarize` (map) ->
:func:`scan` over all summaries (one place) -> :class:`PartitionPlan` with one :class:`Entry`
per partition -> :func:`finish_ids` / :func:`finish_frame` / :func:`finish_stats` per
partition. Every step takes the call's :class:`BatchContext` (options, the weights' kind, the
backend). Modes plug in through :func:`register_mode`, kernels through :func:`backend_for`
(imported lazily: importing the engine loads no numba).

>>> import pandas as pd
>>> from dask_cumbatch.options import BatchOptions
>>> df, ctx = pd.DataFrame({"w": [3, 3, 3, 3]}), BatchContext(BatchOptions.make("w", 6), is_float=False)
>>> finish_ids(df, ctx, plan_frame(df, ctx).entries[0]).tolist()
[0, 0, 1, 1]
"""
from __future__ import annotations

from .backends import backend_for, gpu_available, gpu_path_available
from .context import BatchContext
from .finish import batch_ids, batch_stats, check_unchanged, finish_frame, finish_ids, finish_stats
from .modes import Mode, Step, mode_for, needs_extra_pass, register_mode, registered_modes, unregister_mode
from .partition import PartitionArrays, invalid_mask, prepare, weight_values
from .scan import (
    HEAD_BUDGET,
    check_summaries,
    extra_summary,
    head_bytes_for,
    plan_frame,
    scan,
    scan_extra,
    summarize,
    summarize_weights,
    weight_total,
)
from .state import (
    Carry,
    Entry,
    InputChangedError,
    OversizeError,
    PartitionPlan,
    Summary,
    WeightError,
    overflow_error,
    same_key,
)

__all__ = [
    "HEAD_BUDGET", "BatchContext", "Carry", "Entry", "InputChangedError", "Mode", "OversizeError",
    "PartitionArrays", "PartitionPlan", "Step", "Summary", "WeightError", "backend_for",
    "batch_ids", "batch_stats", "check_summaries", "check_unchanged", "extra_summary",
    "finish_frame", "finish_ids", "finish_stats", "gpu_available", "gpu_path_available", "head_bytes_for",
    "invalid_mask", "mode_for", "needs_extra_pass", "overflow_error", "plan_frame", "prepare",
    "register_mode", "registered_modes", "same_key", "scan", "scan_extra", "summarize", "summarize_weights",
    "unregister_mode", "weight_total", "weight_values",
]
