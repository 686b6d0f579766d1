"""Each Dask behaviour dask_cumbatch.dask_compat relies on, one test each, named for it.

When a Dask release moves one of these internals, the test named for it fails and says what
moved; the rest of the suite then fails for the same reason, but this file is where to look.
A last test checks that no other module of the package uses a private Dask name.
"""
from __future__ import annotations

import ast
import pathlib

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dask_cumbatch import dask_compat as compat

PACKAGE = pathlib.Path(compat.__file__).parent


def _frame(n=6, npartitions=3, **columns):
    return dd.from_pandas(pd.DataFrame({"w": np.arange(float(n)), **columns}), npartitions=npartitions)


def test_task_spec_task_is_called_with_its_dependencies_values():
    a = compat.DataNode("a", 3)
    b = compat.Task("b", abs, compat.TaskRef("a"))
    assert set(b.dependencies) == {"a"}, "Task.dependencies no longer lists the TaskRef keys"
    assert b({"a": -a({})}) == 3, "a task-spec node is no longer called with a dict of its dependencies' values"


def test_task_spec_task_takes_keyword_arguments():
    task = compat.Task("t", lambda x, partition_info=None: (x, partition_info), 1, partition_info={"number": 4})
    assert task({}) == (1, {"number": 4})


def test_task_spec_task_passes_an_opaque_argument_as_it_is():
    class Opaque:  # dask_cumbatch.dask.gather._Parts: partitions' tasks a fat task runs itself
        def __init__(self, items):
            self.items = items

    arg = Opaque([compat.TaskRef("never-resolved")])
    task = compat.Task("t", lambda x: x, arg)
    assert not task.dependencies, "Dask looked into an opaque task argument"
    assert task({}) is arg


def test_collection_graphs_are_made_of_task_spec_nodes():
    graph = (_frame() + 1).__dask_graph__()
    assert compat.is_task_graph(graph), {type(n) for n in graph.values()}
    assert not compat.is_task_graph({"x": (abs, 1)}), "a legacy tuple task counts as a task-spec node"


def test_new_collection_wraps_an_optimised_expression():
    ddf = _frame() + 1
    again = compat.new_collection(ddf.optimize().expr)
    assert isinstance(again, dd.DataFrame)
    pd.testing.assert_frame_equal(again.compute(), ddf.compute())


def test_unwrap_map_finds_the_frame_under_a_map_partitions():
    def same(df):
        return df

    base = _frame()
    mapped = base.map_partitions(same, meta=base._meta)
    assert compat.unwrap_map(mapped, same).expr._name == base.expr._name, "MapPartitions.func or .frame moved"
    assert compat.unwrap_map(mapped, abs) is mapped


def test_from_pandas_reads_are_found_under_an_expression():
    reads = compat.from_pandas_reads((_frame() + 1)[["w"]])
    assert len(reads) == 1
    assert reads[0].operand("pyarrow_strings_enabled") in (True, False)


def test_from_pandas_string_conversion_can_be_turned_off_in_the_expression():
    with dask.config.set({"dataframe.convert-string": True}):
        text = _frame(s=list("abcdef"))
    assert [r.operand("pyarrow_strings_enabled") for r in compat.from_pandas_reads(text)] == [True]
    kept = compat.without_string_conversion(text, lambda before, after: True)
    assert [r.operand("pyarrow_strings_enabled") for r in compat.from_pandas_reads(kept)] == [False]
    assert kept.compute()["s"].tolist() == list("abcdef")
    refused = compat.without_string_conversion(text, lambda before, after: False)
    assert refused is text, "the schema check was not consulted"


def test_pandas_slices_give_each_partition_rows_in_the_source_frame():
    pdf = pd.DataFrame({"w": np.arange(10.0)})
    ddf = dd.from_pandas(pdf, npartitions=3)
    data, bounds = compat.pandas_slices(ddf)
    parts = [p for p in ddf.to_delayed()]
    assert len(bounds) == ddf.npartitions
    for (a, b), part in zip(bounds, parts):
        pd.testing.assert_frame_equal(data.iloc[a:b], part.compute())


def test_pandas_slices_follow_a_partition_selection():
    ddf = dd.from_pandas(pd.DataFrame({"w": np.arange(10.0)}), npartitions=4)
    whole = compat.pandas_slices(ddf)[1]
    picked = ddf.partitions[[1, 2]].optimize()
    assert compat.pandas_slices(picked)[1] == whole[1:3], "FromPandas._partitions/_filtered moved"


def test_pandas_slices_refuse_a_frame_that_is_not_a_plain_read():
    assert compat.pandas_slices(_frame() + 1) is None


