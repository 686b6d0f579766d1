"""Path tables: each mode declares the ways it can run a step, and one function picks among them.

A step (greedy's summary walk, its scan, its finish; floor's summary and finish) lists its
paths as a tuple of :class:`Path` rows, fastest first: a name, the condition under which it
applies (a named predicate of the step's *case*, whose docstring says when) and the optional
kernels it needs. :func:`choose_path` picks the first row whose kernels the backend offers
and whose condition holds, once per partition and step. A fast path may still decline once
run (prefix sums that would leave int64, say): the step then takes the next path that applies
(:func:`paths_for`), which gives the same result, more slowly.

A backend without a path's kernels (``backend.without(...)``, or the GPU's, see
``backends.GPU_LACKS``) never takes it: that is how a fast path is switched off to measure it
(``benchmarks/bench_paths.py``). docs/how-it-works.md, "Each mode's paths", lists the tables.

>>> from dask_cumbatch.engine.backends import backend_for
>>> def always(case):
...     '''Every case.'''
...     return True
>>> table = (Path("fast", always, ("greedy_starts",)), Path("general", always, ("walk_batches",)))
>>> choose_path(table, None, backend_for("cpu")).name
'fast'
>>> choose_path(table, None, backend_for("cpu").without("greedy_starts")).name
'general'
"""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple


class Path(NamedTuple):
    """One way to run a step: ``name``, the predicate ``applies(case)`` and the ``kernels`` it needs.

    >>> Path("walk", bool, ("walk_batches",)).kernels
    ('walk_batches',)
    """

    name: str
    applies: Callable
    kernels: tuple = ()


def paths_for(table, case, backend) -> Iterator[Path]:
    """The paths of ``table`` that apply to ``case`` on ``backend``, in the table's order
    (lazily: a condition is looked at only once every path before it was passed over).

    >>> from dask_cumbatch.engine.backends import backend_for
    >>> [p.name for p in paths_for((Path("a", bool), Path("b", bool)), 1, backend_for("cpu"))]
    ['a', 'b']
    """
    return (path for path in table if _usable(path, case, backend))


def choose_path(table, case, backend) -> Path:
    """The first path of ``table`` whose kernels ``backend`` offers and whose condition holds.

    >>> from dask_cumbatch.engine.backends import backend_for
    >>> choose_path((Path("never", lambda case: False), Path("always", bool)), 1, backend_for("cpu")).name
    'always'
    """
    for path in table:  # not through paths_for: this runs for every partition and step
        if _usable(path, case, backend):
            return path
    raise LookupError(f"no path of {[p.name for p in table]} applies")


def _usable(path: Path, case, backend) -> bool:
    """Whether ``backend`` offers every kernel of ``path`` and its condition holds for ``case``
    (``backend.offers`` without its name check: tests/engine/test_path_tables.py checks the names)."""
    for kernel in path.kernels:
        if getattr(backend, kernel) is None:
            return False
    return path.applies(case)
