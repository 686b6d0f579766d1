"""Shared fixtures and helpers for the dask-cumbatch test-suite.

* ``make_pdf`` / ``make_ddf`` build pandas / Dask frames with a weight column ``w`` (any dtype),
  optional key columns and *exactly* the requested partition sizes (zeros included), with known
  divisions (strictly increasing, so empty partitions are legal) or unknown ones.
* Hypothesis profiles: ``default`` (deadline off) and ``ci`` (deadline off, derandomized, fewer
  examples); pick one with ``HYPOTHESIS_PROFILE=ci``.
* ``threaded``: a fixture that runs Dask on the local threaded scheduler.
* For the batching cases: ``GREEDY_FILL`` / ``ALL_MODES`` (option sets), ``ref_ids`` (the
  reference ids for an options dict), ``ddf_ids`` (a Dask frame's computed ids) and
  ``counted_frame`` (a Dask frame that records each partition it reads in ``PIECES_READ``).
* ``failing_on_call``: a function that fails on its n-th call, as a crash would, for the
  interrupted-run tests.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import dask
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # `import reference` from any rootdir

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "default",
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    settings.register_profile(
        "ci",
        deadline=None,
        derandomize=True,
        max_examples=40,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass


def _dask_cumbatch():
    import dask_cumbatch  # noqa: F401  (registers the accessors)

    return dask_cumbatch


@pytest.fixture(autouse=True, scope="session")
def _register_accessors():
    _dask_cumbatch()


@pytest.fixture
def threaded():
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture
def sync():
    with dask.config.set(scheduler="sync"):
        yield


# ------------------------------------------------------------------------------------ frames
def make_pdf(weights, keys=None, dtype=None, step: int = 1, extra: bool = True) -> pd.DataFrame:
    """A pandas frame: weight column ``w`` (``dtype`` if given), keys, and a row-number column.

    ``keys`` is a list (one column ``k``) or a dict ``{column: values}``. The index is
    ``step * row`` so that gaps leave room for strictly increasing divisions around empty
    partitions. ``extra`` adds ``pos`` (the row number) and ``s`` (a string payload).
    """
    n = len(weights)
    if dtype is None:
        w = pd.Series(list(weights)) if n else pd.Series([], dtype="int64")
        if w.dtype == object:  # e.g. a mix of python ints and floats
            w = w.astype("float64")
    else:
        w = pd.Series(list(weights), dtype=dtype)
    data = {"w": w.to_numpy() if dtype is None else w.array}
    if keys is not None:
        if not isinstance(keys, dict):
            keys = {"k": keys}
        for name, values in keys.items():
            data[name] = _key_column(values)
    if extra:
        data["pos"] = np.arange(n, dtype="int64")
        # Dask turns python strings into string[pyarrow]; do the same so frames compare equal
        data["s"] = pd.array([f"r{i}" for i in range(n)], dtype="string[pyarrow]")
    index = pd.Index(np.arange(n, dtype="int64") * step, name="idx")
    return pd.DataFrame(data, index=index)


def _key_column(values):
    values = list(values)
    if values and all(isinstance(v, str) or v is None or (isinstance(v, float) and v != v)
                      for v in values):
        return pd.array([None if not isinstance(v, str) else v for v in values],
                        dtype="string[pyarrow]")
    return pd.Series(values).to_numpy() if values else np.array([], dtype="int64")


def _identity(piece):
    return piece


def split(pdf: pd.DataFrame, sizes) -> list[pd.DataFrame]:
    sizes = list(sizes)
    assert sum(sizes) == len(pdf), (sizes, len(pdf))
    pieces, pos = [], 0
    for s in sizes:
        pieces.append(pdf.iloc[pos : pos + s])
        pos += s
    return pieces


def divisions_for(sizes, step: int) -> tuple:
    """Strictly increasing divisions for index ``step * row`` and the given partition sizes."""
    sizes = list(sizes)
    n = sum(sizes)
    divs = []
    pos = 0
    # partition i starts at row `pos`; empty partitions get distinct labels just below
    # the next non-empty partition's first label (or above the last label at the end)
    starts = []
    for s in sizes:
        starts.append(pos)
        pos += s
    for i, s in enumerate(sizes):
        if s:
            divs.append(step * starts[i])
        else:
            # how many empty partitions follow up to and including this one's run
            j = i
            while j < len(sizes) and sizes[j] == 0:
                j += 1
            run_after = j - i  # this one and the empties after it
            if j < len(sizes):  # a non-empty partition follows: labels below its first label
                divs.append(step * starts[j] - run_after)
            else:  # trailing empties: distinct labels above the last row
                first_trailing = len(sizes) - run_after
                while first_trailing > 0 and sizes[first_trailing - 1] == 0:
                    first_trailing -= 1
                divs.append(step * max(n - 1, 0) + 1 + (i - first_trailing))
    # final (inclusive) division: the last label, or above it when the frame ends with empties
    if sizes and sizes[-1] == 0:
        k = len(sizes)
        while k > 0 and sizes[k - 1] == 0:
            k -= 1
        divs.append(step * max(n - 1, 0) + 1 + (len(sizes) - k))
    else:
        divs.append(step * (n - 1))
    assert all(a < b for a, b in zip(divs[:-2], divs[1:-1])), divs
    return tuple(divs)


def make_ddf(weights, partition_sizes=None, keys=None, dtype=None, known_divisions=True,
             npartitions=None, extra=True):
    """A Dask frame with exactly ``partition_sizes`` rows per partition (zeros allowed).

    Returns ``(pdf, ddf)``. With ``npartitions`` instead of sizes, uses ``dd.from_pandas``.
    Known divisions are strictly increasing (index labels are spaced to leave room for empty
    partitions); ``known_divisions=False`` gives unknown divisions.
    """
    import dask.dataframe as dd

    if partition_sizes is None:
        pdf = make_pdf(weights, keys=keys, dtype=dtype, extra=extra)
        ddf = dd.from_pandas(pdf, npartitions=npartitions or 1, sort=True)
        if not known_divisions:
            ddf = ddf.clear_divisions()
        return pdf, ddf
    sizes = list(partition_sizes)
    step = len(sizes) + 2
    pdf = make_pdf(weights, keys=keys, dtype=dtype, step=step, extra=extra)
    pieces = split(pdf, sizes)
    divisions = divisions_for(sizes, step) if known_divisions and len(pdf) else None
    ddf = dd.from_map(_identity, pieces, meta=pdf.iloc[:0], divisions=divisions,
                      enforce_metadata=False)
    return pdf, ddf


def partition_lengths(ddf) -> list[int]:
    return ddf.map_partitions(len).compute().tolist()


def ids_list(result) -> list:
    """Ids of a computed (or lazy) Series as a list of Python ints / None."""
    if hasattr(result, "compute") and not isinstance(result, (pd.Series, pd.DataFrame)):
        result = result.compute()
    return [None if pd.isna(v) else int(v) for v in result.tolist()]


@pytest.fixture
def frames():
    """The ``make_ddf`` helper as a fixture."""
    return make_ddf


# The text dtype of the tests' frames: pandas 3's "str"; on pandas 2, where "str" means object (and
# an empty object column is stored as an Arrow null column), the Arrow string dtype Dask reads back.
TEXT = "str" if int(pd.__version__.split(".")[0]) >= 3 else "string[pyarrow]"


def tree(folder) -> dict:
    """{relative path: sha256} of every file under ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def manifest(folder) -> dict:
    """The export manifest of ``folder`` as a dict."""
    with open(os.path.join(folder, "_manifest.json")) as f:
        return json.load(f)


