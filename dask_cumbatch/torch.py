"""A PyTorch ``IterableDataset`` of token-budget batches (PyTorch is optional).

>>> from dask_cumbatch.torch import CumbatchIterableDataset  # doctest: +SKIP
>>> ds = CumbatchIterableDataset(ddf, "n_tokens", 4096, cost="padded", sort_window=1024,
...                              shuffle="batches", seed=0)  # doctest: +SKIP
>>> loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)  # doctest: +SKIP
>>> for epoch in range(3):  # doctest: +SKIP
...     ds.set_epoch(epoch)
...     for batch in loader:  # a dict of column tensors, one whole batch
...         ...

The plan pass runs once, when the dataset is built (in the main process); every epoch and
every DataLoader worker reuses it. Ranks split the shuffled stream of batches as
:meth:`iter_batches` does (rank r takes every W-th batch, every rank the same count); the
DataLoader workers of a rank split that rank's batches by output partition, so each
partition is read by one worker only and no batch is yielded twice. See docs/training.md.
"""
from __future__ import annotations

import numpy as np

try:  # optional: the module imports without PyTorch and fails on use
    import torch
    from torch.utils.data import IterableDataset as _Base
    from torch.utils.data import get_worker_info
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
    _Base = object

    def get_worker_info():
        return None

from .training import BatchIterator

_NEEDS_TORCH = (
    "dask_cumbatch.torch needs PyTorch, which dask-cumbatch does not install: pip install torch "
    "(or use ddf.cumbatch.iter_batches(..., format='numpy') without it)"
)


def require_torch() -> None:
    """Raise a clear ``ImportError`` when PyTorch is not installed.

    >>> require_torch()  # PyTorch is installed here
    """
    if torch is None:
        raise ImportError(_NEEDS_TORCH)


def distributed_rank_world(rank=None, world_size=None) -> tuple[int, int]:
    """``(rank, world_size)``: the given values, else ``torch.distributed``'s, else ``(0, 1)``.

    >>> distributed_rank_world(), distributed_rank_world(1, 4)
    ((0, 1), (1, 4))
    """
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    dist = getattr(torch, "distributed", None) if torch is not None else None
    if dist is not None and dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
    else:
        r, w = 0, 1
    return (int(rank) if rank is not None else r), (int(world_size) if world_size is not None else w)


def worker_split(info) -> tuple[int, int]:
    """``(worker_id, num_workers)`` from ``torch.utils.data.get_worker_info()`` (``None``: (0, 1)).

    >>> worker_split(None)
    (0, 1)
    """
    if info is None:
        return 0, 1
    return int(info.id), int(info.num_workers)