def test_source_partitions_follow_a_selection_pushed_below_blockwise_work():
    ddf = _frame(12, 4)
    assert compat.source_partitions(ddf.expr) == [0, 1, 2, 3]
    picked = (ddf + 1).partitions[[3, 1]].optimize(fuse=False)  # the finish sees them unfused
    assert compat.source_partitions(picked.expr) == [3, 1]


def test_source_partitions_of_a_parquet_read_with_a_selection(tmp_path):
    _frame(12, 4).to_parquet(tmp_path / "t")
    read = dd.read_parquet(tmp_path / "t")
    assert compat.source_partitions((read.w * 2).partitions[2].optimize(fuse=False).expr) == [2]


def test_renumbered_map_partitions_number_tasks_by_the_plan():
    ddf = _frame(12, 4)

    def number(df, partition_info=None):
        return pd.Series([partition_info["number"]] * len(df), index=df.index)

    mapped = compat.renumbered(ddf.map_partitions(number, meta=(None, "int64")), [0, 1, 2, 3])
    assert mapped.compute().tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert mapped.partitions[[2, 0]].compute().tolist() == [2] * 3 + [0] * 3  # plain would say 0, 1
    assert mapped.tail(2).tolist() == [3, 3]


def test_renumbered_map_partitions_refuse_a_selection_they_cannot_place():
    ddf = _frame(12, 4)
    mapped = compat.renumbered(ddf.map_partitions(lambda df, partition_info=None: df, meta=ddf._meta), [0, 1])
    with pytest.raises(RuntimeError, match="cannot tell which planned partitions"):
        mapped.compute()


def test_read_paths_list_a_parquet_read_files(tmp_path):
    pd.DataFrame({"w": [1.0]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"w": [2.0]}).to_parquet(tmp_path / "b.parquet")
    paths = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    assert compat.read_paths(dd.read_parquet(paths) + 1) == paths
    assert compat.read_paths(dd.read_parquet(paths[0])) == [paths[0]]



def test_read_paths_list_the_files_a_read_csv_opens(tmp_path):
    for name, w in (("a.csv", 1), ("b.csv", 2)):
        pd.DataFrame({"w": [w]}).to_csv(tmp_path / name, index=False)
    paths = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    assert compat.read_paths(dd.read_csv(paths) + 1) == paths, "read_csv's block tasks no longer hold fsspec files"


def test_row_wise_read_finds_the_one_parquet_read_under_row_wise_steps(tmp_path):
    pd.DataFrame({"w": [1.0], "x": [2]}).to_parquet(tmp_path / "a.parquet")
    ddf = dd.read_parquet(str(tmp_path / "a.parquet"))
    assert compat.row_wise_read(ddf[ddf.w > 0].assign(y=ddf.x * 2)) is not None
    assert compat.row_wise_read(ddf.map_partitions(lambda df: df)) is None, "a map_partitions counts as row-wise"
    assert compat.row_wise_read(dd.concat([ddf, ddf])) is None, "two reads count as one"


def test_over_files_substitutes_the_read_files_under_the_same_steps(tmp_path):
    for name, w in (("a.parquet", 1.0), ("b.parquet", 2.0)):
        pd.DataFrame({"w": [w], "x": [3]}).to_parquet(tmp_path / name)
    ddf = dd.read_parquet([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])
    steps = ddf[["w"]].assign(v=ddf.w * 10)
    only_b = compat.over_files(steps, [str(tmp_path / "b.parquet")])
    assert only_b.compute().to_dict("list") == {"w": [2.0], "v": [20.0]}, "the read's path operand is not substituted"

PRIVATE_MODULES = ("dask._", "dask.dataframe.dask_expr", "dask_expr")
PRIVATE_ATTRIBUTES = {
    "_task_spec", "_expr", "_partitions", "_filtered", "_locations", "_blockwise_arg",
    "_broadcast_dep", "_parameters", "substitute_parameters", "_data", "_task", "operands",
}


def _private_uses(path: pathlib.Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            names = [f".{node.attr}"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [w for w in node.value.replace(">>>", " ").split() if w.startswith(PRIVATE_MODULES)]
        else:
            continue
        found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {n}" for n in names
                  if n.startswith(PRIVATE_MODULES) or n.startswith(".")]
    return found


def test_no_other_module_uses_a_private_dask_name():
    uses = [u for p in sorted(PACKAGE.rglob("*.py")) if p.name != "dask_compat.py" for u in _private_uses(p)]
    assert uses == [], "private Dask names belong in dask_cumbatch/dask_compat.py:\n" + "\n".join(uses)


def test_the_private_name_scan_sees_dask_compat_own_uses():
    assert any("dask._task_spec" in u for u in _private_uses(PACKAGE / "dask_compat.py"))
    assert any("._partitions" in u for u in _private_uses(PACKAGE / "dask_compat.py"))
