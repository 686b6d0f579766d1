"""Batches as frames arrive: push pandas frames in order, get the batches that closed.

:class:`PushBatcher` runs the engine's sequential pieces (:func:`~dask_cumbatch.engine.plan_frame`
from the carried :class:`~dask_cumbatch.Carry`) on each pushed frame, so the ids over any split
of a table into pushed frames equal ``df.cumbatch.ids(...)`` over the whole table. A batch closes
as soon as the data allows: when a row starts the next batch (the rows of the open last batch are
held back, since a later row can still cut it back with ``multiple``). ``flush()`` closes the last
batch. ``state()`` is a JSON-able dict (options, carried numbers, the held rows as Arrow IPC) that
:meth:`PushBatcher.restore` continues from exactly.

>>> import pandas as pd
>>> b = PushBatcher("w", 6)
>>> b.push(pd.DataFrame({"w": [3, 3, 3]}))["batch"].tolist()
[0, 0]
>>> b.flush()["batch"].tolist()
[1]
"""
from __future__ import annotations

import base64
from dataclasses import fields
import json

import numpy as np
import pandas as pd

from .dask import prepared
from .engine import Carry, finish_ids, plan_frame
from .options import BatchOptions

STATE_FORMAT = "dask-cumbatch push state"
STATE_VERSION = 1


