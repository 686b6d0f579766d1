"""The ``cumbatch`` command line: ``export``, ``plan``, ``demo`` and ``status``.

Every failure is one line on stderr (``cumbatch: error: ...``) and a non-zero exit code:
1 for a failed command, 2 for a usage error (an unknown or misspelt flag, a value out of
range, options that do not go together: found before any work), 130 when interrupted;
``status`` has its own codes (:func:`status_exit_code`). Progress bars go to stderr, only
when it is a terminal and ``--quiet`` is not given.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
import warnings

from .options import OPTIONS, RESULT_OPTIONS, close_match, count_argument, for_cli, seconds_argument

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# `cumbatch status` (docs/cli.md): scripts branch on these
STATUS_COMPLETE = 0
STATUS_INTERRUPTED = 1
STATUS_CORRUPT = 3
STATUS_MISSING = 4  # not 2: that is a usage error, as for every command

_EPILOG_LIMIT = "Limits take plain numbers or byte units: 5MB, 512KiB, 1.5GB, 4096."


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump) that points at this (sub)command's
    help, "did you mean" for a misspelt flag or choice, and no abbreviated flags: a misspelling
    must fail, never change meaning (``--max-row`` is not ``--max-rows``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        """Arguments this parser does not know are an error here, where the subcommand's
        flags are known (argparse would report them from the top-level parser)."""
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self._unrecognized(extras))
        return namespace, extras

    def _unrecognized(self, extras) -> str:
        flags = [x for x in extras if x.startswith("-") and x != "-"]
        first = (flags or extras)[0]
        hint = ""
        if flags:
            match = close_match(first.split("=", 1)[0], [s for s in self._option_string_actions if len(s) > 2])
            hint = f"; did you mean {match}?" if match else ""
        return f"unrecognized argument {first}{hint}"

    def _check_value(self, action, value):  # noqa: D401 - argparse API
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as err:
            match = close_match(value, action.choices) if isinstance(value, str) and action.choices else None
            if match is None:
                raise
            raise argparse.ArgumentError(action, f"{err.message}; did you mean {match!r}?") from None


def _batching_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weight", "-w", required=True, metavar="COL", help="weight column (bytes, tokens, ...)")
    p.add_argument("--limit", "-l", required=True, metavar="LIMIT",
                   help="batch limit: a number or a size such as 5MB, 512KiB")
    for option in OPTIONS.values():  # the one option spec: flags, choices, defaults, help
        p.add_argument(option.flag, **option.cli_arguments())
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="dask.distributed scheduler address (tcp://host:8786), or threads/processes/sync")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum`` (:func:`~dask_cumbatch.options.count_argument`)."""

    def parse(text: str) -> int:
        return count_argument(text, minimum)

    return parse


_positive_int = _int_at_least(1)


_nonneg_int = _int_at_least(0)


