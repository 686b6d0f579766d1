"""A built-in synthetic dataset for ``cumbatch demo``, the examples and the benchmarks.

The data looks like a tokenised text corpus: one row per document with a token count drawn
from a lognormal distribution (most documents a few hundred tokens, a long tail of long ones),
a source label and a document id. It is fully deterministic: the same arguments give the same
rows and the same Parquet bytes on every run and every machine.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

__all__ = ["make_frame", "write_dataset", "DEFAULT_ROWS", "DEFAULT_PARTS", "DEFAULT_LIMIT"]

DEFAULT_ROWS = 2_000_000
DEFAULT_PARTS = 8
DEFAULT_LIMIT = 1_000_000  # tokens per batch
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


def write_dataset(folder, rows: int = DEFAULT_ROWS, parts: int = DEFAULT_PARTS, seed: int = 0) -> list[str]:
    """Write the demo dataset as ``parts`` Parquet files ``part-000.parquet``, ... in ``folder``.

    Returns the file paths, in order. Files that already exist with the expected row count
    are kept (so a second ``cumbatch demo`` into the same folder does not rewrite its input).

    >>> import os, tempfile
    >>> paths = write_dataset(tempfile.mkdtemp(), rows=1000, parts=3)
    >>> [os.path.basename(p) for p in paths]
    ['part-000.parquet', 'part-001.parquet', 'part-002.parquet']
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if rows < 0 or parts < 1:
        raise ValueError("rows must be >= 0 and parts >= 1")
    os.makedirs(folder, exist_ok=True)
    bounds = np.linspace(0, rows, parts + 1).round().astype(int)
    paths = []
    for k in range(parts):
        path = os.path.join(folder, f"part-{k:03d}.parquet")
        n = int(bounds[k + 1] - bounds[k])
        paths.append(path)
        if os.path.exists(path):
            try:
                if pq.ParquetFile(path).metadata.num_rows == n:
                    continue
            except Exception:  # unreadable: rewrite it
                pass
        table = pa.Table.from_pandas(make_frame(n, seed=seed, first_id=int(bounds[k])), preserve_index=False)
        tmp = path + ".tmp"
        pq.write_table(table, tmp, compression="snappy")
        os.replace(tmp, path)
    return paths
