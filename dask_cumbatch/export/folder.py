"""The output folder: paths, safe atomic writes, the names the export owns, JSON control files.

Layout (version 2): the data files ``part-*.{parquet,csv,jsonl}`` and ``_manifest.json`` and
``_SUCCESS`` at the top; everything else under ``_cumbatch/`` (names starting with ``_`` are
skipped by Dask, pandas and pyarrow readers): the rejects, the open rows of a CSV/JSONL export,
the writer's lock and the work folder of a run in progress.

On a local filesystem no control file, work file or fragment is opened through a symbolic
link: every path below the folder is checked with ``lstat`` and opened with ``O_NOFOLLOW``;
a link is refused with an :class:`ExportError`. Control files are fsynced before they are
renamed into place; a task's data and work files are written without, then made durable
together by :meth:`Folder.make_durable` (one ``syncfs`` of the file system on Linux, else an
fsync of each) before the task's record is written; :meth:`Folder.sync` fsyncs a directory
(before the manifest and ``_SUCCESS``).

On an object store (any non-local filesystem: ``s3://``, ``gs://``, ``memory://``) there is no
rename and no folder: a file is committed by one PUT under its final name (atomic per object:
readers see the old object or the whole new one), folders are never created (on S3 that would
create a bucket), and a folder is "renamed" by copying its objects and deleting the old ones.
The writer's lock is an object made by the store's conditional create (:class:`ObjectLock`).
"""
from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import json
import os
import posixpath
import stat
import sys
import threading
import time
import uuid
import warnings

from ..errors import ExportError, StoreWarning
from ..options import hinted, keyword

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
CONTROL = "_cumbatch"
REJECTS = CONTROL + "/rejects.pqt"  # Parquet; not *.parquet: dd.read_parquet(folder) reads those at any depth
OPEN = CONTROL + "/open.pqt"
LOCK = CONTROL + "/lock"
HOLDER = CONTROL + "/lock.json"
WORK = CONTROL + "/work"
RUN = WORK + "/run.json"
TMP = CONTROL + "/tmp"  # temporary names of files being written
RETIRED = CONTROL + "/retired-"  # a work folder being removed (name + random suffix)
# the layout of version 1 (before the _cumbatch/ folder): read, and migrated by a writer
LEGACY_REJECTS = "_rejects.parquet"
LEGACY_OPEN = "_open.parquet"
LEGACY_WORK = "_cumbatch_work"
LEASE_ENV = "CUMBATCH_LOCK_LEASE"  # seconds an object-store lock stays valid without renewal
DEFAULT_LEASE = 60.0
# stores whose exclusive create (fsspec ``pipe_file(mode="create")``) the server decides atomically:
# s3fs sends If-None-Match: *; the memory filesystem checks and creates in one step
CONDITIONAL_CREATE = ("s3", "s3a", "memory")
_NO_SPACE = (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))


def export_error(message: str, *settings) -> ExportError:
    """An :class:`ExportError` whose message quotes the given option settings (Python keywords),
    so that the command line can show them as flags (see ``options.for_cli``).

    >>> from dask_cumbatch.options import for_cli
    >>> e = export_error(f"pass {keyword('overwrite', True)}", ("overwrite", True))
    >>> str(e), for_cli(e)
    ('pass overwrite=True', 'pass --overwrite')
    """
    return hinted(ExportError(message), *settings)


def redo_hint() -> tuple[str, tuple]:
    """The usual way out of a folder that cannot be continued: text and its setting.

    >>> redo_hint()[0]
    're-export with overwrite=True'
    """
    return f"re-export with {keyword('overwrite', True)}", ("overwrite", True)


def one_line(exc) -> str:
    """An exception's message on one line (at most 500 characters).

    >>> one_line(ValueError("a\\n  b"))
    'a b'
    """
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(text.split())
    return text[:500] or type(exc).__name__


def is_local(fs) -> bool:
    """Whether an fsspec filesystem is the local one.

    >>> import fsspec
    >>> is_local(fsspec.filesystem("file")), is_local(fsspec.filesystem("memory"))
    (True, False)
    """
    return protocol_of(fs) in ("file", "local")