class PushBatcher:
    """Cut frames pushed in order into batches, as ``df.cumbatch.ids(weight, limit, **options)``.

    ``weight`` is the weight column's name; ``limit`` and the options (``mode``, ``max_rows``,
    ``by``, ``cost``, ``oversize``, ``invalid``, ``name``, ``multiple``, ``device``) are those of
    ``ids`` and validated the same way (``sort_window`` reorders rows and is refused). Every
    pushed frame must have the first frame's columns and dtypes.

    :meth:`push` returns the rows of the batches that closed, in order, with the id column
    ``name`` (``int64``; ``Int64`` with ``invalid="skip"``). With ``invalid="skip"`` the skipped
    rows (missing id) are returned in their place among the others: those before the open batch's
    first row with the closed batches, the later ones with it. :meth:`flush` returns the rest.

    >>> import pandas as pd
    >>> b = PushBatcher("w", 10, mode="fill")
    >>> b.push(pd.DataFrame({"w": [4, 4]})).shape[0]   # batch 0 still open
    0
    >>> b.push(pd.DataFrame({"w": [4, 1]}))["batch"].tolist()
    [0, 0, 0]
    >>> b.flush()["batch"].tolist()
    [1]
    """

    def __init__(self, weight: str, limit, **options):
        if options.get("sort_window") is not None:
            raise ValueError("sort_window reorders rows within windows and cannot batch pushed frames; "
                             "leave it out or sort each frame before pushing it")
        if not isinstance(weight, str):
            raise TypeError(f"the weight of a PushBatcher must be a column name; got {type(weight).__name__}")
        self.opts = BatchOptions.make(weight, limit, **options)
        self._carry = Carry()
        # rows of the open batch (and skipped rows after its first row), one piece per push: a batch
        # that spans many pushes is joined once, when it closes
        self._held: list | None = None
        self._schema: list | None = None  # [[column, dtype], ...] of the first frame
        self._is_float = False
        self._flushed = False
        self._restored = False

    def push(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Batch the next rows; return the rows of the batches that closed, with their ids.

        Nothing changes when it raises (bad columns, invalid weights, a row over the limit with
        ``oversize="raise"``): the frame may be fixed and pushed again.

        >>> import pandas as pd
        >>> b = PushBatcher("w", 5)
        >>> b.push(pd.DataFrame({"w": [2, 2, 2, 2]}))["batch"].tolist()
        [0, 0]
        """
        self._check_open()
        before = self._carry.batches
        ids, backdated = self._ids_of(frame)
        piece = frame.assign(**{self.opts.name: ids})
        if self._restored:  # the held rows came through Arrow: the frame's labels and dtypes back
            self._held, self._restored = [_like(p, frame) for p in self._held or ()], False
        if self._carry.batches == before > 0:  # the open batch goes on: nothing closed
            self._held.append(piece)
            return piece.iloc[:0]
        held = [p for p in self._held or () if len(p)]
        if backdated:  # a cut-back moved the next batch's start into the held rows
            held = [_relabel_tail(pd.concat(held), self.opts.name, backdated, before)]
        return self._release(pd.concat([*held, piece]) if held else piece)

    def flush(self) -> pd.DataFrame:
        """End the stream: return the held rows, the last batch closed. No push may follow.

        >>> import pandas as pd
        >>> b = PushBatcher("w", 5)
        >>> _ = b.push(pd.DataFrame({"w": [2, 2, 2]}))
        >>> b.flush()["batch"].tolist()
        [1]
        """
        self._check_open()
        self._flushed = True
        rest = self._held_frame()
        if rest is None:
            rest = pd.DataFrame({self.opts.name: pd.Series([], dtype=self._id_dtype())})
        self._held = [rest.iloc[:0]]
        return rest

    @property
    def n_batches(self) -> int:
        """The batches started so far (the next new batch gets this id).

        >>> import pandas as pd
        >>> b = PushBatcher("w", 5)
        >>> _ = b.push(pd.DataFrame({"w": [2, 2, 2]})); b.n_batches
        2
        """
        return self._carry.batches

    def state(self) -> dict:
        """A JSON-able dict to continue from with :meth:`restore`: the options, the carried
        numbers (floats as hex, exact) and the held rows of the open batch (Arrow IPC, base64).

        >>> import json, pandas as pd
        >>> b = PushBatcher("w", 5)
        >>> _ = b.push(pd.DataFrame({"w": [2, 2, 2]}))
        >>> c = PushBatcher.restore(json.loads(json.dumps(b.state())))
        >>> c.push(pd.DataFrame({"w": [4]}))["batch"].tolist()
        [1]
        """
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "options": _options_out(self.opts),
            "carry": json.loads(self._carry.to_json()),
            "schema": self._schema,
            "is_float": self._is_float,
            "held": None if self._held is None else _frame_out(self._held_frame()),
            "labels": _labels(self._held_frame()),
            "flushed": self._flushed,
        }

    @classmethod
    def restore(cls, state: dict) -> "PushBatcher":
        """A batcher that continues exactly where the one whose :meth:`state` this is stood.

        >>> import pandas as pd
        >>> b = PushBatcher.restore(PushBatcher("w", 5, mode="fill").state())
        >>> b.opts.mode, b.n_batches
        ('fill', 0)
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError("not a dask-cumbatch push state (see PushBatcher.state)")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"push state version {state.get('version')!r} is not {STATE_VERSION}; "
                             "restore it with the dask-cumbatch version that saved it")
        options = dict(state["options"])
        self = cls(options.pop("weight"), options.pop("limit"), **options)
        self._carry = Carry.from_json(json.dumps(state["carry"]))
        self._schema = state["schema"]
        self._is_float = bool(state["is_float"])
        self._held = None if state["held"] is None else [_frame_in(state["held"], state.get("labels"), self._schema)]
        self._flushed = bool(state["flushed"])
        self._restored = self._held is not None
        return self

    def _check_open(self) -> None:
        if self._flushed:
            raise RuntimeError("this PushBatcher was flushed; make a new one (or restore a saved state) to push more")

    def _held_frame(self) -> pd.DataFrame | None:
        """The held rows as one frame (None before the first push)."""
        if self._held is None:
            return None
        rows = [p for p in self._held if len(p)]
        return pd.concat(rows) if len(rows) > 1 else (rows or self._held)[0]

    def _ids_of(self, frame) -> tuple:
        """The frame's ids continuing the carry, and how many held rows a cut-back moved into
        the next batch; commits the new carry only once everything that can raise has run."""
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"push takes a pandas DataFrame; got {type(frame).__name__}")
        schema = [[str(c), str(t)] for c, t in frame.dtypes.items()]
        if self._schema is not None and schema != self._schema:
            raise ValueError(f"the pushed frame's columns/dtypes {_show(schema)} differ from the first frame's "
                             f"{_show(self._schema)}; push frames of one schema")
        prep = prepared.prepare_frame(frame, self.opts.weight, self.opts, adds_ids=True)
        plan = plan_frame(frame, prep.ctx, start=self._carry)
        ids = finish_ids(frame, prep.ctx, plan.entries[0])
        self._schema, self._is_float, self._carry = schema, prep.is_float, plan.end_state
        return ids, int(plan.backdated_prior or 0)

    def _release(self, whole: pd.DataFrame) -> pd.DataFrame:
        """Return the rows before the open batch's first row; hold the rest."""
        ids = whole[self.opts.name]
        open_id = self._carry.batches - 1
        at = np.flatnonzero((ids == open_id).fillna(False).to_numpy(dtype=bool)) if open_id >= 0 else []
        cut = int(at[0]) if len(at) else len(whole)
        self._held = [whole.iloc[cut:]]
        return whole.iloc[:cut]

    def _id_dtype(self):
        return "Int64" if self.opts.invalid == "skip" else "int64"