def storage_option(text: str) -> tuple:
    """An argparse type: ``KEY=VALUE`` for fsspec's ``storage_options``; the value is parsed as
    JSON where it parses (numbers, true/false, objects), else taken as a string.

    >>> storage_option("anon=true"), storage_option("endpoint_url=http://localhost:9000")
    (('anon', True), ('endpoint_url', 'http://localhost:9000'))
    >>> storage_option('config_kwargs={"retries": {"max_attempts": 1}}')
    ('config_kwargs', {'retries': {'max_attempts': 1}})
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or key != key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _storage_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--storage-option", dest="storage_options", action="append", type=storage_option, default=[],
                   metavar="KEY=VALUE", help=f"fsspec storage option for {what} (repeatable; the value is "
                   "JSON where it parses, else a string), e.g. endpoint_url=http://localhost:9000")


def build_parser() -> argparse.ArgumentParser:
    """The ``cumbatch`` argument parser (subcommands export, plan, demo, status).

    >>> args = build_parser().parse_args(["export", "in/", "out/", "-w", "bytes", "-l", "5MB"])
    >>> args.command, args.weight, args.limit, args.format
    ('export', 'bytes', '5MB', 'parquet')
    """
    parser = _Parser(
        prog="cumbatch",
        description="Cut ordered tables into contiguous batches by cumulative weight, and export them.",
        epilog="Start with: cumbatch demo",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"dask-cumbatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("export", help="write one file per batch (restartable, incremental)",
                       description="Cut INPUT into batches and write one file per batch into OUTPUT. "
                       "Re-running the same command after a crash finishes the job. " + _EPILOG_LIMIT)
    p.add_argument("input", metavar="INPUT", help="Parquet or CSV file, folder, glob or fsspec URL")
    p.add_argument("output", metavar="OUTPUT", help="output folder (local or fsspec URL)")
    _batching_options(p)
    p.add_argument("--format", choices=("parquet", "csv", "jsonl"), default="parquet", help="file format")
    p.add_argument("--batches-per-file", type=_positive_int, default=1, metavar="N",
                   help="consecutive batches per file (default 1)")
    p.add_argument("--max-skips", type=_nonneg_int, metavar="N", default=0,
                   help="with --invalid skip: abort when more than N rows would be left out (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace whatever OUTPUT holds")
    p.add_argument("--append", action="store_true",
                   help="add inputs not exported yet, continuing the last batch")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="refuse to continue an interrupted export")
    p.add_argument("--verify", action="store_true", help="check every file's checksum before appending")
    p.add_argument("--verify-inputs", action="store_true",
                   help="record and check the sha256 of every input file's whole content")
    p.add_argument("--follow", action="store_true",
                   help="keep running: export each input file that arrives (an append per change of the input)")
    p.add_argument("--poll", type=seconds_argument, default=1.0, metavar="SECONDS",
                   help="with --follow: list the input every SECONDS (default 1)")
    p.add_argument("--idle-exit", type=functools.partial(seconds_argument, zero=True), metavar="SECONDS",
                   help="with --follow: stop (exit 0) after SECONDS without a new input file")
    _storage_options(p, "OUTPUT and INPUT")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("plan", help="count batches and summarise their totals, without writing",
                       description="Plan the batches of INPUT: count, totals and sizes. " + _EPILOG_LIMIT)
    p.add_argument("input", metavar="INPUT", help="Parquet or CSV file, folder, glob or fsspec URL")
    _batching_options(p)
    p.add_argument("--json", action="store_true", help="print the plan (summary and every batch) as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="save a histogram of batch totals")
    _storage_options(p, "INPUT")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("demo", help="export a built-in synthetic dataset (start here)",
                       description="Generate a token-count dataset and export it in batches of at most "
                       "LIMIT tokens.")
    p.add_argument("output", metavar="OUTPUT", nargs="?",
                   help="folder for the demo's input/ and batches/ (default: ./cumbatch-demo, reused by the next run)")
    from .demo import DEFAULT_LIMIT, DEFAULT_PARTS, DEFAULT_ROWS

    p.add_argument("--rows", type=_positive_int, default=DEFAULT_ROWS, help=f"rows (default {DEFAULT_ROWS:,})")
    p.add_argument("--parts", type=_positive_int, default=DEFAULT_PARTS, help="input files (default %(default)s)")
    p.add_argument("--limit", "-l", default=str(DEFAULT_LIMIT), help="tokens per batch (default %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("status", help="what an export folder holds",
                       description="Show an export folder's batches, rows, inputs and open batch. "
                       "Exit code: 0 complete, 1 interrupted, 3 corrupt, 4 missing or not an export "
                       "(2: a usage error, as for every command).")
    p.add_argument("output", metavar="OUTPUT", help="export folder")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--verify", action="store_true", help="check every file's checksum")
    _storage_options(p, "OUTPUT")
    p.set_defaults(func=cmd_status)
    return parser


def check_usage(args) -> None:
    """Check what the parser cannot (the limit, options that do not go together) before any
    work: a problem raises ``ValueError``/``TypeError``, which :func:`main` reports as a usage
    error (exit 2), as argparse reports its own.

    >>> check_usage(build_parser().parse_args(["plan", "in/", "-w", "w", "-l", "-5"]))
    Traceback (most recent call last):
    ValueError: limit must be a finite number > 0, got -5
    """
    from .options import BatchOptions, parse_limit

    if args.command in ("export", "plan"):
        options = BatchOptions.make(args.weight, args.limit, **_opts_from(args))
        if args.command == "export":
            from .export import check_export_arguments

            check_export_arguments(options, args.format, args.batches_per_file, args.max_skips)
            if args.follow and args.overwrite:
                raise ValueError("--follow continues OUTPUT and cannot take --overwrite (a restarted follower "
                                 "would start over): export once with --overwrite, then --follow")
            if not args.follow and (args.idle_exit is not None or args.poll != 1.0):
                raise ValueError(f"{'--idle-exit' if args.idle_exit is not None else '--poll'} needs --follow")
    elif args.command == "demo":
        parse_limit(args.limit)


def _opts_from(args) -> dict:
    opts = {name: getattr(args, name) for name in OPTIONS}
    if args.by:
        opts["by"] = [k.strip() for item in args.by for k in item.split(",") if k.strip()]
    return opts


def _progress(args) -> bool:
    from .export import isatty

    return not args.quiet and isatty(sys.stderr)


# ----------------------------------------------------------------------------- commands


def cmd_export(args) -> int:
    from .export import to_files

    if args.follow:
        return cmd_follow(args)
    result = to_files(
        args.input, args.output, args.weight, args.limit,
        format=args.format, batches_per_file=args.batches_per_file, resume=args.resume,
        max_skips=args.max_skips, progress=_progress(args), append=args.append,
        overwrite=args.overwrite, verify=args.verify, verify_inputs=getattr(args, "verify_inputs", False),
        scheduler=args.scheduler, storage_options=dict(args.storage_options) or None, **_opts_from(args),
    )
    if not args.quiet:
        if result.up_to_date:
            print(f"{result.path} is up to date: {result.batches:,} batches, {result.rows:,} rows "
                  f"in {result.files:,} files; nothing to do")
        else:
            verb = "appended" if result.appended else "exported"
            kept = f" ({result.files_skipped:,} kept from an interrupted run)" if result.files_skipped else ""
            rejects = f", {result.rejects:,} rows rejected (see _cumbatch/rejects.pqt)" if result.rejects else ""
            print(f"{verb} {result.new_rows:,} rows: {result.batches:,} batches, {result.rows:,} rows in "
                  f"{result.files:,} files{rejects}; wrote {result.files_written:,} file(s){kept} "
                  f"to {result.path} in {result.seconds:.1f} s")
    return 0


def cmd_follow(args) -> int:
    """``export --follow``: :func:`~dask_cumbatch.export.follow` until idle or a signal. The first
    SIGTERM/SIGINT stops it after the append in progress (exit 0, nothing half-written); a second
    one interrupts that append (exit 130; the next run continues it)."""
    import signal
    import threading

    from .export import follow

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    if not args.quiet:
        until = f"; stops after {args.idle_exit:g} s without new input" if args.idle_exit is not None else ""
        print(f"following {args.input} into {args.output}: listing it every {args.poll:g} s{until} "
              "(Ctrl-C or SIGTERM stops)", flush=True)

    def report(result) -> None:
        if not args.quiet:
            print(f"{time.strftime('%H:%M:%S')} appended {result.new_rows:,} rows: {result.batches:,} batches "
                  f"(the last open), {result.rows:,} rows in {result.files:,} files; wrote "
                  f"{result.files_written:,} file(s) in {result.seconds:.1f} s", flush=True)

    try:
        outcome = follow(
            args.input, args.output, args.weight, args.limit, poll=args.poll, idle_exit=args.idle_exit,
            stop=stop, on_append=report, scheduler=args.scheduler, format=args.format,
            batches_per_file=args.batches_per_file, resume=args.resume, max_skips=args.max_skips,
            verify=args.verify, verify_inputs=args.verify_inputs,
            storage_options=dict(args.storage_options) or None, **_opts_from(args),
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not args.quiet:
        why = "a signal" if outcome.stopped_by == "stop" else f"{args.idle_exit:g} s without new input"
        print(f"stopped after {why}: {outcome.appends:,} append(s) added {outcome.new_rows:,} rows; "
              f"{outcome.path} holds {outcome.batches:,} batches, {outcome.rows:,} rows in {outcome.files:,} files")
    return 0


def cmd_plan(args) -> int:
    import dask_cumbatch  # noqa: F401  (registers the accessor)

    from .export import list_inputs, progress_context, read_inputs, resolve_scheduler

    storage_options = dict(args.storage_options) or None
    kind, files = list_inputs(args.input, storage_options)
    ddf = read_inputs(kind, [f["path"] for f in files], storage_options)
    with resolve_scheduler(args.scheduler) as client, progress_context(_progress(args), client):
        plan = ddf.cumbatch.plan(args.weight, args.limit, **_opts_from(args))
    if args.plot:
        _save_plot(plan, args.plot)
    if args.json:
        batches = plan.batches
        doc = {
            "input": args.input,
            "files": len(files),
            "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in _opts_from(args).items()},
            "weight": args.weight,
            "limit": plan.limit,
            "n_batches": plan.n_batches,
            "n_rows": plan.n_rows,
            "skipped": plan.skipped,
            "summary": {k: _jsonable(v) for k, v in plan.summary().items()},
            "batches": [{c: _jsonable(v) for c, v in row.items()} for row in batches.to_dict("records")],
        }
        print(json.dumps(doc, indent=1))
    elif not args.quiet:
        print(repr(plan))
        if plan.n_batches:
            fill = plan.batches["total"].astype(float).mean() / float(plan.limit)
            print(f"  mean fill:    {fill:.1%} of the limit")
        if args.plot:
            print(f"  histogram:    {args.plot}")
    return 0


def _jsonable(v):
    import numpy as np

    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        v = float(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _save_plot(plan, path):
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'dask-cumbatch[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ax = plan.plot()  # lays itself out: its labels fit the figure
    ax.figure.savefig(path, dpi=120)
    plt.close(ax.figure)


def cmd_demo(args) -> int:
    from .demo import DEFAULT_FOLDER, check_demo_folder, write_dataset
    from .export import folder_status, to_files
    from .options import parse_limit

    t0 = time.perf_counter()
    limit = parse_limit(args.limit)
    root = args.output or DEFAULT_FOLDER
    check_demo_folder(root)
    inp, out = os.path.join(root, "input"), os.path.join(root, "batches")
    if not args.quiet:
        print(f"cumbatch demo: {args.rows:,} documents with token counts, cut into batches of "
              f"at most {limit:,} tokens", flush=True)
    write_dataset(inp, rows=args.rows, parts=args.parts, progress=_progress(args))
    result = to_files(inp, out, "tokens", limit, progress=_progress(args), overwrite=True)
    seconds = time.perf_counter() - t0
    if not args.quiet:
        import pandas as pd

        status = folder_status(out)
        totals = pd.Series([b["total"] for b in json.loads(open(os.path.join(out, "_manifest.json")).read())["batches"]])
        print(f"  input     {args.parts} Parquet files in {inp}")
        print(f"  batches   {result.batches:,} (tokens per batch: mean {totals.mean():,.0f}, "
              f"max {totals.max():,}, limit {limit:,})")
        print(f"  rows      {result.rows:,}")
        print(f"  files     {result.files:,} Parquet files, {status['bytes'] / 1e6:,.1f} MB, + _manifest.json")
        print(f"  time      {seconds:.1f} s")
        print(f"  where     {out}")
        print(f"next: cumbatch status {out}")
        import shlex

        print(f"({root} is reused by the next demo run; delete it with: rm -r {shlex.quote(root)})")
    return 0


def status_exit_code(st: dict) -> int:
    """The exit code of ``cumbatch status`` for a :func:`~dask_cumbatch.export.folder_status` result:
    0 complete, 1 interrupted (a run in progress or no _SUCCESS), 4 missing or not an export
    (3, corrupt, is for a folder whose check fails; 2, as for every command, a usage error).

    >>> status_exit_code({"state": "complete"}), status_exit_code({"state": "empty"})
    (0, 4)
    """
    state = st["state"]
    if state == "complete":
        return STATUS_COMPLETE
    if state in ("empty", "not an export"):
        return STATUS_MISSING
    return STATUS_INTERRUPTED


_ALWAYS_SHOWN = ("mode", "cost")  # the cutting rule, shown even at its default


def _options_shown(settings: dict) -> str:
    """The settings of ``cumbatch status``' options line: the weight, the limit, the cutting
    rule, each other option that changes the result and is not at its default (from the
    option spec), and the format.

    >>> _options_shown({"weight": "w", "limit": 5000, "mode": "fill", "cost": "sum", "by": [],
    ...                 "max_rows": 8, "invalid": "skip", "name": "batch", "format": "csv"})
    "weight='w' limit=5,000 mode='fill' cost='sum' max_rows=8 invalid='skip' format='csv'"
    """
    def is_set(key):
        return settings.get(key) not in (None, [], (), OPTIONS[key].default)

    keys = list(_ALWAYS_SHOWN) + [k for k in RESULT_OPTIONS if k not in _ALWAYS_SHOWN and is_set(k)]
    shown = [f"weight={settings['weight']!r}", f"limit={settings['limit']:,}"]
    shown += [f"{key}={settings[key]!r}" for key in keys] + [f"format={settings['format']!r}"]
    return " ".join(shown)


def cmd_status(args) -> int:
    from .export import ExportError, folder_status

    try:
        st = folder_status(args.output, dict(args.storage_options) or None, verify=args.verify)
    except ExportError as exc:  # damaged, tampered, or failed --verify
        print(f"cumbatch: error: {_message(exc)}", file=sys.stderr)
        return STATUS_CORRUPT
    code = status_exit_code(st)
    if args.json:
        print(json.dumps(st, indent=1, default=str))
        return code
    if st["state"] == "empty":
        print(f"{st['path']}: empty or missing (no export yet)")
        return code
    if st["state"] == "not an export":
        what = "is a file, not an export folder" if st.get("file") else \
            "holds files but no cumbatch export (no _manifest.json)"
        print(f"cumbatch: error: {st['path']} {what}", file=sys.stderr)
        return code
    print(f"{st['path']}: {st['state']}" + _checked(st))
    if "batches" in st:
        print(f"  options   {_options_shown(st['settings'])}")
        print(f"  batches   {st['batches']:,}")
        print(f"  rows      {st['rows']:,}" + (f" ({st['skipped']:,} rejected)" if st["skipped"] else ""))
        print(f"  files     {st['files']:,} ({st['bytes'] / 1e6:,.1f} MB)")
        inputs = st["inputs"]
        names = [i.get("path") or "a DataFrame" for i in inputs]
        shown = ", ".join(os.path.basename(n) if n else "?" for n in names[-3:])
        print(f"  inputs    {len(inputs)} consumed" + (f" (last: {shown})" if names else ""))
        ob = st.get("open_batch")
        if ob:
            print(f"  open      batch {ob['batch']:,}: {ob['rows']:,} rows, total {ob['total']:,} "
                  f"in {ob['file']} (an --append run continues it)")
    if st.get("stray"):
        shown = ", ".join(st["stray"][:3]) + (", ..." if len(st["stray"]) > 3 else "")
        print(f"  stray     {len(st['stray'])} entries not in the manifest that readers take as data: {shown}")
        print(f"cumbatch: warning: readers of {st['path']} would also read {shown}, which its manifest does not "
              "list (status --verify fails); remove them", file=sys.stderr)
    if "progress" in st:
        print(f"  progress  {_progress_text(st['progress'])}")
    if "follow" in st:
        print(f"  followed  {_follow_text(st['follow'])}")
    if st["state"].startswith("interrupted"):
        print("  the last run did not finish: repeat the same command to complete it")
    return code


def _checked(st: dict) -> str:
    """What the first line of ``status`` says about the files' checksums."""
    if st.get("verified"):
        return " (checksums verified)"
    if "verified" in st and st["state"] == "complete":
        return " (files not verified: add --verify to check every file's checksum)"
    return ""


