"""What one batching call carries through the engine: :class:`BatchContext`.

Every engine function of a call needs the same few things: the options, whether the weights
are floats, and the backend that runs the kernels. They travel together in one frozen object
instead of as separate arguments, so a new per-call setting is one field here, not a new
argument on every function between the Dask layer and the kernels.
"""
from __future__ import annotations

from dataclasses import dataclass

from .backends import Backend, backend_for


@dataclass(frozen=True)
class BatchContext:
    """The options, the weights' kind and the backend of one batching call.

    ``backend`` is resolved from ``opts.device`` for each partition by its row count
    (:meth:`for_rows`: tiny partitions may run uncompiled, ``device="auto"`` picks the GPU for
    large ones); None until then. ``head_bytes`` and ``prefer_whole`` tune how much of a
    partition a greedy summary keeps (:func:`~dask_cumbatch.engine.scan.head_bytes_for`;
    ``prefer_whole``: the summary need not travel, so keep the partition whole rather than
    build a chain table).

    >>> from dask_cumbatch.options import BatchOptions
    >>> ctx = BatchContext(BatchOptions.make("w", 6), is_float=False)
    >>> ctx.for_rows(10**6).backend.name, ctx.is_float
    ('cpu', False)
    """

    opts: object
    is_float: bool
    backend: Backend | None = None
    head_bytes: int = 0
    prefer_whole: bool = False

    def for_rows(self, n_rows: int | None) -> "BatchContext":
        """This context with the backend for a partition of ``n_rows`` rows (see
        :func:`~dask_cumbatch.engine.backends.backend_for`, the one place a device is resolved).

        >>> from dask_cumbatch.options import BatchOptions
        >>> BatchContext(BatchOptions.make("w", 6), False).for_rows(10**6).backend.name
        'cpu'
        """
        backend = backend_for(self.opts.device, n_rows)
        derived = self.__dict__.get("_derived")  # the last one: every partition of a call gets the same
        if derived is None or derived.backend is not backend:
            derived = _replaced(self, backend=backend)
            self.__dict__["_derived"] = derived
        return derived

    def __getstate__(self) -> dict:
        """The fields alone (not the derived context kept by :meth:`for_rows`, whose backend
        holds a module): a context travels to the workers."""
        return {k: v for k, v in self.__dict__.items() if k != "_derived"}

    def on(self, backend: Backend) -> "BatchContext":
        """This context with ``backend`` (a caller that already resolved one).

        >>> from dask_cumbatch.options import BatchOptions
        >>> from dask_cumbatch.engine.backends import host_backend
        >>> BatchContext(BatchOptions.make("w", 6), False).on(host_backend()).backend.name
        'cpu'
        """
        return self if backend is self.backend else _replaced(self, backend=backend)

    def keeping(self, head_bytes: int, prefer_whole: bool = False) -> "BatchContext":
        """This context with a greedy summary's head budget (``head_bytes``, ``prefer_whole``).

        >>> from dask_cumbatch.options import BatchOptions
        >>> BatchContext(BatchOptions.make("w", 6), False).keeping(1024).head_bytes
        1024
        """
        return _replaced(self, head_bytes=head_bytes, prefer_whole=prefer_whole)


def _replaced(ctx: BatchContext, **changes) -> BatchContext:
    """``dataclasses.replace(ctx, **changes)`` without its per-field work (it runs twice a
    partition: ~210 bytecodes a call, 2.5 % of floor's per-partition Python at 1,000 rows):
    a frozen dataclass without ``__post_init__`` is its ``__dict__``."""
    new = object.__new__(type(ctx))
    new.__dict__.update(ctx.__getstate__(), **changes)
    return new
