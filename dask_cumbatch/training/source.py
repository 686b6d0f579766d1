"""Where the batches come from: a repartitioned frame whose partitions hold whole batches."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..dask import repartition


@dataclass
class BatchSource:
    """A repartitioned frame (whole batches per partition) and the id range of each partition.

    Built from the plan pass; picklable (DataLoader workers get a copy).

    >>> import pandas as pd, dask_cumbatch
    >>> it = pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2)
    >>> it.source.ranges, it.source.n_batches
    ([(0, 2)], 3)
    """

    collection: object  # dask DataFrame: output partition k holds batch ids ranges[k]
    name: str
    ranges: list
    n_batches: int
    sync: bool = False  # compute with the synchronous scheduler (pandas input)
    _parts: list | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_plan(cls, prep, plan, batches_per_partition=None, sync=False) -> "BatchSource":
        """The source of a planned frame (``prep`` and ``plan`` from the Dask layer, dask_cumbatch.dask).

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2, batches_per_partition=2).source.ranges
        [(0, 1), (2, 2)]
        """
        collection = repartition.repartition(prep, plan, batches_per_partition)
        ranges = repartition.output_ranges(plan, batches_per_partition)
        if ranges and collection.npartitions != len(ranges):  # pragma: no cover - graph contract
            raise RuntimeError("repartition and output_ranges disagree on the partition count")
        return cls(collection, prep.opts.name, [tuple(map(int, r)) for r in ranges], int(plan.n_batches), sync)

    def delayed_parts(self) -> list:
        """The output partitions as Delayed objects (built once per process).

        >>> import pandas as pd, dask_cumbatch
        >>> len(pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2).source.delayed_parts())
        1
        """
        if self._parts is None:
            self._parts = self.collection.to_delayed(optimize_graph=True)
        return self._parts

    def partition(self, k: int) -> pd.DataFrame:
        """Compute output partition ``k`` (with the default scheduler, or sync for pandas input).

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1] * 6}).cumbatch.iter_batches("w", 2).source.partition(0)["batch"].tolist()
        [0, 0, 1, 1, 2, 2]
        """
        part = self.delayed_parts()[k]
        return part.compute(scheduler="sync") if self.sync else part.compute()

    def __getstate__(self):  # cloudpickle: the graph may hold local functions (spawned workers)
        import cloudpickle

        d = dict(self.__dict__)
        d["_parts"] = None
        d["collection"] = cloudpickle.dumps(self.collection)
        return d

    def __setstate__(self, state):
        import cloudpickle

        state = dict(state)
        state["collection"] = cloudpickle.loads(state["collection"])
        self.__dict__.update(state)
