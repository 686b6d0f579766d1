"""The only door into the batching algorithm: summarize, scan, finish, stats.

Everything above the engine (the Dask layer, export, training) imports from here, never from
the engine's modules. (Transitional: these names still live in the flat modules until the
engine package is filled in.)
"""
from __future__ import annotations

from ..kernels import batch_stats
from ..scan import (
    HEAD_BUDGET,
    Carry,
    Entry,
    OversizeError,
    PartitionPlan,
    Summary,
    WeightError,
    batch_ids,
    finish_frame,
    finish_ids,
    finish_stats,
    floor_cap_summary as extra_summary,
    head_bytes_for,
    invalid_mask,
    plan_frame,
    same_key,
    scan,
    scan_floor_caps as scan_extra,
    summarize,
)
from ..scan import _weights as weight_values


def needs_extra_pass(opts) -> bool:
    """Whether the mode needs a second summary pass after the scan (floor with ``max_rows``)."""
    return opts.mode == "floor" and bool(opts.max_rows)


__all__ = [
    "HEAD_BUDGET", "Carry", "Entry", "OversizeError", "PartitionPlan", "Summary", "WeightError",
    "batch_ids", "batch_stats", "extra_summary", "finish_frame", "finish_ids", "finish_stats",
    "head_bytes_for", "invalid_mask", "needs_extra_pass", "plan_frame", "same_key", "scan",
    "scan_extra", "summarize", "weight_values",
]
