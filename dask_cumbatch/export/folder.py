"""The output folder: paths, atomic writes, the names the export owns, JSON control files."""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid

from ..options import hinted, keyword

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
REJECTS = "_rejects.parquet"
OPEN = "_open.parquet"
WORK = "_cumbatch_work"
RUN = WORK + "/run.json"


class ExportError(RuntimeError):
    """An export that cannot go on; the message is one line that says what to do.

    >>> import tempfile, pandas as pd
    >>> from dask_cumbatch.export import to_files
    >>> out = tempfile.mkdtemp()
    >>> open(f"{out}/notes.txt", "w").write("mine")
    4
    >>> to_files(pd.DataFrame({"w": [1, 2]}), out, "w", 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dask_cumbatch.export.folder.ExportError: output folder ... is not empty and holds no finished cumbatch export ...
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
    dask_cumbatch.export.folder.ExportError: manifest lists an unsafe file name '../x'; not touching the folder
    """
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or "\x00" in name or name != name.strip() or os.path.isabs(name):
        raise ExportError(f"manifest lists an unsafe {what} name {name!r}; not touching the folder")
    return name


class Folder:
    """An output folder on any fsspec filesystem, with atomic writes.

    >>> import tempfile
    >>> f = Folder(tempfile.mkdtemp())
    >>> f.makedirs(WORK + "/tmp"); f.write_atomic("a.txt", b"hi"); f.read("a.txt")
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

    def exists(self, name: str) -> bool:
        """Whether ``name`` exists in the folder."""
        return self.fs.exists(self.p(name))

    def read(self, name: str) -> bytes:
        """The bytes of ``name``."""
        return self.fs.cat_file(self.p(name))

    def listing(self) -> dict:
        """Entries directly in the folder: ``{name: info}`` ({} when the folder is missing)."""
        try:
            if not self.fs.isdir(self.root):
                if self.fs.exists(self.root):
                    raise ExportError(f"output path {self.url} is a file, not a folder")
                return {}
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for info in entries:
            name = posixpath.basename(info["name"].rstrip("/"))
            if name:
                out[name] = info
        return out

    def makedirs(self, *names):
        """Create the folder and the named subfolders."""
        self.fs.makedirs(self.root, exist_ok=True)
        for name in names:
            self.fs.makedirs(self.p(name), exist_ok=True)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write ``data`` to ``name``: a temporary name in the work folder, then a rename."""
        tmp = self.p(f"{WORK}/tmp/{posixpath.basename(name)}.{uuid.uuid4().hex}.tmp")
        if self.local:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.p(name))
            return
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, self.p(name))

    def touch(self, name: str) -> None:
        """Create an empty file (a marker such as _SUCCESS: no temporary name needed)."""
        with self.fs.open(self.p(name), "wb"):
            pass

    def remove(self, name: str) -> None:
        """Remove ``name`` (a file or a folder) if it exists."""
        try:
            self.fs.rm(self.p(name), recursive=True)
        except FileNotFoundError:
            pass


def load_json(folder: Folder, name: str, what: str):
    """The JSON document ``name`` in ``folder`` (None when missing); a damaged one raises."""
    try:
        return json.loads(folder.read(name).decode())
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise ExportError(f"cannot read {what} {name} in {folder.url}: {one_line(exc)}") from exc
