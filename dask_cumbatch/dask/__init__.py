"""The Dask layer: the summary pass, the scan, and the finish as narrow Dask tasks.

Every public operation is three steps (docs/how-it-works.md):

1. :func:`~dask_cumbatch.dask.summaries.plan_partitions` maps
   :func:`~dask_cumbatch.engine.summarize` over the partitions and gathers the small summaries
   into one place (one ``dask.compute``), where :func:`~dask_cumbatch.engine.scan` carries the
   state through them. The graph is flat: at most about ``FAT_TASKS`` tasks plus the gather,
   whatever the partition count.
2. The finish (:mod:`~dask_cumbatch.dask.finish`) is one task per partition that reads its
   partition again (from the source: nothing is persisted) and its small ``Entry``.
3. :mod:`~dask_cumbatch.dask.repartition` aligns partitions to batch boundaries from the
   entries alone: output partition k depends only on input k and the following partitions its
   last batch reaches.

Modules, each importing only from those above it (and from the engine, options and
:mod:`dask_cumbatch.dask_compat`, where every workaround of Dask's internals lives):

- ``prepared``: ``prepare_frame`` and what every task carries (``task_spec``, ``entry_table``);
- ``scheduler``: ``active_client``, the ``distributed`` client in use, if any;
- ``gather``: a function over the partitions in few fat tasks, one gather (``SummarySource``);
- ``in_memory``: the summary pass over slices of a ``from_pandas`` frame's weight column;
- ``summaries``: ``plan_partitions``, the summary pass and the scan;
- ``finish``: ``ids_series``, ``batch_frame``, ``plan_stats``;
- ``repartition``: ``repartition``, ``repartition_ranges``, ``batch_bytes``, ``size_ranges``.
"""