def protocol_of(fs) -> str:
    """The main protocol name of an fsspec filesystem.

    >>> import fsspec
    >>> protocol_of(fsspec.filesystem("memory"))
    'memory'
    """
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data``.

    >>> sha256(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def file_name(group: int, fmt: str) -> str:
    """The file of file group ``group`` (``batch // batches_per_file``).

    >>> file_name(3, "parquet")
    'part-00000003.parquet'
    """
    return f"part-{group:08d}.{fmt}"


def dumps(obj) -> bytes:
    """The bytes of a JSON control file (stable, UTF-8, no NaN): one top-level key per line, and
    a list of records (the manifest's batches and inputs) one record per line. Each value is
    encoded by ``json``'s C encoder: ``indent=`` would take its pure-Python one, whose time
    (a third of an append's own work, at 400 batches) grows with the manifest.

    >>> print(dumps({"a": 1, "b": [{"x": 1}, {"x": 2}], "c": []}).decode(), end="")
    {
     "a": 1,
     "b": [
      {"x": 1},
      {"x": 2}
     ],
     "c": []
    }
    """
    if not isinstance(obj, dict):
        return (_encode(obj) + "\n").encode()
    lines = []
    for key, value in obj.items():
        if isinstance(value, list) and value:
            value_text = "[\n" + ",\n".join("  " + _encode(item) for item in value) + "\n ]"
        else:
            value_text = _encode(value)
        lines.append(f" {_encode(key)}: {value_text}")
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def _encode(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def _local_listing(root: str, under: str) -> dict:
    """:meth:`Folder.listing` of a local folder: one ``scandir`` and one ``lstat`` per entry
    (fsspec's ``ls(detail=True)`` costs several times more per entry, docs/performance.md, and
    an append lists the folder, which grows with every batch, several times). The entries'
    ``info`` as fsspec gives it: ``type`` and ``size`` of a link's target, plus ``islink``."""
    try:
        entries = os.scandir(root)
    except FileNotFoundError:
        return {}
    except NotADirectoryError:
        if under:
            return {}
        raise ExportError(f"output path {root} is a file, not a folder") from None
    out = {}
    with entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            link = stat.S_ISLNK(st.st_mode)
            if link:
                try:
                    st = entry.stat(follow_symlinks=True)
                except OSError:  # a dangling link: described by the link itself
                    pass
            kind = "directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
            out[entry.name] = {"name": entry.path, "type": kind, "size": st.st_size, "islink": link,
                               "mtime": st.st_mtime}
    return out


def check_plain_name(name, what="file") -> str:
    """``name`` if it is a plain file name inside a folder (no path, no ``..``), else raise.

    >>> check_plain_name("part-00000000.parquet")
    'part-00000000.parquet'
    >>> check_plain_name("../x")
    Traceback (most recent call last):
    dask_cumbatch.export.ExportError: manifest lists an unsafe file name '../x'; not touching the folder
    """
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or "\x00" in name or name != name.strip() or os.path.isabs(name):
        raise ExportError(f"manifest lists an unsafe {what} name {name!r}; not touching the folder")
    return name


class Folder:
    """An output folder on any fsspec filesystem, with atomic, durable writes.

    Names are relative to the folder (``"part-00000000.parquet"``, ``"_cumbatch/work/run.json"``).

    >>> import tempfile
    >>> f = Folder(tempfile.mkdtemp())
    >>> f.write_atomic("a.txt", b"hi"); f.read("a.txt")
    b'hi'
    """

    def __init__(self, path, storage_options=None):
        import fsspec

        path = os.fspath(path)
        self.fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
        self.local = is_local(self.fs)
        if self.local:
            root = os.path.abspath(root)
        self.root = root.rstrip("/") or "/"
        self.url = path
        self.lock = None  # the ObjectLock this process holds on the folder, if any (not pickled)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def __setstate__(self, state):
        self.__dict__.update(state, lock=None)

    def fresh(self, path: str) -> str:
        """``path``, with what a remote filesystem cached about it (and its parents) forgotten:
        other processes (resumed runs, Dask workers) write into the folder too."""
        if not self.local:
            self.fs.invalidate_cache(path)
        return path

    def p(self, name: str) -> str:
        """The full path of ``name`` inside the folder."""
        return posixpath.join(self.root, name)

    # ---------------------------------------------------------------- links
    def check_no_link(self, name: str) -> bool:
        """Raise if ``name`` or a folder on its way (below the root) is a symbolic link; return
        whether ``name`` exists.

        Local folders only (fsspec gives no such guarantee for remote stores, where nothing is
        checked and True is returned)."""
        if not self.local:
            return True
        path = self.root
        for part in name.split("/"):
            path = os.path.join(path, part)
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                return False
            if stat.S_ISLNK(mode):
                raise ExportError(f"{posixpath.relpath(path, self.root)} in {self.url} is a symbolic link; "
                                  "an export never follows links in its folder: remove it")
        return True

    def _open_read(self, name: str) -> int:
        self.check_no_link(name)
        return os.open(self.p(name), os.O_RDONLY | os.O_NOFOLLOW)

    # ---------------------------------------------------------------- reading
    def exists(self, name: str) -> bool:
        """Whether ``name`` exists in the folder (a link counts, and is refused when used)."""
        if self.local:
            return os.path.lexists(self.p(name))
        return self.fs.exists(self.fresh(self.p(name)))

    def read(self, name: str) -> bytes:
        """The bytes of ``name`` (never through a link)."""
        if not self.local:
            return self.fs.cat_file(self.p(name))
        fd = self._open_read(name)
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def size(self, name: str) -> int | None:
        """The size of ``name`` in bytes (None when missing; a link raises)."""
        self.check_no_link(name)
        try:
            return int(self.fs.size(self.fresh(self.p(name))))
        except FileNotFoundError:
            return None

    def listing(self, under: str = "") -> dict:
        """Entries directly in the folder (or its subfolder ``under``): ``{name: info}``;
        {} when missing. ``info["islink"]`` marks links."""
        root = self.fresh(self.p(under) if under else self.root)
        if self.local:
            return _local_listing(root, under)
        try:
            if not self.fs.isdir(root):
                if self.fs.exists(root) and not under:
                    raise ExportError(f"output path {self.url} is a file, not a folder")
                return {}
            entries = self.fs.ls(root, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for info in entries:
            name = posixpath.basename(info["name"].rstrip("/"))
            if name:
                out[name] = info
        return out

    # ---------------------------------------------------------------- writing
    def makedirs(self, *names):
        """Create the folder and the named subfolders (never through a link). Nothing on an
        object store: prefixes need no creation (and s3fs would create a missing bucket)."""
        if not self.local:
            return
        self.fs.makedirs(self.root, exist_ok=True)
        for name in names:
            self.check_no_link(name)
            self.fs.makedirs(self.p(name), exist_ok=True)

    def write_atomic(self, name: str, data: bytes, durable: bool = True) -> None:
        """Write ``data`` to ``name``: a temporary file in the work folder, fsynced, then renamed
        over ``name`` (a link at ``name`` is refused, never followed). With ``durable=False``
        the fsync is left to a later :meth:`make_durable` of many files at once. On an object
        store: one PUT under ``name`` (the store makes it visible whole or not at all)."""
        if not self.local:
            self.fs.pipe_file(self.p(name), data)
            return
        tmp = f"{TMP}/{posixpath.basename(name)}.{uuid.uuid4().hex}.tmp"
        # the folders on the way to the temporary file; the file itself is new (a random name)
        # and opened with O_EXCL | O_NOFOLLOW, so it needs no lstat of its own
        if not self.check_no_link(TMP):
            self.makedirs(TMP)
        self.check_no_link(name)
        try:
            fd = os.open(self.p(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                write_all(fd, data)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self.p(tmp), self.p(name))
        except OSError as exc:
            raise self.os_error(exc, name) from exc

    def make_durable(self, names) -> None:
        """Make files written with ``durable=False`` durable, renames included: one ``syncfs``
        of the folder's file system where the OS offers it (Linux), else an fsync of each file
        and of the folders holding them. One call per task instead of one fsync per file (on a
        shared disk those fsyncs were most of the time of an export of small files,
        docs/performance.md).

        >>> import tempfile
        >>> folder = Folder(tempfile.mkdtemp())
        >>> folder.write_atomic("part-0.csv", b"w\\n1\\n", durable=False)
        >>> folder.make_durable(["part-0.csv"])
        """
        names = list(names)
        if not self.local or not names:
            return
        if _syncfs(self.root):
            return
        for name in names:
            self.check_no_link(name)
            _fsync_path(self.p(name), os.O_RDONLY | os.O_NOFOLLOW)
        for parent in sorted({posixpath.dirname(name) for name in names}):
            self.sync(parent)

    def os_error(self, exc: OSError, name: str) -> Exception:
        """A disk-full or file-too-large error as an :class:`ExportError` naming the file."""
        if exc.errno in _NO_SPACE:
            return ExportError(f"cannot write {self.p(name)}: {exc.strerror or exc} "
                               "(free some space or raise the file size limit, then re-run to resume)")
        return exc

    def touch(self, name: str) -> None:
        """Create an empty marker file (such as _SUCCESS), atomically, never through a link."""
        self.write_atomic(name, b"")

    def sync(self, name: str = "") -> None:
        """fsync the folder (or its subfolder ``name``): renames into it are then durable."""
        if not self.local:
            return
        self.check_no_link(name) if name else None
        _fsync_path(self.p(name) if name else self.root, os.O_RDONLY | os.O_DIRECTORY)

    def rename(self, old: str, new: str) -> None:
        """Rename ``old`` to ``new`` inside the folder (no links on either side). On an object
        store, which has no rename: :meth:`copy_folder`, then delete ``old``."""
        self.check_no_link(old)
        self.check_no_link(new)
        if self.local:
            os.replace(self.p(old), self.p(new))
        else:
            self.copy_folder(old, new)
            self.remove(old)

    def copy_folder(self, old: str, new: str, last: str | None = None) -> None:
        """Copy every object under ``old`` to ``new`` (object stores), the one named ``last``
        (relative to ``old``) after all others: its copy then marks a complete copy.

        >>> f = Folder("memory://cumbatch-doc/copy")
        >>> f.write_atomic("a/x", b"1"); f.write_atomic("a/run.json", b"{}")
        >>> f.copy_folder("a", "b", last="run.json"); sorted(f.listing("b"))
        ['run.json', 'x']
        >>> f.remove("")
        """
        src = self.fresh(self.p(old))
        names = sorted((posixpath.relpath(path, src) for path in self.fs.find(src)), key=lambda n: n == last)
        for name in names:
            self.fs.copy(posixpath.join(src, name), self.p(f"{new}/{name}"))

    def remove(self, name: str) -> None:
        """Remove ``name`` (a file or a folder) if it exists; a link is removed, never followed."""
        if self.local and os.path.islink(self.p(name)):
            os.unlink(self.p(name))
            return
        self.check_no_link(name)
        try:
            self.fs.rm(self.fresh(self.p(name)), recursive=True)
        except FileNotFoundError:
            pass

    def check_lock(self) -> None:
        """Raise unless this process still holds the folder's object-store lock (when it took
        one): called before the manifest certifies the folder."""
        if self.lock is not None:
            self.lock.check_held()


def _fsync_path(path: str, flags: int) -> None:
    """Open ``path`` with ``flags``, fsync it and close it."""
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _libc_syncfs():
    """libc's ``syncfs`` (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _syncfs(path: str) -> bool:
    """Flush the file system holding ``path`` to disk; False when the OS or the file system
    offers no syncfs (the caller then fsyncs file by file). A write error raises."""
    syncfs = _libc_syncfs()
    if syncfs is None:
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            if err in _SYNCFS_UNSUPPORTED:
                return False
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)
    return True


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def load_json(folder: Folder, name: str, what: str):
    """The JSON document ``name`` in ``folder`` (None when missing); a damaged one raises."""
    try:
        return json.loads(folder.read(name).decode())
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise ExportError(f"cannot read {what} {name} in {folder.url}: {one_line(exc)}") from exc


class WriterLock:
    """One writer per folder.

    A local folder: an OS-level lock on ``_cumbatch/lock`` (the ``filelock`` package). The
    kernel releases the lock when its process dies, so a crashed (even ``kill -9``) writer
    never leaves it stuck. The holder's pid, host and start time are written next to it, in
    ``_cumbatch/lock.json``, for the message a second writer gets. An object store: an
    :class:`ObjectLock` (the lock object ``_cumbatch/lock``, with a lease); a store that offers
    no conditional create is not locked, and a :class:`StoreWarning` says so.

    >>> import tempfile
    >>> folder = Folder(tempfile.mkdtemp())
    >>> with WriterLock(folder):
    ...     WriterLock(folder).acquire()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dask_cumbatch.export.ExportError: ... is being written by another export (pid ...
    """

    def __init__(self, folder: Folder):
        self.folder = folder
        self.lock = None
        self.remote = None

    def acquire(self) -> "WriterLock":
        """Take the lock at once, or raise :class:`ExportError` naming the folder and the holder."""
        import filelock

        folder = self.folder
        if not folder.local:
            self.remote = ObjectLock.take(folder)
            return self
        self.made_root = not os.path.isdir(folder.root)
        self.made_control = not os.path.lexists(folder.p(CONTROL))
        folder.makedirs(CONTROL)
        folder.check_no_link(LOCK)
        folder.check_no_link(HOLDER)
        lock = filelock.FileLock(folder.p(LOCK), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise ExportError(f"{folder.url} is being written by another export ({self.holder()}); "
                              "wait for it to finish, or stop it and re-run") from None
        self.lock = lock
        self._write_holder()
        return self

    def holder(self) -> str:
        """Who holds the lock, as recorded in its sidecar file."""
        try:
            h = json.loads(self.folder.read(HOLDER).decode())
            return f"pid {h['pid']} on {h['host']} since {h['started']}"
        except Exception:
            return "holder unknown"

    def _write_holder(self) -> None:
        tmp = self.folder.p(f"{HOLDER}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            write_all(fd, dumps(holder_info()))
        finally:
            os.close(fd)
        os.replace(tmp, self.folder.p(HOLDER))

    def release(self) -> None:
        """Release the lock. Its sidecar goes first (while still held). The lock file stays, but
        where this writer created the control folder and the folder holds no export (a refused
        or failed first run), the control folder goes too, and the folder itself where this
        writer created it: such a run leaves the folder as it found it."""
        if self.remote is not None:
            self.remote.release()
            self.remote = None
        if self.lock is None:
            return
        folder = self.folder
        folder.remove(HOLDER)
        if self.made_control and set(folder.listing(CONTROL)) <= {"lock"} and MANIFEST not in folder.listing():
            folder.remove(LOCK)
            os.rmdir(folder.p(CONTROL))
            if self.made_root and not os.listdir(folder.root):
                os.rmdir(folder.root)
        self.lock.release()
        self.lock = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def holder_info() -> dict:
    """Who this writer is: pid, host and start time (for the message a second writer gets).

    >>> sorted(holder_info())
    ['host', 'pid', 'started']
    """
    import socket

    return {"pid": os.getpid(), "host": socket.gethostname(), "started": local_time_now()}


def local_time_now() -> str:
    """The local time to the second, with its UTC offset, as the control files record it.

    >>> len(local_time_now()) >= 25  # 2026-12-07T01:02:03+00:00
    True
    """
    import datetime

    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def lease_seconds() -> float:
    """How long an object-store lock stays valid without renewal: ``$CUMBATCH_LOCK_LEASE``
    seconds, default 60. The holder renews it every third of that.

    >>> lease_seconds()
    60.0
    """
    text = os.environ.get(LEASE_ENV, "").strip()
    if not text:
        return DEFAULT_LEASE
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ExportError(f"{LEASE_ENV}={text!r} is not a number of seconds > 0; unset it or set e.g. "
                          f"{LEASE_ENV}=60")
    return value


def conditional_create(fs) -> bool:
    """Whether ``fs`` is known to create a file only where none exists, decided by the store:
    its protocol is one of :data:`CONDITIONAL_CREATE` and its ``pipe_file`` takes ``mode``
    (s3fs 2024.12 and later; an older one would ignore or reject it).

    >>> import fsspec
    >>> conditional_create(fsspec.filesystem("memory")), conditional_create(fsspec.filesystem("file"))
    (True, False)
    """
    import inspect

    pipe = getattr(type(fs), "_pipe_file", None) or type(fs).pipe_file
    try:
        takes_mode = "mode" in inspect.signature(pipe).parameters
    except (TypeError, ValueError):
        takes_mode = False
    return protocol_of(fs) in CONDITIONAL_CREATE and takes_mode


class LockLost(Exception):
    """The lock object is no longer this writer's (taken over, deleted, or replaced)."""


class ObjectLock:
    """One writer per folder on an object store: the object ``_cumbatch/lock``.

    It is made with the store's conditional create (fsspec ``pipe_file(mode="create")``: S3
    ``If-None-Match: *``), so of two writers exactly one creates it. It holds the holder (pid,
    host, start), a random token and a lease expiry; a background thread renews the lease
    every third of it, and the lock is deleted when the export ends. A lock whose lease ran
    out (its holder died, e.g. by ``kill -9``) is taken over: on S3 by a PUT conditional on the
    expired object's ETag (``If-Match``), elsewhere by deleting it and creating it again, the
    conditional create deciding between writers. Before the manifest certifies the folder the
    holder checks that the lock is still its own (:meth:`check_held`). Lease times are compared
    with the writers' clocks: they must agree to well within the lease.

    >>> f = Folder("memory://cumbatch-doc/locked")
    >>> with WriterLock(f):
    ...     WriterLock(f).acquire()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dask_cumbatch.export.ExportError: memory://cumbatch-doc/locked is being written by another export (pid ...
    >>> f.exists(LOCK)
    False
    """

    def __init__(self, folder: Folder, lease: float):
        self.folder, self.lease = folder, lease
        self.path = folder.p(LOCK)
        self.token = uuid.uuid4().hex
        self.holder = holder_info()
        self.s3 = hasattr(folder.fs, "call_s3")  # conditional PUTs (If-Match) on the lock object
        self.etag = None
        self.expires = 0.0
        self.lost = None  # why the lock is no longer this writer's, once it is not
        self._stop = threading.Event()
        self._thread = None

    @classmethod
    def take(cls, folder: Folder):
        """The folder's lock, taken; None (after a :class:`StoreWarning`) where the store
        offers no conditional create. Any error of the store is one :class:`ExportError` line."""
        protocol = protocol_of(folder.fs)
        if not conditional_create(folder.fs):
            return cls.no_lock(folder, f"the {protocol}:// store offers no conditional create")
        lock = cls(folder, lease_seconds())
        try:
            lock.acquire()
        except ExportError:
            raise
        except NotImplementedError:
            return cls.no_lock(folder, "the store refused a conditional create")
        except Exception as exc:
            raise ExportError(f"cannot write to {folder.url}: {one_line(exc)}") from exc
        folder.lock = lock
        return lock

    @staticmethod
    def no_lock(folder: Folder, why: str) -> None:
        warnings.warn(f"{folder.url}: {why}, so this export takes no lock: run one writer at a time "
                      "into this folder", StoreWarning, stacklevel=4)
        return None

    def acquire(self) -> None:
        """Create the lock object, or take over an expired one; raise naming a live holder."""
        for _ in range(3):
            try:
                self._put(create=True)
                break
            except FileExistsError:
                pass
            held, etag = self._read()
            if held is None:  # released in between: try again
                continue
            if not isinstance(held.get("expires"), (int, float)):
                raise ExportError(f"{LOCK} in {self.folder.url} is not a cumbatch lock; delete it if no export "
                                  "is writing into the folder, then re-run")
            if held["expires"] > time.time():
                raise ExportError(f"{self.folder.url} is being written by another export ({describe(held)}); "
                                  "wait for it to finish, or stop it and re-run once its lease ends")
            self._take_over(held, etag)
            break
        else:
            raise ExportError(f"cannot take {LOCK} in {self.folder.url}: it keeps changing; re-run")
        self._thread = threading.Thread(target=self._renew_loop, name="cumbatch-lock-lease", daemon=True)
        self._thread.start()

    def _take_over(self, held: dict, etag) -> None:
        """Replace the expired lock ``held`` by this writer's, unless another writer is faster."""
        try:
            if self.s3 and etag:
                self._put(if_match=etag)  # the store replaces exactly the expired object, or refuses
            else:
                again, _ = self._read()
                if again is None or again.get("token") != held.get("token"):
                    raise LockLost
                self.folder.fs.rm_file(self.path)
                self._put(create=True)  # the conditional create decides between writers taking over
        except (LockLost, FileExistsError, FileNotFoundError) as exc:
            raise ExportError(f"{self.folder.url} is being written by another export (it took over an expired "
                              "lock just now); wait for it to finish") from exc
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # s3fs: PreconditionFailed (If-Match)
                raise ExportError(f"{self.folder.url} is being written by another export (it took over an "
                                  "expired lock just now); wait for it to finish") from exc
            raise

    def _put(self, create: bool = False, if_match=None) -> None:
        """Write the lock object with a new lease (``create``: only if none exists)."""
        expires = time.time() + self.lease
        data = dumps(dict(self.holder, token=self.token, lease_s=self.lease, expires=expires))
        extra = {"IfMatch": if_match} if if_match else {}
        out = self.folder.fs.pipe_file(self.path, data, mode="create" if create else "overwrite", **extra)
        self.etag = out.get("ETag") if isinstance(out, dict) else None
        self.expires = expires

    def _read(self):
        """The lock object's content and ETag (``(None, None)`` when there is none)."""
        fs = self.folder.fs
        try:
            etag = fs.info(self.folder.fresh(self.path)).get("ETag")
            data = fs.cat_file(self.path)
        except FileNotFoundError:
            return None, None
        try:
            held = json.loads(data.decode())
        except ValueError:
            held = None
        return (held if isinstance(held, dict) else {}), etag

    def renew(self) -> None:
        """Extend the lease; raise :class:`LockLost` if the lock is no longer this writer's."""
        try:
            if self.s3 and self.etag:
                self._put(if_match=self.etag)
                return
            held, _ = self._read()
            if held is None or held.get("token") != self.token:
                raise LockLost
            self._put()
        except FileNotFoundError as exc:
            raise LockLost from exc
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # s3fs: PreconditionFailed (If-Match)
                raise LockLost from exc
            raise

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.renew()
            except LockLost:
                self.lost = "another writer replaced or deleted the lock object"
                return
            except Exception as exc:  # the store is unreachable for now: retry until the lease ends
                if time.time() > self.expires:
                    self.lost = f"its lease ran out while it could not be renewed ({one_line(exc)})"
                    return

    def check_held(self) -> None:
        """Raise :class:`ExportError` unless the lock is still this writer's, with time left."""
        if self.lost is None:
            held, _ = self._read()
            if held is None or held.get("token") != self.token:
                self.lost = "another writer replaced or deleted the lock object"
            elif time.time() > self.expires:
                self.lost = "its lease ran out"
        if self.lost is not None:
            raise ExportError(f"this export lost the lock of {self.folder.url} ({self.lost}); nothing was "
                              "certified: re-run it once no other export writes into the folder")

    def release(self) -> None:
        """Stop renewing and delete the lock object (if it is still this writer's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.folder.lock = None
        try:
            held, _ = self._read()
            if held is not None and held.get("token") == self.token:
                self.folder.fs.rm_file(self.path)
        except Exception:  # the lease ends anyway
            pass


def describe(held: dict) -> str:
    """A lock holder, in words.

    >>> describe({"pid": 7, "host": "h", "started": "2026-01-01T00:00:00+00:00", "expires": 0})
    'pid 7 on h since 2026-01-01T00:00:00+00:00, lease until 1970-01-01T00:00:00+00:00'
    """
    import datetime

    until = datetime.datetime.fromtimestamp(held["expires"], datetime.timezone.utc).isoformat(timespec="seconds")
    return f"pid {held.get('pid')} on {held.get('host')} since {held.get('started')}, lease until {until}"
