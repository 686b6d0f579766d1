"""One export or append into a folder, as named phases.

:class:`Job` decides what the folder needs (a fresh export, the resumption of an interrupted
run, an append, or nothing); :class:`Run` carries one run through its phases: plan, open the
work folder, write the partitions, join the edge groups, write the rejects, build and commit
the manifest.
"""
from __future__ import annotations

import contextlib
import json
import re
import uuid
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from dask import delayed

from ..dask import prepared, summaries
from ..dask_compat import as_mapped
from ..engine import Carry, scan, summarize, weight_values
from ..options import BatchOptions, keyword
from . import tasks
from .folder import (
    CONTROL, HOLDER, LEGACY_OPEN, LEGACY_REJECTS, LEGACY_WORK, LOCK, MANIFEST, OPEN, REJECTS, RETIRED, RUN,
    SUCCESS, TMP, WORK, ExportError, Folder, dumps, export_error, file_name, load_json, redo_hint, sha256,
)
from .formats import concat, encode, ipc_bytes, ipc_read, output_schema, parquet_read
from .inputs import Source, changed_input, consumed_prefix, flat_inputs, input_paths, inputs_diff, same_inputs
from .manifest import (
    LEGACY_VERSION, MANIFEST_KIND, MANIFEST_VERSION, check_same_settings, columns_diff, has_success, manifest_files,
    stray_entries, stray_error, upgraded, validate_manifest, verify_batches, verify_files, with_checksum,
)
from .progress import compute, progress_context

OVERWRITE = ("overwrite", True)
APPEND = ("append", True)


@dataclass
class FolderTotals:
    """An export folder after a run: its ``path`` and the ``batches``, ``rows`` and ``files`` of
    the whole folder (not only the run's), as :class:`ExportResult` and ``FollowResult`` report them.

    >>> FolderTotals("out", batches=2, rows=10, files=2).rows
    10
    """

    path: str
    batches: int = 0
    rows: int = 0
    files: int = 0


@dataclass
class ExportResult(FolderTotals):
    """What :func:`to_files` did.

    ``batches``/``rows``/``files`` describe the whole folder after the run; ``files_written``
    and ``files_skipped`` this run's work (skipped: already complete from an earlier, interrupted
    or finished run); ``rejects`` the rows left out (``invalid="skip"``) in the whole folder,
    ``new_rows`` the rows this run added.

    >>> ExportResult("out", batches=2, rows=10, files=2, files_written=2).summary()
    '2 batches, 10 rows, 2 files in out (2 file(s) written, 0 kept; 0 rejected; 0.0 s)'
    """

    files_written: int = 0
    files_skipped: int = 0
    rejects: int = 0
    new_rows: int = 0
    seconds: float = 0.0
    appended: bool = False
    resumed: bool = False
    up_to_date: bool = False

    def summary(self) -> str:
        """A one-line description, e.g. for logs.

        >>> ExportResult("out", up_to_date=True).summary()
        '0 batches, 0 rows, 0 files in out (up to date; 0 rejected; 0.0 s)'
        """
        what = "up to date" if self.up_to_date else (
            f"{self.files_written} file(s) written, {self.files_skipped} kept")
        return (f"{self.batches:,} batches, {self.rows:,} rows, {self.files:,} files in {self.path} "
                f"({what}; {self.rejects:,} rejected; {self.seconds:.1f} s)")


