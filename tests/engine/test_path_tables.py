"""Each mode's path tables (modes/paths.py): every row's kernels exist on the CPU backend,
every condition is a named predicate with a docstring, the paths chosen for a set of
representative cases are those listed in CHOSEN, and a backend without a path's kernels takes
the next path."""
from __future__ import annotations

from unittest import mock

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch.engine import BatchContext, kept
from dask_cumbatch.engine.backends import backend_for
from dask_cumbatch.engine.modes import floor, greedy, paths
from dask_cumbatch.engine.modes.paths import choose_path

TABLES = {
    "greedy.WALK_PATHS": greedy.WALK_PATHS,
    "greedy.SCAN_PATHS": greedy.SCAN_PATHS,
    "greedy.HEAD_PATHS": greedy.HEAD_PATHS,
    "greedy.FINISH_PATHS": greedy.FINISH_PATHS,
    "floor.SUMMARY_PATHS": floor.SUMMARY_PATHS,
    "floor.FINISH_PATHS": floor.FINISH_PATHS,
}
TABLE_NAMES = {id(table): name for name, table in TABLES.items()}


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_every_rows_kernels_exist_on_the_cpu_backend(table):
    cpu = backend_for("cpu")
    assert all(cpu.offers(kernel) for path in table for kernel in path.kernels)


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_rows_have_unique_names_and_documented_conditions(table):
    assert len({path.name for path in table}) == len(table)
    for path in table:
        assert path.applies.__name__ != "<lambda>" and path.applies.__doc__.strip(), path.name


