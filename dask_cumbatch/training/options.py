"""The streaming options of ``iter_batches``, validated before any work.

>>> TrainingOptions.make(shuffle=True).shuffle
'batches'
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import one_of, whole_number
from .formats import FORMAT_TYPES, require_format

FORMATS = tuple(FORMAT_TYPES)
SHUFFLES = (None, "batches")
DEFAULT_SHUFFLE_BUFFER = 256


@dataclass(frozen=True)
class TrainingOptions:
    """The validated streaming options of :meth:`iter_batches` (checked before any work).

    >>> TrainingOptions.make(shuffle="batches", world_size=4, rank=3).shuffle_buffer
    256
    """

    prefetch: int = 1
    batches_per_partition: int | None = None
    shuffle: str | None = None
    seed: int = 0
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = False
    format: str = "pandas"

    @classmethod
    def make(cls, *, prefetch=1, batches_per_partition=None, shuffle=None, seed=None,
             shuffle_buffer=None, epoch=0, rank=0, world_size=1, drop_last=False,
             format="pandas") -> "TrainingOptions":
        """Validate; raises ``ValueError``/``TypeError``/``ImportError`` saying what to change.

        >>> TrainingOptions.make(rank=1, world_size=2).rank
        1
        """
        prefetch = whole_number("prefetch", prefetch, 0)
        batches_per_partition = whole_number("batches_per_partition", batches_per_partition, optional=True)
        shuffle = {True: "batches", False: None}.get(shuffle, shuffle) if isinstance(shuffle, bool) else shuffle
        one_of("shuffle", shuffle, SHUFFLES)
        seed = 0 if seed is None else whole_number("seed", seed, 0)
        shuffle_buffer = whole_number("shuffle_buffer", DEFAULT_SHUFFLE_BUFFER if shuffle_buffer is None
                                      else shuffle_buffer)
        epoch = whole_number("epoch", epoch, 0)
        world_size = whole_number("world_size", world_size)
        rank = whole_number("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank must be in [0, world_size): got rank={rank}, world_size={world_size}")
        if not isinstance(drop_last, (bool, np.bool_)):
            raise TypeError(f"drop_last must be True or False, not {drop_last!r}")
        one_of("format", format, FORMATS)
        require_format(format)
        return cls(prefetch, batches_per_partition, shuffle, seed, shuffle_buffer, epoch, rank,
                   world_size, bool(drop_last), format)

    def with_(self, **changes) -> "TrainingOptions":
        """A validated copy with some fields changed.

        >>> TrainingOptions.make().with_(epoch=3).epoch
        3
        """
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d.update(changes)
        return TrainingOptions.make(**d)