@dataclass
class Job:
    """An export into one folder: decides what the folder needs and runs it (see module doc)."""

    folder: Folder
    source: Source
    options: BatchOptions
    settings: dict
    max_skips: int | None
    progress: bool
    verify: bool
    client: object = None
    result: ExportResult = None
    executed: bool = False

    def run(self, append: bool, overwrite: bool, resume: bool) -> ExportResult:
        """Bring the folder up to date with the source; returns what was done."""
        folder = self.folder
        self.result = ExportResult(path=folder.url)
        tidy_control(folder)
        listing = folder.listing()
        if overwrite:
            self.clear(listing)
            listing = folder.listing()
        if migrate_legacy(folder, listing):
            listing = folder.listing()
        for _ in range(4):
            done = self.step(listing, append, resume)
            if done is not None:
                return done
            listing = folder.listing()
        raise ExportError("internal error: the export did not settle")  # pragma: no cover

    def step(self, listing, append, resume):
        """One decision on the folder as ``listing`` shows it: runs what is due, or returns the
        result when the folder is up to date."""
        folder = self.folder
        has_work = folder.exists(WORK)
        run = load_json(folder, RUN, "the run record") if has_work else None
        if run is None and has_work:  # a run that stopped before it started writing
            folder.remove(WORK)
        manifest = load_json(folder, MANIFEST, "the manifest") if MANIFEST in listing else None
        if run is not None:
            self.keep_full_hash(run.get("inputs"))
            current = self.current(run.get("inputs"), append)
            self.check_interrupted(run, current, append, resume)
            self.check_strays_before_resume(run, listing)
            run["inputs"] = current[: len(run["inputs"])]  # the same inputs, with today's fingerprints
            self.result.resumed = True
            self.execute(run, fresh=False)
        elif manifest is not None:
            return self.continue_export(manifest, listing, append)
        elif data_names(listing):
            names = ", ".join(data_names(listing)[:5])
            raise export_error(
                f"output folder {folder.url} is not empty and holds no finished cumbatch export "
                f"(found {names}); choose an empty folder or pass {keyword(*OVERWRITE)}", OVERWRITE)
        else:
            self.execute({"kind": "export", "settings": self.settings, "inputs": self.source.files,
                          "first_new": 0, "base": None}, fresh=True)
        return None

    def continue_export(self, manifest, listing, append):
        """The folder holds a finished export: up to date, or append the new inputs."""
        folder = self.folder
        validate_manifest(manifest, folder, listing)
        stray = stray_entries(folder, manifest_files(manifest), listing)
        if stray:
            raise stray_error(folder, stray)
        check_same_settings(manifest["settings"], self.settings, f"{folder.url} holds an export")
        self.keep_full_hash(manifest["inputs"])
        current = self.current(manifest["inputs"], append)
        if same_inputs(manifest["inputs"], current):
            if not has_success(folder, listing):
                folder.touch(SUCCESS)
            return self.finish_result(manifest, up_to_date=not self.executed)
        if not append:
            raise export_error(
                f"{folder.url} holds an export of other inputs ({inputs_diff(manifest['inputs'], current)}); "
                f"pass {keyword(*APPEND)} to add new inputs, or {keyword(*OVERWRITE)} to replace it",
                APPEND, OVERWRITE)
        first_new = len(manifest["inputs"]) if self.source.frame is not None else \
            consumed_prefix(manifest["inputs"], current)
        self.execute({"kind": "append", "settings": self.settings, "inputs": current,
                      "first_new": first_new, "base": manifest}, fresh=True)
        return None

    def current(self, consumed, append) -> list:
        """The inputs after this run: listed files, or for a DataFrame source on append the
        consumed ones plus this frame (unless it is the last one consumed; for a frame that reads
        files, plus its files not consumed yet, see :meth:`Source.new_frame_files`)."""
        current = self.source.files
        if self.source.frame is None or not append or not isinstance(consumed, list):
            return current
        if "files" in current[0]:  # a frame that reads files: only the files not consumed yet
            new = self.source.new_frame_files(consumed)
            return consumed + [dict(current[0], files=new)] if new else consumed
        if consumed and same_inputs(consumed[-1:], current[:1]):
            return consumed
        return consumed + current

    def keep_full_hash(self, recorded) -> None:
        """Inputs recorded with their whole-file sha256 (``verify_inputs``) are checked by it on
        every later run, and the new ones recorded with it, with or without the option."""
        if not self.source.full_hash and isinstance(recorded, list) and any(
                isinstance(f, dict) and "sha256" in f for f in flat_inputs(recorded)):
            self.source.hash_fully()

    def finish_result(self, manifest, up_to_date) -> ExportResult:
        """The result for a folder whose manifest is ``manifest``."""
        r = self.result
        r.batches = len(manifest["batches"])
        r.rows = int(manifest.get("rows", 0))
        r.files = len({b["file"] for b in manifest["batches"]})
        r.rejects = int(manifest.get("skipped", 0))
        r.up_to_date = up_to_date
        if up_to_date and not r.files_skipped:
            r.files_skipped = r.files
        return r

    def clear(self, listing):
        """Empty the folder for ``overwrite``: never one that holds, is, or lies inside an input
        (links resolved; checked again here, next to the deletion)."""
        folder = self.folder
        clash = self.source.output_clash(folder)
        if clash is not None:
            raise export_error(f"{keyword(*OVERWRITE)} refused: {clash}", OVERWRITE)
        for name in data_names(listing):
            folder.remove(name)
        for name in folder.listing(CONTROL):
            if f"{CONTROL}/{name}" not in (LOCK, HOLDER):
                folder.remove(f"{CONTROL}/{name}")

    def check_strays_before_resume(self, run, listing) -> None:
        """Refuse to resume into a folder holding entries a reader takes as data that neither the
        appended-to manifest lists nor the run may have written (its own data files are checked
        against the new manifest before it is certified)."""
        base = run.get("base")
        own = re.compile(r"part-[0-9]{8,}\." + re.escape(str(run["settings"].get("format"))))
        stray = [p for p in stray_entries(self.folder, manifest_files(base) if base else {}, listing)
                 if not own.fullmatch(p)]
        if stray:
            raise stray_error(self.folder, stray)
        has_success(self.folder, listing)  # a _SUCCESS folder or link: refused before any work

    def check_interrupted(self, run, current, append, resume):
        """Check that this call may finish the interrupted ``run`` (same options and inputs)."""
        url = self.folder.url
        if not isinstance(run, dict) or run.get("kind") not in ("export", "append") \
                or not isinstance(run.get("inputs"), list) or not isinstance(run.get("settings"), dict) \
                or not isinstance(run.get("first_new"), int):
            raise export_error(f"{RUN} in {url} is damaged; {redo_hint()[0]}", OVERWRITE)
        if run.get("base") is not None:
            run["base"] = upgraded(validate_manifest(run["base"]))
        if not resume:
            raise export_error(f"{url} holds an interrupted export; resume it, or pass "
                               f"{keyword(*OVERWRITE)} to start over", OVERWRITE)
        check_same_settings(run["settings"], self.settings, f"{url} holds an interrupted export")
        recorded = run["inputs"]
        if run["kind"] == "append" and not append:
            raise export_error(f"an append run into {url} was interrupted; repeat it with {keyword(*APPEND)} "
                               f"(or {keyword(*OVERWRITE)})", APPEND, OVERWRITE)
        if same_inputs(recorded, current) or (append and same_inputs(current[: len(recorded)], recorded)):
            return  # the same run, or: finish the interrupted run, then append the rest
        raise export_error(
            f"{url} holds an interrupted export of other inputs ({inputs_diff(recorded, current)}); "
            f"re-run it with the same inputs, or {keyword(*OVERWRITE)} to start over", OVERWRITE)

    def execute(self, run: dict, fresh: bool) -> None:
        """Carry ``run`` through its phases (``fresh``: a new run, else resuming one)."""
        r = Run(self, run, fresh)
        r.plan()
        r.open_work_folder()
        records = r.write_partitions()
        group_recs = r.write_groups(records)
        rejects_entry = r.write_rejects(records)
        r.check_inputs_unchanged()
        manifest = r.build_manifest(group_recs, rejects_entry)
        r.commit(manifest)
        self.executed = True
        self.result.new_rows += r.plan_.n_rows
        self.result.appended = self.result.appended or r.base is not None