class CumbatchIterableDataset(_Base):
    """Whole batches of ``ddf`` cut by cumulative ``weight`` under ``limit``, as a torch dataset.

    ``options`` are the core batching options (``cost``, ``sort_window``, ``multiple``,
    ``by``, ``max_rows``, ...) and the streaming options of ``iter_batches`` (``shuffle``,
    ``seed``, ``shuffle_buffer``, ``prefetch``, ``batches_per_partition``, ``drop_last``,
    ``format``, default ``"torch"``). ``rank``/``world_size`` default to
    ``torch.distributed``'s when it is initialised (build the dataset after
    ``init_process_group``), else 0 and 1. Use ``DataLoader(ds, batch_size=None)``: each item
    is already a batch, a dict ``{column: tensor}`` (non-numeric columns stay NumPy arrays).

    ``len(ds)`` is the number of batches each rank yields per epoch (all its workers
    together), the same on every rank. Call ``set_epoch(e)`` before each epoch.

    >>> import dask.dataframe as dd, pandas as pd
    >>> from torch.utils.data import DataLoader
    >>> ddf = dd.from_pandas(pd.DataFrame({"tokens": [3] * 100}), npartitions=4)
    >>> ds = CumbatchIterableDataset(ddf, "tokens", 12, shuffle="batches", seed=0)
    >>> len(ds), sum(1 for _ in DataLoader(ds, batch_size=None, num_workers=0))
    (25, 25)
    """

    def __init__(self, ddf, weight, limit, *, rank=None, world_size=None, epoch=0, format="torch",
                 **options):
        require_torch()
        rank, world_size = distributed_rank_world(rank, world_size)
        it = ddf.cumbatch.iter_batches(weight, limit, rank=rank, world_size=world_size, epoch=epoch,
                                       format=format, **options)
        self._source = it.source
        self._options = it.options
        self._len = it.batches_per_rank
        self.n_batches = it.n_batches
        self.dropped = it.dropped
        self.padded = it.padded
        self.last_iterator = None

    @property
    def epoch(self) -> int:
        """The epoch whose order the next iteration uses (see :meth:`set_epoch`).

        >>> import pandas as pd
        >>> ds = CumbatchIterableDataset(pd.DataFrame({"tokens": [3] * 12}), "tokens", 6)
        >>> ds.epoch
        0
        """
        return self._options.epoch

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from the next iteration on (as ``DistributedSampler``).

        >>> import pandas as pd
        >>> ds = CumbatchIterableDataset(pd.DataFrame({"tokens": [3] * 12}), "tokens", 6)
        >>> ds.set_epoch(3); ds.epoch
        3
        """
        self._options = self._options.with_(epoch=epoch)

    def __len__(self) -> int:
        return self._len

    def iterator(self, worker=None) -> BatchIterator:
        """The :class:`BatchIterator` of one DataLoader worker (``(id, num_workers)``).

        >>> import pandas as pd
        >>> ds = CumbatchIterableDataset(pd.DataFrame({"tokens": [3] * 12}), "tokens", 6)
        >>> it = ds.iterator((0, 2)); len(it) <= len(ds)
        True
        """
        if worker is None:
            worker = worker_split(get_worker_info())
        return BatchIterator(self._source, self._options, worker)

    def __iter__(self):
        it = self.iterator()
        self.last_iterator = it  # its counters: wait_seconds, max_buffered, ... (per process)
        for _, batch in it:
            yield batch


class CumbatchFollowDataset(_Base):
    """The closed batches of an export folder as they are committed, as a torch dataset.

    Follows the folder in ``path`` as :func:`dask_cumbatch.export.follow_batches` does (``start``,
    ``poll``, ``idle_exit``: ``None`` follows forever, a number stops after that many seconds
    without a new batch; the open last batch is never yielded). Rank ``r`` of ``world_size``
    takes the batch ids ``>= start`` with ``id % world_size == r`` (``rank``/``world_size``
    default to ``torch.distributed``'s when it is initialised, else 0 and 1); the DataLoader
    workers of a rank split those again by id, and a worker reads only the files that hold its
    batches. ``shuffle_buffer=k`` yields from a buffer of ``k`` arrived batches in a seeded,
    deterministic order (for the same arrivals); 0 keeps id order. Items are dicts of column
    tensors (``format="torch"``; non-numeric columns stay NumPy arrays), or any format of
    ``iter_batches``. Use ``DataLoader(ds, batch_size=None)``: each item is already a batch.

    >>> import tempfile, pandas as pd
    >>> from torch.utils.data import DataLoader
    >>> from dask_cumbatch.export import to_files
    >>> out = tempfile.mkdtemp()
    >>> _ = to_files(pd.DataFrame({"tokens": [3] * 10}), out, "tokens", 6)
    >>> ds = CumbatchFollowDataset(out, idle_exit=0, rank=0, world_size=2)
    >>> [item["batch"].tolist() for item in DataLoader(ds, batch_size=None)]
    [[0, 0], [2, 2]]
    """

    def __init__(self, path, *, start=0, poll=1.0, idle_exit=None, rank=None, world_size=None,
                 shuffle_buffer=0, seed=0, format="torch", storage_options=None):
        from .options import whole_number
        from .training import TrainingOptions

        require_torch()
        rank, world_size = distributed_rank_world(rank, world_size)
        self.options = TrainingOptions.make(seed=seed, rank=rank, world_size=world_size, format=format)
        self.shuffle_buffer = whole_number("shuffle_buffer", shuffle_buffer, 0)
        self.path, self.start, self.poll, self.idle_exit = path, start, poll, idle_exit
        self.storage_options = storage_options

    def batches(self, worker=None):
        """``(batch_id, item)`` of one DataLoader worker (``(id, num_workers)``), in the order
        the dataset yields them.

        >>> import tempfile, pandas as pd
        >>> from dask_cumbatch.export import to_files
        >>> out = tempfile.mkdtemp()
        >>> _ = to_files(pd.DataFrame({"w": [1] * 6}), out, "w", 1)
        >>> ds = CumbatchFollowDataset(out, idle_exit=0, format="pandas")
        >>> [i for i, _ in ds.batches((1, 2))]
        [1, 3]
        """
        from .export import follow_batches
        from .training import FORMAT_TYPES

        if worker is None:
            worker = worker_split(get_worker_info())
        o = self.options
        mine = _follow_split(o.rank, o.world_size, *worker)
        fmt = FORMAT_TYPES[o.format]()
        stream = follow_batches(self.path, start=self.start, poll=self.poll, idle_exit=self.idle_exit,
                                storage_options=self.storage_options, wanted=mine)
        rng = np.random.default_rng([o.seed, o.rank, worker[0]])
        for batch_id, frame in _shuffled(stream, self.shuffle_buffer, rng):
            yield batch_id, fmt.slice(fmt.partition(frame), 0, len(frame))

    def __iter__(self):
        for _, item in self.batches():
            yield item


def _follow_split(rank: int, world_size: int, worker: int, workers: int):
    """Whether a batch id is this worker's: rank ``rank`` takes ``id % world_size == rank``,
    its workers every ``workers``-th of those.

    >>> mine = _follow_split(1, 2, 0, 2)
    >>> [i for i in range(12) if mine(i)]
    [1, 5, 9]
    """
    return lambda i: i % world_size == rank and (i // world_size) % workers == worker


def _shuffled(stream, buffer: int, rng):
    """``stream``'s items through a shuffle buffer of ``buffer`` slots: once full, each arrival
    takes the place of a uniformly drawn item, which is yielded; the rest at the end in random
    order (``buffer`` 0 or 1: the stream's order).

    >>> import numpy as np
    >>> out = list(_shuffled(iter(range(10)), 4, np.random.default_rng(0)))
    >>> sorted(out) == list(range(10)), out != list(range(10))
    (True, True)
    """
    if buffer <= 1:
        yield from stream
        return
    held = []
    for item in stream:
        if len(held) < buffer:
            held.append(item)
            continue
        k = int(rng.integers(len(held)))
        held[k], item = item, held[k]
        yield item
    for k in rng.permutation(len(held)):
        yield held[k]
