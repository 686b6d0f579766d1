"""Batching modes as plug-ins: a tiny registry behind one small protocol.

Like Dask's cumulative reductions (a ``chunk`` per partition, an ``aggregate`` that carries
state across partitions, a ``finalize``), a mode supplies three hooks the mode-agnostic scan
(:mod:`dask_cumbatch.engine.scan`) calls, plus an optional second summary pass. Every hook gets
the call's :class:`~dask_cumbatch.engine.context.BatchContext` ``ctx``: the options
(``ctx.opts``), whether the weights are floats (``ctx.is_float``) and the backend that runs the
kernels (``ctx.backend``), resolved once for the partition.

- ``summarize(arrays, ctx) -> Summary``: the map step over one non-empty partition's
  :class:`~dask_cumbatch.engine.partition.PartitionArrays`; returns an instance of a
  :class:`~dask_cumbatch.engine.state.Summary` subclass (the scan fills the common fields: row
  counts, weight total, keys, invalid and oversize rows). ``ctx.head_bytes`` and
  ``ctx.prefer_whole`` say how much of the partition it may keep.
- ``advance(summary, carry, ctx, load) -> Step``: the scan step: the
  :class:`~dask_cumbatch.engine.state.Carry` after the partition, from the one before it.
  ``load()`` returns the partition's arrays again (read from the source) when the summary
  alone cannot decide; the scan records such partitions in ``PartitionPlan.walked``.
- ``finish(arrays, entry, ctx) -> ids``: the final int64 ids of the partition's batched rows
  from its :class:`~dask_cumbatch.engine.state.Entry`.
- optional: ``needs_extra_pass(opts) -> bool``, ``extra_summary(arrays, entry, ctx)`` and
  ``scan_extra(summaries, plan, opts) -> PartitionPlan``: a second pass over the data after the
  scan (floor mode's ``max_rows`` cap pass).
- optional: ``quick_summary(arrays, ctx) -> Summary | None``: ``summarize`` of plain weights
  whose validity is not checked yet (float64 or int64, no keys or sort window), from a kernel
  that checks each weight as it reads it, so that the summary pass reads the weights once; None
  declines (an invalid weight, say), and the checked path runs as without it (floor mode:
  ``floor_summary_float``/``floor_summary_int``).

A new mode is one module with an object that has these hooks, and ``register_mode(name, mode)``.

>>> sorted(registered_modes())
['fill', 'floor', 'greedy']
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ... import options
from ..state import Carry


@dataclass
class Step:
    """What ``advance`` returns: the carry after the partition, and a backdated start.

    ``backdated`` is the (negative) position, relative to the partition's first row, of a
    start a cut-back placed in an earlier partition (greedy with ``multiple``), else None.

    >>> Step(Carry(batches=2)).backdated is None
    True
    """

    carry: Carry
    backdated: int | None = None


class Mode(Protocol):
    """The hooks the scan and the finish call (see the module docstring).

    >>> all(hasattr(mode_for_name("greedy"), hook) for hook in ("summarize", "advance", "finish"))
    True
    """

    def summarize(self, arrays, ctx):
        """The map step: a Summary subclass for one non-empty partition's arrays.

        >>> callable(Mode.summarize)
        True
        """

    def advance(self, summary, carry, ctx, load) -> Step:
        """The scan step: the carry after the partition (``load()`` reads it again if needed).

        >>> callable(Mode.advance)
        True
        """

    def finish(self, arrays, entry, ctx):
        """The finish: int64 ids of the partition's batched rows from its Entry.

        >>> callable(Mode.finish)
        True
        """


_MODES = options.MODE_REGISTRY  # the one registry (options names modes; the engine runs them)


def register_mode(name: str, mode) -> None:
    """Make ``mode=name`` valid everywhere (accessor, Dask, export) with the hooks of ``mode``.

    >>> class Rows:  # hooks elided here: tests/engine/test_mode_registry.py has a working toy mode
    ...     summarize = advance = finish = staticmethod(lambda *args: None)
    >>> register_mode("rows-demo", Rows()); "rows-demo" in registered_modes()
    True
    >>> unregister_mode("rows-demo")
    """
    for hook in ("summarize", "advance", "finish"):
        if not callable(getattr(mode, hook, None)):
            raise TypeError(f"mode {name!r} lacks the {hook}() hook")
    _MODES[name] = mode


def unregister_mode(name: str) -> None:
    """Remove a mode added by :func:`register_mode`.

    >>> unregister_mode("no-such-mode")
    """
    _MODES.pop(name, None)


def registered_modes() -> list:
    """The names of every registered mode.

    >>> "greedy" in registered_modes()
    True
    """
    _builtin()
    return list(_MODES)


def mode_for(opts):
    """The mode object that implements ``opts.mode``.

    >>> from dask_cumbatch.options import BatchOptions
    >>> type(mode_for(BatchOptions.make("w", 5, mode="floor"))).__name__
    'FloorMode'
    """
    return mode_for_name(opts.mode)


def mode_for_name(name: str):
    """The mode object registered as ``name``.

    >>> type(mode_for_name("fill")).__name__
    'GreedyMode'
    """
    _builtin()
    try:
        return _MODES[name]
    except KeyError:
        raise ValueError(f"mode={name!r} is not a registered batching mode") from None


def needs_extra_pass(opts) -> bool:
    """Whether ``opts.mode`` needs a second summary pass after the scan (floor with ``max_rows``).

    >>> from dask_cumbatch.options import BatchOptions
    >>> needs_extra_pass(BatchOptions.make("w", 5, mode="floor", max_rows=3))
    True
    """
    check = getattr(mode_for(opts), "needs_extra_pass", None)
    return bool(check and check(opts))


def _builtin() -> None:
    if "greedy" not in _MODES:
        from .floor import FloorMode
        from .greedy import GreedyMode

        _MODES.setdefault("greedy", GreedyMode())
        _MODES.setdefault("fill", GreedyMode())
        _MODES.setdefault("floor", FloorMode())