@dataclass
class Run:
    """One run's state as it goes through its phases."""

    job: Job
    run: dict
    fresh: bool
    plan_: object = None
    ctx: tasks.TaskContext = None
    saved: dict = field(default_factory=dict)

    def __post_init__(self):
        job = self.job
        self.folder, self.opts, self.settings = job.folder, job.options, job.settings
        self.fmt, self.bpf = self.settings["format"], self.settings["batches_per_file"]
        self.base = self.run.get("base")
        self.start = Carry.from_json(json.dumps(self.base["state"])) if self.base else None
        self.n_old = len(self.base["batches"]) if self.base else 0
        self.g_open = (self.n_old - 1) // self.bpf if self.n_old else None

    # ---------------------------------------------------------------- phases
    def plan(self) -> None:
        """Read the new inputs' schema, check it, and run the summary pass and the scan."""
        new_entries = self.run["inputs"][self.run["first_new"]:]
        # no start flags kept between the passes: an export holds O(partition) memory per worker
        opts = self.opts.with_(extra={**self.opts.extra, "keep_flags": False})
        self.prep = prepared.prepare_frame(self.job.source.ddf(new_entries), self.opts.weight, opts)
        meta = self.prep.ddf._meta
        self.keep_index = any(n is not None for n in meta.index.names)
        self.schema = output_schema(meta, self.opts.name, self.keep_index)
        self.columns = [[f.name, str(f.type)] for f in self.schema]
        base = self.base
        if base is not None and base["columns"] != self.columns and base["batches"]:
            raise ExportError(f"the new input's columns differ from the exported ones "
                              f"({columns_diff(base['columns'], self.columns)})")
        if self.fresh and base is not None:
            self.saved = self.read_base()
        if base is not None:
            self.start = self.checked_start(opts)
        with progress_context(self.job.progress, self.job.client):
            with self.input_errors():
                self.plan_ = summaries.plan_partitions(self.prep, self.start)
        self.check_skips()

    def check_skips(self) -> None:
        """Refuse (before writing) to leave out more invalid rows than ``max_skips`` allows."""
        max_skips, skipped = self.job.max_skips, self.plan_.skipped
        if max_skips is not None and skipped > max_skips:
            raise export_error(
                f"{skipped} row(s) have invalid weights in column {self.opts.weight!r}, more than "
                f"{keyword('max_skips', max_skips)}; nothing was exported"
                + ("" if max_skips else f" (set {keyword('max_skips')} to allow skipping)"),
                ("max_skips", max_skips), ("max_skips",))

    def open_work_folder(self) -> None:
        """Create the work folder; a fresh run first saves what it will rewrite and its record."""
        folder = self.folder
        folder.makedirs(WORK, f"{WORK}/frag", f"{WORK}/parts", f"{WORK}/groups", f"{WORK}/rej")
        if self.fresh:
            for name, data in self.saved.items():  # before anything changes: what an append rewrites
                folder.write_atomic(f"{WORK}/{name}", data)
            self.run["saved"] = {name: sha256(data) for name, data in self.saved.items()}
            plan = self.plan_  # what `cumbatch status` reports progress against
            self.run["planned"] = {"partitions": len(plan.entries), "rows": plan.n_rows, "batches": plan.n_batches}
            folder.write_atomic(RUN, dumps(self.run))
            folder.remove(SUCCESS)
        else:
            self.check_saved()
        reason = "reason" if "reason" not in self.schema.names else "_cumbatch_reason"
        self.ctx = tasks.TaskContext(
            folder=folder, batch=self.prep.ctx, fmt=self.fmt, bpf=self.bpf,
            schema=self.schema, keep_index=self.keep_index, reason_column=reason, resuming=not self.fresh,
            first_group=self.g_open if self.g_open is not None else 0)

    def check_saved(self) -> None:
        """On resume: what the interrupted append saved before changing anything is intact."""
        for name, digest in (self.run.get("saved") or {}).items():
            path = f"{WORK}/{name}"
            if not isinstance(name, str) or "/" in name or sha256(self.folder.read(path)) != digest:
                raise export_error(f"{path} in {self.folder.url} is damaged; the interrupted append cannot be "
                                   f"finished: {redo_hint()[0]}", OVERWRITE)

    def write_partitions(self) -> dict:
        """One task per input partition (skipping those an interrupted run finished)."""
        # the partitions the summary pass saw (Dask may fuse projected reads: use the same
        # expression); the write is mapped over them so that each task reads its own partition
        entries = self.plan_.entries
        # named, not tokenized: hashing thousands of entries costs more than the graph
        shared = delayed(tasks.PartitionWork(self.ctx, entries), name=f"cumbatch-work-{uuid.uuid4().hex}")
        parts = as_mapped(self.prep.ddf).map_partitions(
            tasks.export_mapped, shared, meta=pd.Series([], dtype=object), enforce_metadata=False,
            align_dataframes=False).to_delayed(optimize_graph=True)
        if len(parts) != len(entries):  # pragma: no cover - a change in Dask or the core
            raise ExportError(f"internal error: {len(parts)} partitions to write, {len(entries)} planned")
        records, todo = {}, []
        for k in range(len(parts)):
            rec = self.recorded(tasks.part_record_name(k))
            if rec is not None and rec.get("part") == k and tasks.record_intact(self.folder, rec):
                for grec in rec["groups"]:
                    grec["kept"] = True
                records[k] = rec
            else:  # not done, or its files are not what it recorded: (re)write them
                todo.append(k)
        work = [parts[k] for k in todo]
        with self.input_errors():
            done = compute(work, self.job.progress, self.job.client)
        for rec in done:
            records[rec["part"]] = rec
        return records

    @contextlib.contextmanager
    def input_errors(self):
        """Report an error of the work inside (a reader's error too: a file caught mid-rewrite
        fails with Arrow's own message) as the input that changed, when one did."""
        try:
            yield
        except Exception as exc:
            if not isinstance(exc, ExportError):
                self.raise_if_input_changed(exc)
            raise

    def raise_if_input_changed(self, exc=None) -> None:
        """Raise :class:`ExportError` naming the input that changed since this run listed it."""
        path = self.changed_input()
        if path is None and exc is not None and hasattr(exc, "partition"):
            path = self.input_of_partition(exc.partition)
        if path is not None:
            raise ExportError(f"input {path} changed while it was being exported; nothing was certified: "
                              f"re-export once the input is stable ({redo_hint()[0]})") from exc

    def changed_input(self):
        """The first input whose fingerprint differs from the one recorded at the run's start."""
        source, recorded = self.job.source, self.run["inputs"]
        if source.frame is not None and "files" not in source.files[0]:
            return None  # in-memory data: nothing to list again
        now = source.listed_again()
        if source.frame is None:
            return changed_input(recorded, now[: len(recorded)])
        earlier = input_paths(recorded[:-1])  # an append of a frame reads only its files not consumed before
        return changed_input(recorded[-1:], [dict(now[0], files=[f for f in now[0]["files"] if f["path"] not in earlier])])

    def input_of_partition(self, k):
        """The input file that partition ``k`` reads, when partitions and files correspond."""
        entries = self.run["inputs"][self.run["first_new"]:]
        if self.job.source.frame is None and isinstance(k, int) and len(entries) == len(self.plan_.entries):
            return entries[k]["path"] if 0 <= k < len(entries) else None
        return None

    def check_inputs_unchanged(self) -> None:
        """Before certifying: every input still has the fingerprint it had at the run's start."""
        self.raise_if_input_changed()

    def recorded(self, name):
        """The task record ``name`` of an interrupted run (None for a fresh run or a missing one)."""
        return None if self.fresh else load_json(self.folder, name, "a task record")

    def base_fragments(self) -> dict:
        """The previous run's open file group as fragments in front of the new rows."""
        import pyarrow as pa

        folder, name_col = self.folder, self.opts.name
        prev = ipc_read(folder.read(f"{WORK}/base_open.arrow"))
        backdated = int(self.plan_.backdated_prior or 0)
        if backdated:
            ids = prev.column(name_col).to_numpy().copy()
            ids[len(ids) - backdated:] = self.start.batches
            prev = prev.set_column(prev.column_names.index(name_col), name_col, pa.array(ids, type=pa.int64()))
        gids = prev.column(name_col).to_numpy() // self.bpf
        frags = {}
        for g in np.unique(gids).tolist():
            data = ipc_bytes(prev.filter(pa.array(gids == g)))
            name = tasks.frag_name(g, -1)
            if self.fresh or folder.size(name) != len(data) or folder.read(name) != data:
                folder.write_atomic(name, data)
            frags.setdefault(int(g), []).append(-1)
        return frags

    def write_groups(self, records: dict) -> dict:
        """Join the edge fragments into their files; returns every file group's record."""
        frags = self.base_fragments() if self.base is not None and self.g_open is not None else {}
        group_recs = {}
        for k in sorted(records):
            for g, part, *_ in records[k]["frags"]:  # a name recorded by version 1 is not used
                frags.setdefault(int(g), []).append(int(part))
            for rec in records[k]["groups"]:
                group_recs[rec["group"]] = rec
        self.unchanged_open = (self.g_open is not None and not self.plan_.backdated_prior
                               and len(frags.get(self.g_open, [])) == 1)
        if self.unchanged_open:  # nothing new in the previous run's last file: keep it as it is
            frags.pop(self.g_open)
        end = self.plan_.end_state.batches
        last_group = (end - 1) // self.bpf if end else None
        todo, done = [], []
        for g, parts in sorted(frags.items()):
            rec = self.recorded(tasks.group_record_name(g))
            if rec is not None and self.trusted_group(rec, g, g == last_group):  # done by an interrupted run
                rec["kept"] = True
                done.append(rec)
                continue
            todo.append((g, sorted(parts), g == last_group))
        size = groups_per_task(len(todo))
        combine = [tasks_delayed(tasks.combine_groups)(todo[i:i + size], self.ctx) for i in range(0, len(todo), size)]
        joined = [rec for recs in compute(combine, self.job.progress and len(combine) > 50, self.job.client)
                  for rec in recs]
        for rec in done + joined:
            group_recs[rec["group"]] = rec
        return group_recs

    def trusted_group(self, rec, g: int, is_last: bool) -> bool:
        """Whether an interrupted run's record of joined group ``g`` can be kept as it is."""
        wants_open = is_last and self.fmt != "parquet"
        return (rec.get("group") == g and rec.get("file") == file_name(g, self.fmt)
                and bool(rec.get("open")) == wants_open and (not wants_open or rec["open"].get("file") == OPEN)
                and tasks.record_intact(self.folder, rec))

    def write_rejects(self, records: dict):
        """The rejects file: the previous run's rejects plus this run's; returns its entry."""
        folder = self.folder
        tables = []
        if self.base is not None and folder.exists(f"{WORK}/base_rejects.arrow"):
            tables.append(ipc_read(folder.read(f"{WORK}/base_rejects.arrow")))
        new_rejects = 0
        for k in sorted(records):
            if records[k]["rejects"]:
                new_rejects += records[k]["rejects"]
                tables.append(ipc_read(folder.read(tasks.rejects_name(k))))
        entry = self.base.get("rejects") if self.base else None
        if new_rejects:
            table = concat(tables)
            data = encode(table, "parquet")
            folder.write_atomic(REJECTS, data)
            entry = {"file": REJECTS, "rows": int(table.num_rows), "bytes": len(data), "sha256": sha256(data)}
        return entry

    def build_manifest(self, group_recs: dict, rejects_entry) -> dict:
        """The new manifest; checks that the written batches are exactly the planned ones."""
        base, bpf, result = self.base, self.bpf, self.job.result
        first_group = self.ctx.first_group
        batches = [b for b in base["batches"] if b["batch"] // bpf < first_group] if base else []
        open_entry = base.get("open") if base else None
        for g in sorted(group_recs):
            rec = group_recs[g]
            if rec.get("kept"):
                result.files_skipped += 1
            else:
                result.files_written += 1
            open_entry = rec.get("open") or open_entry
            batches.extend({"batch": b, "rows": r, "total": t, "file": rec["file"], "bytes": rec["bytes"],
                            "sha256": rec["sha256"]} for b, r, t in rec["batches"])
        if self.unchanged_open:
            batches.extend(b for b in base["batches"] if b["batch"] // bpf == self.g_open)
        batches.sort(key=lambda b: b["batch"])
        plan = self.plan_
        n_rows = (base["rows"] if base else 0) + plan.n_rows
        self.check_against_plan(batches, n_rows)
        return with_checksum({
            "kind": MANIFEST_KIND,
            "version": MANIFEST_VERSION,
            "settings": self.settings,
            "columns": self.columns,
            "inputs": self.run["inputs"],
            "state": json.loads(plan.end_state.to_json()),
            "n_batches": plan.end_state.batches,
            "rows": n_rows,
            "skipped": (base["skipped"] if base else 0) + plan.skipped,
            "files": len({b["file"] for b in batches}),
            "rejects": rejects_entry,
            "open": open_entry if self.fmt != "parquet" else None,
            "batches": batches,
        })

    def check_against_plan(self, batches, n_rows) -> None:
        """Raise unless ``batches`` are the planned batches 0..n-1 holding ``n_rows`` rows."""
        end = self.plan_.end_state.batches
        written = sum(b["rows"] for b in batches)
        if [b["batch"] for b in batches] != list(range(end)) or written != n_rows:
            raise ExportError(
                "internal error: the written batches do not match the plan "
                f"({len(batches)} batches / {written} rows written, {end} / {n_rows} planned); please report this"
            )

    def commit(self, manifest: dict) -> None:
        """Certify the folder: make the files' renames durable, then the manifest, then
        ``_SUCCESS``; then retire the work folder (its record first, so that a kill during the
        clean-up leaves nothing a re-run would try to resume). On an object store the writer
        first checks that its lock is still its own."""
        folder = self.folder
        validate_manifest(manifest)
        stray = stray_entries(folder, manifest_files(manifest))
        if stray:  # e.g. dropped in while the run wrote: certify nothing a reader would misread
            raise stray_error(folder, stray)
        folder.check_lock()
        folder.sync(CONTROL)
        folder.sync()
        folder.write_atomic(MANIFEST, dumps(manifest))
        folder.sync()
        folder.touch(SUCCESS)
        folder.sync()
        retire_work(folder)

    def checked_start(self, opts) -> Carry:
        """The state the append carries on from, recomputed from the last batch's rows in the
        previous run's open file (a walk of those rows alone: a batch's state does not depend on
        what came before it); raise where the manifest records another.

        ``floor`` carries the group's running sum, which the last batch alone does not give:
        the batch's rows, total and key are checked, the sum is taken from the manifest (and
        ``status --verify`` checks the grid against the files).
        """
        import pyarrow.compute as pc

        base, recorded = self.base, json.loads(self.start.to_json())
        if self.g_open is None:  # nothing exported yet: the state of an empty table
            for f, value in json.loads(Carry().to_json()).items():
                if recorded[f] != value:
                    self._refuse_state(f, value)
            return self.start
        name = f"{WORK}/base_open.arrow"
        table = ipc_read(self.saved[name.rsplit("/", 1)[1]] if self.fresh else self.folder.read(name))
        last = base["batches"][-1]
        rows = table.filter(pc.equal(table.column(self.opts.name), last["batch"])).to_pandas()
        prep = prepared.prepare_frame(rows, self.opts.weight, opts, adds_ids=False)  # the rows hold their ids
        values, _ = weight_values(rows[self.opts.weight])
        stats = tasks.stats_of(np.full(len(rows), last["batch"]), values, prep.is_float) if len(rows) else []
        if stats != [[last["batch"], last["rows"], last["total"]]]:
            got = f"{stats[0][1]} rows of total {stats[0][2]}" if stats else "no rows"
            raise ExportError(f"{MANIFEST} in {self.folder.url} says batch {last['batch']} holds {last['rows']} rows "
                              f"of total {last['total']}, its file {last['file']} holds {got}: the manifest "
                              f"or the file was changed; {redo_hint()[0]}")
        walked = scan([summarize(rows, prep.ctx)], prep.ctx, [rows].__getitem__)
        walked = json.loads(walked.end_state.to_json())
        floor = self.settings["mode"] == "floor"
        if floor and self.settings["max_rows"]:  # the open batch's row count, for the cap
            walked["rows"] = last["rows"]
        fields = ("rows", "tot", "mx", "tail", "key", "has_prev") if floor else \
            [f for f in walked if f not in ("batches", "position", "start")]
        for f in fields:
            if walked[f] != recorded[f]:
                self._refuse_state(f, walked[f])
        position = base["rows"]
        if recorded["position"] != position:
            self._refuse_state("position", position)
        if not floor and recorded["start"] != position - walked["rows"]:
            self._refuse_state("start", position - walked["rows"])
        return Carry.from_json(json.dumps({**recorded, **{f: walked[f] for f in fields}}))

    def _refuse_state(self, field, recomputed):
        recorded = json.loads(self.start.to_json())[field]
        raise export_error(
            f"{MANIFEST} in {self.folder.url} records state.{field} {show_state(recorded)}, its batches and the "
            f"last batch's rows give {show_state(recomputed)}: the manifest was changed; {redo_hint()[0]}", OVERWRITE)

    def read_base(self) -> dict:
        """Check and read what an append rewrites: the previous run's open rows and rejects.

        Returns ``{work file name: bytes}`` to keep in the work folder before anything changes.
        """
        folder, base, fmt = self.folder, self.base, self.fmt
        hint, setting = redo_hint()
        saved = {}
        if self.g_open is not None:
            name = OPEN if fmt != "parquet" else file_name(self.g_open, fmt)
            if fmt != "parquet" and not base.get("open"):
                raise export_error(f"{MANIFEST} lists no {OPEN}: cannot append to this {fmt} export; {hint}",
                                   setting)
            data = folder.read(name)
            if sha256(data) != manifest_files(base, "sha256")[name]:
                raise export_error(f"{name} in {folder.url} does not match its checksum in {MANIFEST}; {hint}",
                                   setting)
            saved["base_open.arrow"] = ipc_bytes(parquet_read(data))
        if self.job.verify:
            verify_files(folder, base)
            verify_batches(folder, base)
        if base.get("rejects"):
            data = folder.read(REJECTS)
            if sha256(data) != base["rejects"]["sha256"]:
                raise ExportError(f"{REJECTS} in {folder.url} does not match its checksum in {MANIFEST}")
            saved["base_rejects.arrow"] = ipc_bytes(parquet_read(data))
        return saved


def show_state(value) -> str:
    """A carried state's field as written in the manifest, for messages (floats in decimal).

    >>> show_state({"f": "0x1.8000000000000p+1"}), show_state([{"s": "a"}]), show_state(3)
    ('3.0', "['a']", '3')
    """
    if isinstance(value, list):
        return str([show_state(v) if not isinstance(v, dict) or "f" in v else next(iter(v.values()))
                    for v in value]).replace('"', "'")
    if isinstance(value, dict) and set(value) == {"f"}:
        return repr(float.fromhex(value["f"]))
    return str(value)


def groups_per_task(n: int) -> int:
    """File groups joined per task: one while they are few (each its own task, for as many
    workers), up to 8 for many (fewer tasks, one ``syncfs`` for each task's files).

    >>> groups_per_task(10), groups_per_task(40), groups_per_task(4000)
    (1, 2, 8)
    """
    return max(1, min(8, n // 16))


def tasks_delayed(func):
    """``dask.delayed(func, pure=False)``: a task with side effects (it writes files)."""
    from dask import delayed

    return delayed(func, pure=False)


def data_names(listing: dict) -> list:
    """The names in a folder listing that are not the export's control folder, sorted."""
    return sorted(n for n in listing if n != CONTROL)


def retire_work(folder: Folder) -> None:
    """Remove the work folder: its run record goes first, then the folder is renamed aside and
    deleted (a kill at any moment leaves either a finished run or a retired folder). An object
    store has no rename: its work files are deleted where they are (a work folder without its
    run record is removed by the next run)."""
    if not folder.exists(WORK):
        return
    folder.remove(RUN)
    if not folder.local:
        folder.remove(WORK)
        return
    retired = f"{RETIRED}{uuid.uuid4().hex}"
    folder.rename(WORK, retired)
    folder.remove(retired)
    folder.remove(TMP)


def tidy_control(folder: Folder) -> None:
    """Remove what crashed writers left in ``_cumbatch/``: temporary files, retired work folders."""
    for name in folder.listing(CONTROL):
        path = f"{CONTROL}/{name}"
        if path.startswith(RETIRED) or name == "tmp":
            folder.remove(path)


def migrate_legacy(folder: Folder, listing: dict) -> bool:
    """Bring a folder of the version 1 layout (``_rejects.parquet``, ``_open.parquet`` and
    ``_cumbatch_work/`` at the top) to the current one. Nothing moves before the manifest is
    validated; each step can be repeated after a crash. Returns whether anything changed."""
    changed = LEGACY_WORK in listing
    if LEGACY_WORK in listing:
        if not folder.local:  # no rename: copy (its run record last), then delete
            if folder.exists(WORK) and not folder.exists(RUN):  # a copy that was cut short
                folder.remove(WORK)
            if not folder.exists(WORK):
                folder.copy_folder(LEGACY_WORK, WORK, last="run.json")
            folder.remove(LEGACY_WORK)
        elif folder.exists(WORK):
            raise export_error(f"{folder.url} holds two work folders ({LEGACY_WORK} and {WORK}); "
                               f"{redo_hint()[0]}", OVERWRITE)
        else:
            folder.makedirs(CONTROL)
            folder.rename(LEGACY_WORK, WORK)
    manifest = load_json(folder, MANIFEST, "the manifest") if MANIFEST in listing else None
    if manifest is not None and manifest.get("version") == LEGACY_VERSION:
        interrupted = folder.exists(WORK)
        validate_manifest(manifest, None if interrupted else folder, listing)
        new = upgraded(manifest)
        for legacy, name in ((LEGACY_REJECTS, REJECTS), (LEGACY_OPEN, OPEN)):
            if legacy in listing:
                folder.write_atomic(name, folder.read(legacy))
        folder.write_atomic(MANIFEST, dumps(new))
        folder.sync()
        changed = True
    if manifest is not None:  # the legacy files now live under _cumbatch/ (or were left by a migration)
        for legacy in (LEGACY_REJECTS, LEGACY_OPEN):
            if legacy in listing:
                folder.remove(legacy)
                changed = True
    return changed
