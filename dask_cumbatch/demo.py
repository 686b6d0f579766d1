"""A built-in synthetic dataset for ``cumbatch demo``, the examples and the benchmarks.

The data looks like a tokenised text corpus: one row per document with a token count drawn
from a lognormal distribution (most documents a few hundred tokens, a long tail of long ones),
a source label and a document id. It is fully deterministic: the same arguments give the same
rows and the same Parquet bytes on every run and every machine.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd

from .options import whole_number

__all__ = ["make_frame", "write_dataset", "check_demo_folder", "DEFAULT_FOLDER", "DEFAULT_ROWS", "DEFAULT_PARTS",
           "DEFAULT_LIMIT"]

DEFAULT_ROWS = 2_000_000
DEFAULT_PARTS = 8
DEFAULT_LIMIT = 1_000_000  # tokens per batch
DEFAULT_FOLDER = "cumbatch-demo"  # in the current directory; reused by the next run
DEMO_ENTRIES = ("input", "batches")
SOURCES = np.array(["web", "books", "code", "wiki", "papers"])
_SOURCE_P = np.array([0.55, 0.15, 0.15, 0.1, 0.05])


def make_frame(rows: int, seed: int = 0, first_id: int = 0) -> pd.DataFrame:
    """One deterministic chunk of the demo data: ``doc_id``, ``source``, ``tokens``.

    ``tokens`` are int64 token counts (lognormal, median about 300, at least 1, at most
    65,536).

    >>> df = make_frame(5, seed=1)
    >>> list(df.columns), len(df), df.tokens.dtype.name
    (['doc_id', 'source', 'tokens'], 5, 'int64')
    >>> bool((make_frame(5, seed=1) == df).all().all())
    True
    """
    rng = np.random.default_rng([seed, first_id])
    tokens = np.clip(np.rint(rng.lognormal(mean=5.7, sigma=1.0, size=rows)), 1, 65_536)
    source = SOURCES[np.searchsorted(np.cumsum(_SOURCE_P), rng.random(rows), side="right").clip(0, 4)]
    return pd.DataFrame(
        {
            "doc_id": np.arange(first_id, first_id + rows, dtype="int64"),
            "source": pd.array(source, dtype="string[pyarrow]"),
            "tokens": tokens.astype("int64"),
        }
    )


def write_dataset(folder, rows: int = DEFAULT_ROWS, parts: int = DEFAULT_PARTS, seed: int = 0,
                  progress: bool = False) -> list[str]:
    """Write the demo dataset as ``parts`` Parquet files ``part-000.parquet``, ... in ``folder``.

    Returns the file paths, in order. A file that already holds the expected rows (same row
    count and first ``doc_id``) is kept, so a second ``cumbatch demo`` into the same folder
    does not rewrite its input; ``part-*.parquet`` files beyond ``parts`` (left by a run with
    more parts) are removed. ``progress=True`` draws a bar on stderr, one step per file.

    >>> import os, tempfile
    >>> paths = write_dataset(tempfile.mkdtemp(), rows=1000, parts=3)
    >>> [os.path.basename(p) for p in paths]
    ['part-000.parquet', 'part-001.parquet', 'part-002.parquet']
    """
    rows, parts = whole_number("rows", rows, 0), whole_number("parts", parts, 1)
    os.makedirs(folder, exist_ok=True)
    bounds = np.linspace(0, rows, parts + 1).round().astype(int)
    paths = [os.path.join(folder, f"part-{k:03d}.parquet") for k in range(parts)]
    _remove_stale_parts(folder, keep=paths)
    for k, path in enumerate(paths):
        first, n = int(bounds[k]), int(bounds[k + 1] - bounds[k])
        if not _holds(path, n, first):
            _write_part(path, make_frame(n, seed=seed, first_id=first))
        if progress:
            _draw_bar("input", k + 1, parts, "files")
    return paths


def check_demo_folder(folder) -> None:
    """Refuse a demo folder that holds anything but a previous demo's ``input/`` and ``batches/``.

    The demo overwrites ``batches/`` on every run, so it must not be pointed at a folder of
    yours by mistake. A missing or empty folder is fine.

    >>> import tempfile
    >>> check_demo_folder(tempfile.mkdtemp())   # empty: fine
    >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "notes.txt"), "w").close()
    >>> check_demo_folder(d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: ... holds files that are not from cumbatch demo (notes.txt); give the demo another folder
    """
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise FileExistsError(f"{folder} is a file, not a folder; give the demo another folder")
        return
    foreign = sorted(set(os.listdir(folder)) - set(DEMO_ENTRIES))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise FileExistsError(f"{folder} holds files that are not from cumbatch demo ({shown}); "
                              "give the demo another folder")


def _remove_stale_parts(folder, keep) -> None:
    keep = {os.path.basename(p) for p in keep}
    for name in os.listdir(folder):
        if name.startswith("part-") and name.endswith(".parquet") and name not in keep:
            os.remove(os.path.join(folder, name))


def _holds(path, rows: int, first_id: int) -> bool:
    """Whether ``path`` is a demo file with ``rows`` rows starting at ``first_id``."""
    import pyarrow.parquet as pq

    if not os.path.exists(path):
        return False
    try:
        meta = pq.ParquetFile(path).metadata
        if meta.num_rows != rows:
            return False
        if rows == 0:
            return True
        stats = meta.row_group(0).column(0).statistics  # doc_id, written first
        return stats is not None and stats.has_min_max and stats.min == first_id
    except Exception:  # unreadable: rewrite it
        return False


def _write_part(path, frame: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path + ".tmp"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp, compression="snappy")
    os.replace(tmp, path)


def _draw_bar(label: str, done: int, total: int, unit: str, width: int = 30) -> None:
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\r  {label:9s} [{'#' * filled}{' ' * (width - filled)}] {done}/{total} {unit}{end}")
    sys.stderr.flush()