def _follow_text(f: dict) -> str:
    """What ``status`` says about a followed folder's follower (its record, from ``folder_status``).

    >>> _follow_text({"pid": 7, "host": "h", "started": "T0", "last_poll": "T1", "appends": 2, "alive": True})
    'by pid 7 on h since T0: 2 append(s), input last listed at T1'
    >>> _follow_text({"pid": 7, "host": "h", "stopped": "T2", "stopped_by": "idle", "alive": False})
    'until T2 (stopped: idle)'
    """
    who = f"by pid {f.get('pid')} on {f.get('host')}"
    if "stopped" in f:
        return f"until {f['stopped']} (stopped: {f.get('stopped_by')})"
    if f.get("alive") is False:
        return (f"{who}, which is gone (killed?) without stopping; start the follower again to continue "
                f"(input last listed at {f.get('last_poll')})")
    return f"{who} since {f.get('started')}: {f.get('appends', 0):,} append(s), input last listed at {f.get('last_poll')}"


def _progress_text(p: dict) -> str:
    """``500 of 1,000 rows, 7 of 15 batches written (2 of 4 partitions)`` (a total the record
    lacks is left out).

    >>> _progress_text({"rows_done": 5, "rows_total": 9, "batches_done": 2, "partitions_done": 1})
    '5 of 9 rows, 2 batches written (1 partitions)'
    """
    def of(key):
        total = p.get(f"{key}_total")
        return f"{p[f'{key}_done']:,}" + ("" if total is None else f" of {total:,}")

    return f"{of('rows')} rows, {of('batches')} batches written ({of('partitions')} partitions)"


