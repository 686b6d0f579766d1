"""The export's Dask tasks: write one input partition's files, join the fragments of a file group."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..engine import BatchContext, batch_ids, batch_stats, weight_values
from ..options import BatchOptions  # noqa: F401  (the examples)
from .folder import OPEN, WORK, Folder, dumps, file_name, sha256
from .formats import concat, encode, ipc_bytes, ipc_read, reject_reasons, to_table


@dataclass
class TaskContext:
    """Everything a write task needs (pickled to workers): the folder, the batching call's
    context (``batch``: options and the weights' kind) and the output's format."""

    folder: Folder
    batch: BatchContext
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
    w = weight_values(table.column(ctx.batch.opts.weight).to_pandas())[0]
    return stats_of(table.column(ctx.batch.opts.name).to_numpy(), w, ctx.batch.is_float)


def frag_name(group: int, part: int) -> str:
    """The work file holding the rows of file group ``group`` from input partition ``part``
    (``-1``: the previous run's open rows, on append). Built, never read from a record.

    >>> frag_name(3, 12), frag_name(3, -1)
    ('_cumbatch/work/frag/g0000000003-p00000012.arrow', '_cumbatch/work/frag/g0000000003-base.arrow')
    """
    who = "base" if part < 0 else f"p{part:08d}"
    return f"{WORK}/frag/g{group:010d}-{who}.arrow"


def write_checked(folder: Folder, name: str, data: bytes, files: dict) -> None:
    """Write ``data`` to ``name`` and note its size and checksum in ``files`` (a task record's);
    the task makes its files durable together before it writes its record."""
    folder.write_atomic(name, data, durable=False)
    files[name] = [len(data), sha256(data)]


def record_intact(folder: Folder, rec: dict) -> bool:
    """Whether every file a task record lists still has the size and checksum it recorded
    (a record without that list, from an older version, is never trusted).

    >>> import tempfile
    >>> record_intact(Folder(tempfile.mkdtemp()), {"files": {"a.bin": [1, "0" * 64]}})
    False
    """
    files = rec.get("files") if isinstance(rec, dict) else None
    if not isinstance(files, dict):
        return False
    for name, entry in files.items():
        if not _own_name(name, entry):
            return False
        size, digest = entry
        if folder.size(name) != size or sha256(folder.read(name)) != digest:
            return False
    return True


def _own_name(name, entry) -> bool:
    """Whether a record's file name is one the export writes (a data file, the open rows, or a
    work file) with a ``[size, sha256]`` entry: a record is data, never a path to follow."""
    if not isinstance(name, str) or not isinstance(entry, list) or len(entry) != 2:
        return False
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in name:
        return False
    return name == OPEN or name.startswith(WORK + "/") or (len(parts) == 1 and name.startswith("part-"))


def write_group(ctx: TaskContext, group: int, table, may_exist: bool, stats=None, files=None) -> dict:
    """Write one file group. With ``may_exist`` (resuming), an existing file with exactly the
    bytes this group encodes to is kept; any other is rewritten."""
    name = file_name(group, ctx.fmt)
    data = encode(table, ctx.fmt, (ctx.batch.opts.name,))
    kept = may_exist and ctx.resuming and ctx.folder.size(name) == len(data) and ctx.folder.read(name) == data
    if not kept:
        ctx.folder.write_atomic(name, data, durable=False)  # made durable with the task's other files
    digest = sha256(data)
    if files is not None:
        files[name] = [len(data), digest]
    return {"group": int(group), "file": name, "bytes": len(data), "sha256": digest,
            "batches": stats if stats is not None else _group_stats(table, ctx), "kept": kept}


def _write_rejects(df: pd.DataFrame, invalid, k: int, ctx: TaskContext, files: dict) -> int:
    import pyarrow as pa

    bad = df.iloc[np.flatnonzero(invalid)]
    reasons = reject_reasons(bad[ctx.batch.opts.weight])
    if ctx.keep_index:
        bad = bad.reset_index()
    rej = pa.Table.from_pandas(bad, preserve_index=False)
    rej = rej.append_column(ctx.reason_column, pa.array(reasons, type=pa.string()))
    write_checked(ctx.folder, rejects_name(k), ipc_bytes(rej), files)
    return int(len(bad))


def rejects_name(part: int) -> str:
    """The work file of input partition ``part``'s rejected rows.

    >>> rejects_name(2)
    '_cumbatch/work/rej/p00000002.arrow'
    """
    return f"{WORK}/rej/p{part:08d}.arrow"


def export_partition(df: pd.DataFrame, k: int, entry, ctx: TaskContext) -> dict:
    """Write one input partition's batches (the task for partition ``k``); returns its record.

    File groups wholly inside the partition are written as files; the (at most two) at its
    edges as Arrow fragments in the work folder, for :func:`combine_group`.
    """
    out = {"part": k, "groups": [], "frags": [], "rejects": 0, "rows": 0, "files": {}}
    ids, prep = batch_ids(df, ctx.batch, entry)
    if prep.invalid is not None and prep.invalid.any():
        out["rejects"] = _write_rejects(df, prep.invalid, k, ctx, out["files"])
    n = len(ids)
    out["rows"] = int(n)
    if n:
        rows = df if prep.keep is None else df.iloc[prep.keep]
        whole = to_table(rows, ids, ctx.batch.opts.name, ctx.schema, ctx.keep_index)  # then zero-copy slices
        del rows
        _write_slices(whole, ids, stats_of(ids, prep.w, ctx.batch.is_float), k, ctx, out)
    ctx.folder.make_durable(out["files"])  # before the record that vouches for them
    ctx.folder.write_atomic(part_record_name(k), dumps(out))
    return out


class PartitionWork:
    """What every partition's write task shares: the context and the plan's entries.

    A plain class (not a dataclass) so Dask ships it to the tasks as one object, once.
    """

    __slots__ = ("ctx", "entries")

    def __init__(self, ctx: TaskContext, entries):
        self.ctx = ctx
        self.entries = entries

    def __getstate__(self):
        return self.ctx, self.entries

    def __setstate__(self, state):
        self.ctx, self.entries = state


def export_mapped(df: pd.DataFrame, work: PartitionWork, partition_info=None) -> dict:
    """:func:`export_partition` as a ``map_partitions`` function, so that Dask fuses it with the
    partition's read: the frame is never a stored task result (nor sent between workers).

    Arrow's memory pool keeps what the read and the encoding freed; it is handed back to the
    system after each partition, or a worker on a tight memory limit stays over Dask's pause
    threshold with nothing left to run (docs/export.md, "Out of core").

    >>> import tempfile
    >>> from dask_cumbatch.engine import plan_frame
    >>> from dask_cumbatch.export.formats import output_schema
    >>> df, batch = pd.DataFrame({"w": [3, 3, 3]}), BatchContext(BatchOptions.make("w", 6), False)
    >>> ctx = TaskContext(Folder(tempfile.mkdtemp()), batch, "parquet", 1,
    ...                   output_schema(df.iloc[:0], "batch", False), False, "reason", False, 0)
    >>> ctx.folder.makedirs(WORK, WORK + "/frag", WORK + "/parts")
    >>> rec = export_mapped(df, PartitionWork(ctx, plan_frame(df, batch).entries), {"number": 0})
    >>> rec["part"], rec["rows"], len(rec["frags"])
    (0, 3, 2)
    """
    k = partition_info["number"]
    try:
        return export_partition(df, k, work.entries[k], work.ctx)
    finally:
        release_arrow_memory()


def release_arrow_memory() -> None:
    """Return the memory Arrow's pool keeps after frees to the system (cheap when none is kept).

    >>> release_arrow_memory()
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


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
            write_checked(ctx.folder, frag_name(g, k), ipc_bytes(table), out["files"])
            out["frags"].append([g, k])
        else:
            lo, hi = int(ids[a]) - first_batch, int(ids[b - 1]) - first_batch + 1
            out["groups"].append(write_group(ctx, g, table, may_exist=True, stats=stats[lo:hi], files=out["files"]))


def combine_groups(items: list, ctx: TaskContext) -> list:
    """Join several file groups in one task (``items``: ``(group, parts, is_last)`` for
    :func:`combine_group`): their files are made durable together, then their records are
    written (one ``syncfs`` for the lot instead of one per group)."""
    recs = [combine_group(group, parts, ctx, is_last) for group, parts, is_last in items]
    ctx.folder.make_durable([name for rec in recs for name in rec["files"]])  # before the records
    for rec in recs:
        ctx.folder.write_atomic(group_record_name(rec["group"]), dumps(rec))
    return recs


def combine_group(group: int, parts: list, ctx: TaskContext, is_last: bool) -> dict:
    """Join the fragments of a file group that spans partitions (or a partition edge) into its
    file; ``parts`` are the input partitions (-1: the previous run's open rows), in order.
    Returns its record, which :func:`combine_groups` writes once the files are durable."""
    tables = [ipc_read(ctx.folder.read(frag_name(group, k))) for k in parts]
    table = concat(tables, ctx.schema)
    files = {}
    rec = write_group(ctx, group, table, may_exist=False, files=files)
    if is_last and ctx.fmt != "parquet":
        data = encode(table, "parquet", (ctx.batch.opts.name,))
        write_checked(ctx.folder, OPEN, data, files)
        rec["open"] = {"file": OPEN, "rows": int(table.num_rows), "bytes": len(data), "sha256": files[OPEN][1]}
    rec["files"] = files
    return rec


def part_record_name(part: int) -> str:
    """The work file recording what input partition ``part``'s task wrote."""
    return f"{WORK}/parts/p{part:08d}.json"


def group_record_name(group: int) -> str:
    """The work file recording the joined file group ``group``."""
    return f"{WORK}/groups/g{group:010d}.json"
