"""Encoding output files (Parquet, CSV, JSON lines) and Arrow tables for the work folder."""
from __future__ import annotations

import numpy as np
import pandas as pd

FORMATS = ("parquet", "csv", "jsonl")


def output_schema(meta: pd.DataFrame, id_name: str, keep_index: bool):
    """The Arrow schema of the output files: the (empty) ``meta`` frame's columns (and index) plus
    the id column.

    >>> output_schema(pd.DataFrame({"w": [1]}).iloc[:0], "batch", False).names
    ['w', 'batch']
    """
    import pyarrow as pa

    if keep_index:
        meta = meta.reset_index()
    meta = meta.assign(**{id_name: np.array([], dtype=np.int64)})
    return pa.Schema.from_pandas(meta, preserve_index=False)


def conform(table, schema):
    """Cast ``table`` to ``schema`` (types of columns the schema knows) with its metadata.

    >>> import pyarrow as pa
    >>> conform(pa.table({"w": [1]}), pa.schema([("w", pa.int32())])).schema.types
    [DataType(int32)]
    """
    import pyarrow as pa

    if table.schema.names != schema.names:
        table = table.select(schema.names)
    fields = []
    for got, want in zip(table.schema, schema):
        unknown = pa.types.is_dictionary(want.type) or "null" in str(want.type)  # e.g. categories, all-None
        fields.append(got if unknown or got.type == want.type else want)
    target = pa.schema(fields, metadata=schema.metadata)
    if not table.schema.equals(target, check_metadata=False):
        table = table.cast(target)
    return table.replace_schema_metadata(schema.metadata)


def to_table(rows: pd.DataFrame, ids, id_name: str, schema, keep_index: bool):
    """An Arrow table of ``rows`` with the batch ids in column ``id_name``, cast to ``schema``.

    >>> df = pd.DataFrame({"w": [1, 2]})
    >>> to_table(df, [0, 0], "batch", output_schema(df.iloc[:0], "batch", False), False).column("batch").to_pylist()
    [0, 0]
    """
    import pyarrow as pa

    if keep_index:
        rows = rows.reset_index()
    table = pa.Table.from_pandas(rows, preserve_index=False, nthreads=1)
    col = pa.array(np.asarray(ids, dtype=np.int64), type=pa.int64())
    if id_name in table.column_names:
        table = table.set_column(table.column_names.index(id_name), id_name, col)
    else:
        table = table.append_column(id_name, col)
    return conform(table, schema)


def encode(table, fmt: str, dictionary: tuple = ()) -> bytes:
    """The bytes of one output file (deterministic: same table, same bytes).

    Parquet dictionary-encodes text columns and the columns named in ``dictionary`` (the batch
    id, constant within a batch).

    >>> import pyarrow as pa
    >>> encode(pa.table({"w": [1, 2]}), "csv")
    b'w\\n1\\n2\\n'
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = table.combine_chunks()
    if fmt == "parquet":
        buf = pa.BufferOutputStream()
        pq.write_table(
            table, buf, compression="snappy", version="2.6", data_page_version="1.0",
            use_dictionary=dictionary_columns(table.schema, dictionary), write_statistics=True, store_schema=True,
            write_page_index=False, row_group_size=1 << 20,
        )
        return buf.getvalue().to_pybytes()
    df = table.to_pandas()
    if fmt == "csv":
        return df.to_csv(index=False, lineterminator="\n").encode()
    if not len(df):
        return b""
    text = df.to_json(orient="records", lines=True, double_precision=15, date_format="iso",
                      date_unit="ns", force_ascii=False)
    return (text if text.endswith("\n") else text + "\n").encode()


def dictionary_columns(schema, also=()) -> list:
    """Columns worth dictionary-encoding: text, binary, categoricals and ``also``.

    Other numbers are left plain: building a dictionary per column per file cost a third of the
    encoding time for the benchmark's small batch files, and for unique ids it is wasted. The
    batch id column, constant within a batch, encodes faster and smaller with one.

    >>> import pyarrow as pa
    >>> dictionary_columns(pa.schema([("s", pa.string()), ("w", pa.int64()), ("b", pa.int64())]), ("b",))
    ['s', 'b']
    """
    import pyarrow.types as pt

    wanted = (pt.is_string, pt.is_large_string, pt.is_binary, pt.is_large_binary, pt.is_dictionary)
    return [f.name for f in schema if f.name in also or any(test(f.type) for test in wanted)]


def ipc_bytes(table) -> bytes:
    """An Arrow table as Arrow IPC file bytes (the work folder's fragments).

    >>> import pyarrow as pa
    >>> ipc_read(ipc_bytes(pa.table({"w": [1]}))).num_rows
    1
    """
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def ipc_read(data: bytes):
    """The Arrow table in Arrow IPC file bytes."""
    import pyarrow as pa

    return pa.ipc.open_file(pa.BufferReader(data)).read_all()


def parquet_read(data: bytes):
    """The Arrow table in Parquet file bytes.

    >>> import pyarrow as pa
    >>> parquet_read(encode(pa.table({"w": [1]}), "parquet")).num_rows
    1
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data))


def concat(tables, schema=None):
    """Concatenate Arrow tables (None entries skipped), with ``schema``'s metadata if given.

    >>> import pyarrow as pa
    >>> concat([pa.table({"w": [1]}), None, pa.table({"w": [2]})]).num_rows
    2
    """
    import pyarrow as pa

    tables = [t for t in tables if t is not None]
    if schema is not None:
        tables = [t.replace_schema_metadata(schema.metadata) for t in tables]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def reject_reasons(col: pd.Series) -> np.ndarray:
    """Why each weight in ``col`` is invalid: ``NaN``, ``missing``, ``negative``, ``infinite``.

    >>> reject_reasons(pd.Series([float("nan"), -1.0, float("inf")])).tolist()
    ['NaN', 'negative', 'infinite']
    """
    na = col.isna().to_numpy(dtype=bool)
    out = np.full(len(col), "invalid", dtype=object)
    if pd.api.types.is_bool_dtype(col.dtype):
        out[na] = "missing"
        return out
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        out[values < 0] = "negative"
        out[np.isinf(values)] = "infinite"
    out[na] = "NaN" if col.dtype.kind == "f" else "missing"
    return out