# ----------------------------------------------------------------------------- entry point


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        text = for_cli(exc)
    elif isinstance(exc, FileNotFoundError) and exc.filename:
        text = f"file not found: {exc.filename}"
    elif isinstance(exc, PermissionError) and exc.filename:
        text = f"permission denied: {exc.filename}"
    else:
        text = for_cli(exc) or type(exc).__name__
    text = " ".join(text.split())
    if isinstance(exc, (ImportError, MemoryError, OverflowError)) or type(exc).__module__.startswith(("pyarrow", "distributed")):
        text = f"{type(exc).__name__}: {text}"
    return text


_STORE_WARNING = r".*takes no lock"  # errors.StoreWarning (matched by text: no import at start-up)


def _show_store_warnings() -> None:
    """Show an export's :class:`~dask_cumbatch.errors.StoreWarning` (a store it cannot
    lock) as one line on stderr, whatever the other warnings' filter."""
    import re

    warnings.filterwarnings("always", message=_STORE_WARNING)
    default = warnings.showwarning

    def show(message, category, *args, **kwargs):
        if re.match(_STORE_WARNING, str(message), re.S):
            print(f"cumbatch: warning: {message}", file=sys.stderr)
        else:
            default(message, category, *args, **kwargs)

    warnings.showwarning = show


def main(argv=None) -> int:
    """Run the command line; returns the exit code (never raises, never prints a traceback).

    >>> import tempfile
    >>> main(["demo", tempfile.mkdtemp(), "--rows", "1000", "--parts", "2", "--quiet"])
    0
    >>> main(["export", "no/such/input", tempfile.mkdtemp(), "-w", "w", "-l", "5MB"])
    1
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        try:
            check_usage(args)
        except (ValueError, TypeError) as exc:
            _subparser(parser, args.command).error(_message(exc))
    except SystemExit as exc:  # --help, --version, usage errors (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        with warnings.catch_warnings():
            if not os.environ.get("CUMBATCH_WARNINGS"):
                warnings.simplefilter("ignore")
            _show_store_warnings()
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cumbatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `cumbatch plan --json | head`
        return 0
    except Exception as exc:  # one clear line, never a traceback
        if os.environ.get("CUMBATCH_DEBUG"):
            raise
        print(f"cumbatch: error: {_message(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``command`` (its errors point at its own help)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser  # pragma: no cover - every command is a subcommand


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