def assert_whole_batches(parts, want, pdf, batches_per_partition=None, check_dtype=True):
    """Repartitioned output is right: every batch in exactly one partition (at most
    ``batches_per_partition`` each), and the partitions concatenate back to ``pdf`` in order,
    with batch ids ``want``. Returns ``{batch: partition}``."""
    owner = {}
    for k, part in enumerate(parts):
        assert "batch" in part.columns
        for b in part["batch"].unique().tolist():
            assert b not in owner, f"batch {b} split over partitions {owner[b]} and {k}"
            owner[b] = k
        if batches_per_partition is not None:
            assert part["batch"].nunique() <= batches_per_partition
    whole = pd.concat(parts)
    assert whole["batch"].tolist() == want
    pd.testing.assert_frame_equal(whole[pdf.columns], pdf, check_dtype=check_dtype)
    return owner


# ------------------------------------------------------------------ batching cases (tests/engine)
GREEDY_FILL = [
    dict(mode="greedy"),
    dict(mode="greedy", cost="padded"),
    dict(mode="fill"),
    dict(mode="fill", cost="padded"),
]
ALL_MODES = GREEDY_FILL + [dict(mode="floor"), dict(mode="greedy", multiple=4),
                           dict(mode="greedy", max_rows=5, multiple=2)]


def ref_ids(weights, limit, opts, keys=None):
    """The reference ids for an options dict (``by`` dropped: the keys are passed instead)."""
    from reference import reference_ids

    opts = dict(opts)
    opts.pop("by", None)
    return reference_ids(weights, limit, keys=keys, **opts)


def ddf_ids(ddf, limit, **opts):
    """The computed ids of ``ddf`` batched on ``w``, as a list."""
    return ids_list(ddf.cumbatch.ids("w", limit, **opts).compute())


PIECES_READ: list[int] = []  # the length of each piece a counted frame read, in order


def _read_counted(piece):
    PIECES_READ.append(len(piece))
    return piece


def counted_frame(weights, size=10):
    """``(pdf, ddf)``: a Dask frame of ``size``-row partitions that records in ``PIECES_READ``
    each partition it reads (to check what reads the data, and how often)."""
    import dask.dataframe as dd

    pdf = make_pdf(weights)
    pieces = [pdf.iloc[i : i + size] for i in range(0, len(weights), size)]
    divisions = tuple(range(0, len(weights), size)) + (len(weights) - 1,)
    ddf = dd.from_map(_read_counted, pieces, meta=pdf.iloc[:0], divisions=divisions,
                      enforce_metadata=False)
    return pdf, ddf


def failing_on_call(func, number: int):
    """``func``, except that its ``number``-th call raises ``RuntimeError("crash (simulated)")``."""
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == number:
            raise RuntimeError("crash (simulated)")
        return func(*args, **kwargs)

    return flaky
