"""The export's Dask tasks: write one input partition's files, join the fragments of a file group."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..engine import batch_ids, batch_stats, weight_values
from ..options import BatchOptions
from .folder import OPEN, WORK, Folder, dumps, file_name, sha256
from .formats import concat, encode, ipc_bytes, ipc_read, reject_reasons, to_table


@dataclass
class TaskContext:
    """Everything a write task needs (pickled to workers)."""

    folder: Folder
    opts: BatchOptions
    is_float: bool
    fmt: str
    bpf: int
    schema: object  # pyarrow.Schema of the output files (id column included)
    keep_index: bool
    reason_column: str
    resuming: bool
    first_group: int  # groups below were written by earlier runs


def _number(v):
    if isinstance(v, (np.floating, float)):
        return float(v)
    return int(v)


def stats_of(ids, w, is_float) -> list:
    """``[[batch, rows, total], ...]`` for sorted ids (totals summed in row order).

    >>> stats_of(np.array([0, 0, 1]), np.array([1, 2, 3]), False)
    [[0, 2, 3], [1, 1, 3]]
    """
    w = np.ascontiguousarray(w, dtype=np.float64 if is_float else np.int64)
    batch, rows, total, _, _, _ = batch_stats(
        np.ascontiguousarray(ids, dtype=np.int64), w, np.zeros(len(ids), np.int64)
    )
    return [[int(b), int(r), _number(t)] for b, r, t in zip(batch, rows, total)]


def _group_stats(table, ctx: TaskContext) -> list:
    w = weight_values(table.column(ctx.opts.weight).to_pandas())[0]
    return stats_of(table.column(ctx.opts.name).to_numpy(), w, ctx.is_float)


def write_group(ctx: TaskContext, group: int, table, may_exist: bool, stats=None) -> dict:
    """Write one file group; with ``may_exist`` an existing file (from an interrupted run) is kept."""
    name = file_name(group, ctx.fmt)
    data = None
    kept = False
    if may_exist and ctx.resuming:
        try:
            data = ctx.folder.read(name)
            kept = True
        except FileNotFoundError:
            data = None
    if data is None:
        data = encode(table, ctx.fmt, (ctx.opts.name,))
        ctx.folder.write_atomic(name, data)
    return {"group": int(group), "file": name, "bytes": len(data), "sha256": sha256(data),
            "batches": stats if stats is not None else _group_stats(table, ctx), "kept": kept}


def _write_rejects(df: pd.DataFrame, invalid, k: int, ctx: TaskContext) -> int:
    import pyarrow as pa

    bad = df.iloc[np.flatnonzero(invalid)]
    reasons = reject_reasons(bad[ctx.opts.weight])
    if ctx.keep_index:
        bad = bad.reset_index()
    rej = pa.Table.from_pandas(bad, preserve_index=False)
    rej = rej.append_column(ctx.reason_column, pa.array(reasons, type=pa.string()))
    ctx.folder.write_atomic(f"{WORK}/rej/p{k:08d}.arrow", ipc_bytes(rej))
    return int(len(bad))


def export_partition(df: pd.DataFrame, k: int, entry, ctx: TaskContext) -> dict:
    """Write one input partition's batches (the task for partition ``k``); returns its record.

    File groups wholly inside the partition are written as files; the (at most two) at its
    edges as Arrow fragments in the work folder, for :func:`combine_group`.
    """
    out = {"part": k, "groups": [], "frags": [], "rejects": 0, "rows": 0}
    ids, prep = batch_ids(df, ctx.opts, ctx.is_float, entry)
    if prep.invalid is not None and prep.invalid.any():
        out["rejects"] = _write_rejects(df, prep.invalid, k, ctx)
    n = len(ids)
    out["rows"] = int(n)
    if n:
        rows = df if prep.keep is None else df.iloc[prep.keep]
        whole = to_table(rows, ids, ctx.opts.name, ctx.schema, ctx.keep_index)  # then zero-copy slices
        del rows
        _write_slices(whole, ids, stats_of(ids, prep.w, ctx.is_float), k, ctx, out)
    ctx.folder.write_atomic(f"{WORK}/parts/p{k:08d}.json", dumps(out))
    return out


def _write_slices(whole, ids, stats, k: int, ctx: TaskContext, out: dict) -> None:
    n = len(ids)
    groups = ids // ctx.bpf
    cuts = np.flatnonzero(groups[1:] != groups[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [n]])
    last = len(bounds) - 2
    first_batch = int(ids[0])
    for s, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        g = int(groups[a])
        table = whole.slice(a, b - a)
        if s == 0 or s == last:
            name = f"{WORK}/frag/g{g:010d}-p{k:08d}.arrow"
            ctx.folder.write_atomic(name, ipc_bytes(table))
            out["frags"].append([g, k, name])
        else:
            lo, hi = int(ids[a]) - first_batch, int(ids[b - 1]) - first_batch + 1
            out["groups"].append(write_group(ctx, g, table, may_exist=True, stats=stats[lo:hi]))


def combine_group(group: int, frags: list, ctx: TaskContext, is_last: bool) -> dict:
    """Join the fragments of a file group that spans partitions (or a partition edge) into its file."""
    tables = [ipc_read(ctx.folder.read(name)) for name in frags]
    table = concat(tables, ctx.schema)
    rec = write_group(ctx, group, table, may_exist=False)
    if is_last and ctx.fmt != "parquet":
        data = encode(table, "parquet", (ctx.opts.name,))
        ctx.folder.write_atomic(OPEN, data)
        rec["open"] = {"file": OPEN, "rows": int(table.num_rows), "bytes": len(data), "sha256": sha256(data)}
    ctx.folder.write_atomic(f"{WORK}/groups/g{group:010d}.json", dumps(rec))
    return rec