ROWS = 70_000  # two partitions of 35,000 rows: enough for kept flags (32,768 rows or more)
_rng = np.random.default_rng(5)
INTS = _rng.integers(1, 100, ROWS)
FRACTIONS = _rng.random(ROWS) * 10
KEYS = np.repeat(np.arange(ROWS // 500), 500)
CASES = {
    "greedy, int, short batches": (INTS, 150, {}),
    "greedy, int, long batches": (INTS, 50_000, {}),
    "greedy, float": (INTS.astype(float), 150.0, {}),
    "greedy, by": (INTS, 150, {"by": "k"}),
    "fill": (INTS, 150, {"mode": "fill"}),
    "greedy, max_rows": (INTS, 50_000, {"max_rows": 100}),
    "greedy, limit beyond int64": (INTS, 1e19, {}),
    "floor, int": (INTS, 150, {"mode": "floor"}),
    "floor, float": (INTS.astype(float), 150.0, {"mode": "floor"}),
    "floor, fractional floats": (FRACTIONS, 20.0, {"mode": "floor"}),
    "floor, by": (INTS, 150, {"mode": "floor", "by": "k"}),
    "floor, max_rows": (INTS, 150, {"mode": "floor", "max_rows": 2}),
}
# The paths each case takes: those the if-chains before the tables chose (the kernel calls of 36
# traced cases were identical when the tables came in), and since then greedy's head is chosen
# by a table of its own (HEAD_PATHS).
CHOSEN = {
    "greedy, int, short batches": ["greedy.FINISH_PATHS:kept_flags", "greedy.HEAD_PATHS:short",
                                   "greedy.SCAN_PATHS:head_walk", "greedy.WALK_PATHS:greedy_starts",
                                   "greedy.WALK_PATHS:walk_batches"],
    "greedy, int, long batches": ["greedy.FINISH_PATHS:sums_ids", "greedy.HEAD_PATHS:whole_preferred",
                                  "greedy.SCAN_PATHS:sums_end", "greedy.WALK_PATHS:sums_starts",
                                  "greedy.WALK_PATHS:walk_batches"],
    "greedy, float": ["greedy.FINISH_PATHS:kept_flags", "greedy.HEAD_PATHS:short", "greedy.SCAN_PATHS:head_walk",
                      "greedy.WALK_PATHS:greedy_starts", "greedy.WALK_PATHS:walk_batches"],
    "greedy, by": ["greedy.FINISH_PATHS:kept_flags", "greedy.HEAD_PATHS:short", "greedy.SCAN_PATHS:head_walk",
                   "greedy.WALK_PATHS:greedy_starts", "greedy.WALK_PATHS:walk_batches"],
    "fill": ["greedy.FINISH_PATHS:kept_flags", "greedy.HEAD_PATHS:short", "greedy.SCAN_PATHS:head_walk",
             "greedy.WALK_PATHS:walk_batches"],
    "greedy, max_rows": ["greedy.FINISH_PATHS:kept_flags", "greedy.HEAD_PATHS:whole_preferred",
                         "greedy.SCAN_PATHS:head_walk", "greedy.WALK_PATHS:walk_batches"],
    "greedy, limit beyond int64": ["greedy.FINISH_PATHS:walk", "greedy.HEAD_PATHS:whole_preferred",
                                   "greedy.SCAN_PATHS:head_walk", "greedy.WALK_PATHS:greedy_starts",
                                   "greedy.WALK_PATHS:greedy_walk", "greedy.WALK_PATHS:walk_batches"],
    "floor, int": ["floor.FINISH_PATHS:quick", "floor.SUMMARY_PATHS:quick_int"],
    "floor, float": ["floor.FINISH_PATHS:quick", "floor.SUMMARY_PATHS:quick_float"],
    "floor, fractional floats": ["floor.FINISH_PATHS:quick_exact", "floor.SUMMARY_PATHS:exact",
                                 "floor.SUMMARY_PATHS:quick_float"],
    "floor, by": ["floor.FINISH_PATHS:walk", "floor.SUMMARY_PATHS:risky"],
    "floor, max_rows": ["floor.FINISH_PATHS:walk_caps", "floor.SUMMARY_PATHS:declined", "floor.SUMMARY_PATHS:risky"],
}


def chosen_paths(case: str) -> set:
    """``"table:path"`` of every path the engine took for ``case`` (two partitions, sync scheduler)."""
    w, limit, kw = CASES[case]
    taken = set()
    real_paths_for, real_choose = paths.paths_for, paths.choose_path

    def paths_for(table, case, backend):
        for path in real_paths_for(table, case, backend):
            taken.add(f"{TABLE_NAMES[id(table)]}:{path.name}")
            yield path

    def choose(table, case, backend):
        path = real_choose(table, case, backend)
        taken.add(f"{TABLE_NAMES[id(table)]}:{path.name}")
        return path

    kept.forget_all()
    ddf = dd.from_pandas(pd.DataFrame({"w": w, "k": KEYS}), npartitions=2, sort=False)
    with mock.patch.object(greedy, "paths_for", paths_for), mock.patch.object(greedy, "choose_path", choose), \
            mock.patch.object(floor, "choose_path", choose), dask.config.set(scheduler="sync"):
        ddf.cumbatch.ids("w", limit, **kw).compute()
    return taken


@pytest.mark.parametrize("case", CASES)
def test_representative_cases_take_their_paths(case):
    assert sorted(chosen_paths(case)) == CHOSEN[case]


def summary_walk(limit):
    """The CPU backend and greedy's summary walk over 1,000 integer weights at ``limit``."""
    cpu, w = backend_for("cpu"), INTS[:1000]
    return cpu, greedy.WalkCase(BatchContext(_opts(limit), False).on(cpu), w, 0, len(w), None, np.zeros(0, bool))


def test_a_backend_without_a_paths_kernels_takes_the_next_path():
    cpu, summary = summary_walk(150)
    assert choose_path(greedy.WALK_PATHS, summary, cpu).name == "greedy_starts"
    assert choose_path(greedy.WALK_PATHS, summary, cpu.without("greedy_starts")).name == "greedy_walk"
    assert choose_path(greedy.WALK_PATHS, summary, cpu.without("greedy_walk")).name == "walk_batches"


@pytest.mark.parametrize("prefer_whole, budget, wanted", [(True, 1 << 27, "whole"), (False, 1 << 27, "chain"),
                                                         (False, 4096, "chain")])
def test_a_long_partitions_head_is_whole_or_a_chain_as_its_table_says(prefer_whole, budget, wanted):
    """Long batches (probes do not meet in the short head): kept whole where the summary need
    not travel, else a chain table; a budget too small for the partition still gets a chain."""
    from dask_cumbatch import engine

    w = np.random.default_rng(3).integers(1, 100, 40_000)
    ctx = BatchContext(_opts(20_000), False).keeping(budget, prefer_whole)
    summ = engine.summarize(pd.DataFrame({"w": w}), ctx)
    taken = "whole" if len(summ.w_head) == len(w) else "chain" if summ.chain is not None else "short"
    assert taken == wanted


def test_long_batches_take_the_prefix_sum_search_unless_its_kernel_is_absent():
    cpu, summary = summary_walk(50_000)
    assert choose_path(greedy.WALK_PATHS, summary, cpu).name == "sums_starts"
    assert choose_path(greedy.WALK_PATHS, summary, cpu.without("greedy_sums_starts")).name == "greedy_starts"


def _opts(limit, **kw):
    from dask_cumbatch.options import BatchOptions

    return BatchOptions.make("w", limit, **kw)


def documented_tables() -> dict:
    """The tables of docs/how-it-works.md, "Each mode's paths": ``{table: [(path, kernels)]}``
    (kernels: the backquoted names in the last column, in order)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "how-it-works.md").read_text()
    section = text.split("## Each mode's paths", 1)[1].split("\n## ", 1)[0]
    tables, current = {}, None
    for line in section.splitlines():
        title = re.match(r"`(\w+\.\w+_PATHS)`", line)
        if title:
            current = tables.setdefault(title.group(1), [])
        row = re.match(r"\| `(\w+)` \|.*\| (.*) \|$", line)
        if row and current is not None:
            current.append((row.group(1), tuple(re.findall(r"`(\w+)`", row.group(2)))))
    return tables


def test_how_it_works_lists_each_tables_paths_and_kernels():
    documented = documented_tables()
    assert documented.keys() == TABLES.keys()
    for name, table in TABLES.items():
        assert [path for path, _ in documented[name]] == [path.name for path in table], name
        for (path, kernels), row in zip(documented[name], table):
            if row.kernels:  # a row without kernels of its own says in words whose it runs
                assert kernels == row.kernels, (name, path)
