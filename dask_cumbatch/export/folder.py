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
import uuid

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
_NO_SPACE = (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))


class ExportError(RuntimeError):
    """An export that cannot go on; the message is one line that says what to do.

    >>> import tempfile, pandas as pd
    >>> from dask_cumbatch.export import to_files
    >>> out = tempfile.mkdtemp()
    >>> open(f"{out}/notes.txt", "w").write("mine")
    4
    >>> to_files(pd.DataFrame({"w": [1, 2]}), out, "w", 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dask_cumbatch.export.ExportError: output folder ... is not empty and holds no finished cumbatch export ...
    """


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
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


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
    """The bytes of a JSON control file (stable: indented, UTF-8, no NaN).

    >>> dumps({"a": 1})
    b'{\\n "a": 1\\n}\\n'
    """
    return (json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode()


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
        return self.fs.exists(self.p(name))

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
            return int(self.fs.size(self.p(name)))
        except FileNotFoundError:
            return None

    def listing(self, under: str = "") -> dict:
        """Entries directly in the folder (or its subfolder ``under``): ``{name: info}``;
        {} when missing. ``info["islink"]`` marks links."""
        root = self.p(under) if under else self.root
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
                if self.local:
                    info = dict(info, islink=os.path.islink(os.path.join(root, name)))
                out[name] = info
        return out

    # ---------------------------------------------------------------- writing
    def makedirs(self, *names):
        """Create the folder and the named subfolders (never through a link)."""
        self.fs.makedirs(self.root, exist_ok=True)
        for name in names:
            self.check_no_link(name)
            self.fs.makedirs(self.p(name), exist_ok=True)

    def write_atomic(self, name: str, data: bytes, durable: bool = True) -> None:
        """Write ``data`` to ``name``: a temporary file in the work folder, fsynced, then renamed
        over ``name`` (a link at ``name`` is refused, never followed). With ``durable=False``
        the fsync is left to a later :meth:`make_durable` of many files at once."""
        tmp = f"{TMP}/{posixpath.basename(name)}.{uuid.uuid4().hex}.tmp"
        if not self.local:
            self.fs.makedirs(self.p(TMP), exist_ok=True)
            with self.fs.open(self.p(tmp), "wb") as f:
                f.write(data)
            self.fs.mv(self.p(tmp), self.p(name))
            return
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
        and of the folders holding them. One call per task instead of one fsync per file
        (0.7 to 1.9 ms each on a shared disk: most of the time of an export of small files).

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
        """Rename ``old`` to ``new`` inside the folder (no links on either side)."""
        self.check_no_link(old)
        self.check_no_link(new)
        if self.local:
            os.replace(self.p(old), self.p(new))
        else:
            self.fs.mv(self.p(old), self.p(new), recursive=True)

    def remove(self, name: str) -> None:
        """Remove ``name`` (a file or a folder) if it exists; a link is removed, never followed."""
        if self.local and os.path.islink(self.p(name)):
            os.unlink(self.p(name))
            return
        self.check_no_link(name)
        try:
            self.fs.rm(self.p(name), recursive=True)
        except FileNotFoundError:
            pass


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
    """One writer per folder: an OS-level lock on ``_cumbatch/lock`` (the ``filelock`` package).

    The kernel releases the lock when its process dies, so a crashed (even ``kill -9``) writer
    never leaves it stuck. The holder's pid, host and start time are written next to it, in
    ``_cumbatch/lock.json``, for the message a second writer gets. Remote (non-local) folders
    are not locked: fsspec stores offer no such lock (see docs/export.md).

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

    def acquire(self) -> "WriterLock":
        """Take the lock at once, or raise :class:`ExportError` naming the folder and the holder."""
        import filelock

        folder = self.folder
        if not folder.local:
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
        import datetime
        import socket

        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        tmp = self.folder.p(f"{HOLDER}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            write_all(fd, dumps(info))
        finally:
            os.close(fd)
        os.replace(tmp, self.folder.p(HOLDER))

    def release(self) -> None:
        """Release the lock. Its sidecar goes first (while still held). The lock file stays, but
        where this writer created the folder and wrote nothing else, the folder goes too: a
        failed first export leaves nothing behind."""
        if self.lock is None:
            return
        folder = self.folder
        folder.remove(HOLDER)
        if self.made_control and set(folder.listing(CONTROL)) <= {"lock"} and set(folder.listing()) <= {CONTROL}:
            folder.remove(LOCK)
            os.rmdir(folder.p(CONTROL))
            if self.made_root:
                os.rmdir(folder.root)
        self.lock.release()
        self.lock = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
