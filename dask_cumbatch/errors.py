"""The exceptions and warnings dask-cumbatch raises for its users, in one place.

Import them from here (as ``pandas.errors`` holds pandas'); the paths they were first defined
at keep working and give the same classes.

- :class:`WeightError` (a ``ValueError``): invalid weights (NaN, inf, missing, negative) with
  ``invalid="raise"``, the default. Raised by every ``cumbatch`` method, :func:`~dask_cumbatch.export.to_files`,
  the training iterator and :class:`~dask_cumbatch.PushBatcher` when they meet such a row.
- :class:`OversizeError` (a ``ValueError``): a single row heavier than the limit with
  ``oversize="raise"``. Raised where :class:`WeightError` is.
- :class:`InputChangedError` (a ``RuntimeError``): a partition read in the finish differs from
  what the summary pass saw (files rewritten while they are batched, a non-deterministic
  source). Raised by the methods that compute ids, instead of returning wrong ones.
- :class:`ExportError` (a ``RuntimeError``): an export, append, follow, status or reader that
  cannot go on (a folder that is not an export, locked by another writer, damaged or changed
  inputs, a full disk); its message is one line that says what to do. Raised by
  ``dask_cumbatch.export`` and shown by ``cumbatch`` as ``cumbatch: error: ...``.
- :class:`StoreWarning` (a ``UserWarning``): an export into a store that offers no conditional
  create, so it takes no lock. Warned by :func:`~dask_cumbatch.export.to_files` and ``cumbatch
  export``.

Options that are not valid (a limit <= 0, an unknown mode, a missing column) raise the built-in
``ValueError``, ``TypeError`` or ``KeyError`` before any work starts (docs/design.md, "Invalid
input").

>>> import pandas as pd, dask_cumbatch
>>> from dask_cumbatch.errors import WeightError
>>> try:
...     pd.DataFrame({"w": [1.0, float("nan")]}).cumbatch.ids("w", 5)
... except WeightError as exc:
...     print(exc)
weight column 'w' has 1 invalid value(s) (NaN, inf, missing or negative); the first is at index 1. Clean them or pass invalid='skip'.
"""
from __future__ import annotations

__all__ = ["WeightError", "OversizeError", "InputChangedError", "ExportError", "StoreWarning"]


class WeightError(ValueError):
    """Invalid weights (NaN, inf, missing, negative) with ``invalid="raise"``.

    >>> import pandas as pd, dask_cumbatch
    >>> pd.DataFrame({"w": [1.0, -2.0]}).cumbatch.ids("w", 5)
    Traceback (most recent call last):
    dask_cumbatch.errors.WeightError: weight column 'w' has 1 invalid value(s) (NaN, inf, missing or negative); the first is at index 1. Clean them or pass invalid='skip'.
    """


class OversizeError(ValueError):
    """A single row heavier than the limit with ``oversize="raise"``.

    >>> import pandas as pd, dask_cumbatch
    >>> pd.DataFrame({"w": [1, 9]}).cumbatch.ids("w", 5, oversize="raise")
    Traceback (most recent call last):
    dask_cumbatch.errors.OversizeError: row at index 1 has weight 9 above the limit 5 in column 'w'; pass oversize='allow' to put such rows alone in a batch
    """


class InputChangedError(RuntimeError):
    """A partition read in the finish differs from what the summary pass saw.

    ``partition`` is the partition's number. Raised instead of returning wrong ids when the
    input changes while it is being batched (rewritten files, a non-deterministic source).

    >>> InputChangedError("partition 3 changed", partition=3).partition
    3
    """

    def __init__(self, message: str, partition: int | None = None):
        super().__init__(message)
        self.partition = partition

    def __reduce__(self):  # keep .partition when a cluster ships the error to the client
        return type(self), (str(self), self.partition)


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


# Tracebacks have always named it after its first public home, dask_cumbatch.export.
ExportError.__module__ = "dask_cumbatch.export"


class StoreWarning(UserWarning):
    """An export into a store that offers no conditional create: it cannot take a lock, so
    running one writer at a time into the folder is the user's job (docs/export.md).

    Where one writer per folder is ensured otherwise (a scheduler that never starts two jobs for
    one output), silence it:

    >>> import warnings
    >>> from dask_cumbatch.errors import StoreWarning
    >>> with warnings.catch_warnings(record=True) as shown:
    ...     warnings.simplefilter("ignore", StoreWarning)
    ...     warnings.warn("memory://x takes no lock", StoreWarning)  # as an export would
    >>> shown
    []
    """