def _relabel_tail(held: pd.DataFrame, name: str, count: int, new_id: int) -> pd.DataFrame:
    """``held`` with its last ``count`` batched rows (skipped rows do not count) in batch ``new_id``."""
    ids = held[name]
    batched = np.flatnonzero(ids.notna().to_numpy(dtype=bool))
    values = ids.copy()
    values.iloc[batched[len(batched) - count:]] = new_id
    return held.assign(**{name: values})


def _options_out(opts: BatchOptions) -> dict:
    out = {f.name: getattr(opts, f.name) for f in fields(opts) if f.name != "extra"}
    out["by"] = list(out["by"])
    return out


def _frame_out(frame: pd.DataFrame) -> str:
    import pyarrow as pa

    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)  # labels travel in the state
    table = pa.Table.from_pandas(frame, preserve_index=True)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def _frame_in(text: str, labels, schema) -> pd.DataFrame:
    """The held rows of a state, with their column labels and, where Arrow gave another, the
    recorded dtypes back (best effort: the next push casts them to the pushed frame's exactly)."""
    import pyarrow as pa

    frame = pa.ipc.open_stream(pa.BufferReader(base64.b64decode(text))).read_all().to_pandas()
    if labels is not None and len(labels) == frame.shape[1]:
        frame.columns = labels
    for (_, dtype), column in zip(schema or [], frame.columns):
        if str(frame[column].dtype) != dtype:
            try:
                frame[column] = frame[column].astype(dtype)
            except (TypeError, ValueError):
                pass
    return frame


def _labels(frame) -> list | None:
    """The column labels, where JSON keeps them as they are (strings and integers)."""
    if frame is None:
        return None
    labels = [c.item() if isinstance(c, np.generic) else c for c in frame.columns]
    ok = all(isinstance(c, str) or (isinstance(c, int) and not isinstance(c, bool)) for c in labels)
    return labels if ok else None


def _like(held: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """``held`` with the column labels and dtypes of ``frame`` (which has one schema with it, up
    to what a state's Arrow round trip changed: integer labels, time units, categories)."""
    labels = [*frame.columns, held.columns[-1]]
    if list(held.columns) == labels and held.dtypes.iloc[:-1].equals(frame.dtypes):
        return held
    held = held.set_axis(labels, axis=1)
    return held.astype(frame.dtypes.to_dict())


def _show(schema) -> str:
    return ", ".join(f"{c}:{t}" for c, t in schema)


__all__ = ["PushBatcher"]
