"""The batching options: one validated, immutable spec shared by every entry point.

Everything a user can get wrong about the options (a bad limit, an unknown mode, a
missing or non-numeric column) is caught here, before any data is read.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

MODES = ("greedy", "fill", "floor")
COSTS = ("sum", "padded")
OVERSIZE = ("allow", "raise")
INVALID = ("raise", "skip")
DEVICES = ("cpu", "auto", "gpu")
_PLUGIN_MODES: list = []  # names added by dask_cumbatch.engine.modes.register_mode


def add_mode_name(name: str) -> None:
    """Accept ``mode=name`` (called by ``engine.modes.register_mode``).

    >>> add_mode_name("greedy"); "greedy" in known_modes()
    True
    """
    if name not in MODES and name not in _PLUGIN_MODES:
        _PLUGIN_MODES.append(name)


def remove_mode_name(name: str) -> None:
    """Stop accepting a plug-in mode's name (built-in modes stay).

    >>> remove_mode_name("no-such-mode")
    """
    if name in _PLUGIN_MODES:
        _PLUGIN_MODES.remove(name)


def known_modes() -> tuple:
    """The built-in modes and the registered plug-in modes.

    >>> known_modes()[:3]
    ('greedy', 'fill', 'floor')
    """
    return MODES + tuple(_PLUGIN_MODES)

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
}
_LIMIT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_limit(value) -> float | int:
    """Turn a limit given as a number or a string with a byte unit into a number.

    Decimal units (KB, MB, GB, TB) are powers of 1000, binary units (KiB, MiB, GiB, TiB)
    powers of 1024; units are case-insensitive.

    >>> parse_limit("5MB")
    5000000
    >>> parse_limit("1.5 KiB")
    1536
    >>> parse_limit(250)
    250
    """
    if isinstance(value, str):
        match = _LIMIT_RE.match(value)
        if not match or match.group(2).upper() not in _UNITS:
            raise ValueError(
                f"cannot read limit {value!r}: use a number, optionally with a unit "
                "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. '5MB' or 4096"
            )
        number = float(match.group(1)) * _UNITS[match.group(2).upper()]
        value = int(number) if number.is_integer() else number
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"limit must be a number or a string like '5MB', not {type(value).__name__}")
    if not (math.isfinite(float(value)) and value > 0):
        raise ValueError(f"limit must be a finite number > 0, got {value!r}")
    return value.item() if isinstance(value, np.generic) else value


_UNSET = object()


def keyword(option: str, value=_UNSET) -> str:
    """How the Python API spells an option setting, as error messages quote it.

    Messages raised from Python name Python keywords; the command line rewrites every
    setting an error carries (see :func:`hinted`) into its flag with :func:`for_cli`.

    >>> keyword("invalid", "skip"), keyword("overwrite", True), keyword("max_rows")
    ("invalid='skip'", 'overwrite=True', 'max_rows=')
    """
    return f"{option}=" if value is _UNSET else f"{option}={value!r}"


def flag(option: str, value=_UNSET) -> str:
    """How the command line spells an option setting.

    >>> flag("invalid", "skip"), flag("overwrite", True), flag("max_rows")
    ('--invalid skip', '--overwrite', '--max-rows')
    """
    name = "--" + option.replace("_", "-")
    if value is _UNSET or value is True:
        return name
    return f"{name} {value}"


def hinted(exc: BaseException, *settings) -> BaseException:
    """Attach the option settings an error message quotes (``(option,)`` or ``(option, value)``).

    >>> e = hinted(ValueError(f"pass {keyword('invalid', 'skip')}"), ("invalid", "skip"))
    >>> str(e), for_cli(e)
    ("pass invalid='skip'", 'pass --invalid skip')
    """
    exc.option_hints = tuple(getattr(exc, "option_hints", ())) + tuple(settings)
    return exc


def for_cli(exc: BaseException) -> str:
    """An error's message with every hinted Python keyword written as its command-line flag.

    >>> for_cli(ValueError("plain message"))
    'plain message'
    """
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    for setting in getattr(exc, "option_hints", ()):
        message = message.replace(keyword(*setting), flag(*setting))
    return message


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")


def _positive_int(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a whole number >= 1 or None, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class BatchOptions:
    """The validated batching options (see DESIGN.md for their meaning).

    Construct with :meth:`BatchOptions.make`, which checks every value.

    >>> BatchOptions.make("tokens", 4096, mode="fill").mode
    'fill'
    """

    weight: object
    limit: float | int
    mode: str = "greedy"
    max_rows: int | None = None
    by: tuple = ()
    cost: str = "sum"
    oversize: str = "allow"
    invalid: str = "raise"
    name: str = "batch"
    multiple: int | None = None
    sort_window: int | None = None
    device: str = "cpu"
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def make(
        cls,
        weight,
        limit,
        *,
        mode: str = "greedy",
        max_rows: int | None = None,
        by=None,
        cost: str = "sum",
        oversize: str = "allow",
        invalid: str = "raise",
        name: str = "batch",
        multiple: int | None = None,
        sort_window: int | None = None,
        device: str = "cpu",
    ) -> "BatchOptions":
        """Validate and build the options; raises ``ValueError``/``TypeError`` naming the fix.

        >>> BatchOptions.make("w", "1MB", by="user").by
        ('user',)
        """
        limit = parse_limit(limit)
        _choice("mode", mode, known_modes())
        _choice("cost", cost, COSTS)
        _choice("oversize", oversize, OVERSIZE)
        _choice("invalid", invalid, INVALID)
        _choice("device", device, DEVICES)
        max_rows = _positive_int("max_rows", max_rows)
        multiple = _positive_int("multiple", multiple)
        sort_window = _positive_int("sort_window", sort_window)
        if multiple is not None and multiple > 1 and mode != "greedy":
            raise ValueError(f"multiple= applies to mode='greedy' only, not mode={mode!r}")
        if mode == "floor" and cost != "sum":
            raise ValueError("mode='floor' cuts a fixed grid of the running sum: use cost='sum'")
        if by is None:
            by = ()
        elif isinstance(by, (str, int)) or not isinstance(by, (list, tuple)):
            by = (by,)
        else:
            by = tuple(by)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty column name, got {name!r}")
        return cls(
            weight=weight,
            limit=limit,
            mode=mode,
            max_rows=max_rows,
            by=by,
            cost=cost,
            oversize=oversize,
            invalid=invalid,
            name=name,
            multiple=multiple if multiple and multiple > 1 else None,
            sort_window=sort_window,
            device=device,
        )

    def with_(self, **changes) -> "BatchOptions":
        """A copy with some fields changed (no re-validation of untouched fields).

        >>> BatchOptions.make("w", 10).with_(weight="tokens").weight
        'tokens'
        """
        return replace(self, **changes)

    @property
    def weight_is_column(self) -> bool:
        """Whether the weight names a column (rather than being a Series).

        >>> BatchOptions.make("w", 10).weight_is_column
        True
        """
        return not isinstance(self.weight, (pd.Series,)) and not _is_dask_series(self.weight)

    def check_columns(self, columns, dtypes) -> None:
        """Check that the weight and key columns exist and the weight is numeric.

        ``columns`` is the frame's column index and ``dtypes`` its dtypes (a Series).

        >>> import pandas as pd
        >>> df = pd.DataFrame({"w": [1, 2], "k": ["a", "b"]})
        >>> BatchOptions.make("w", 10, by="k").check_columns(df.columns, df.dtypes)
        """
        if self.weight_is_column:
            if self.weight not in columns:
                raise KeyError(
                    f"weight column {self.weight!r} not found; available columns: {list(columns)}"
                )
            check_weight_dtype(dtypes[self.weight], self.weight)
        for key in self.by:
            if key not in columns:
                raise KeyError(f"by= column {key!r} not found; available columns: {list(columns)}")
        if self.name in columns and self.name != self.weight and self.name not in self.by:
            pass  # an existing id column is overwritten, as DataFrame.assign does


def _is_dask_series(obj) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    return isinstance(obj, dd.Series)


def check_weight_dtype(dtype, label) -> None:
    """Raise ``TypeError`` unless ``dtype`` is a numeric or bool dtype (NumPy, nullable or Arrow).

    >>> check_weight_dtype(np.dtype("float32"), "w")
    >>> check_weight_dtype(np.dtype("O"), "w")
    Traceback (most recent call last):
    TypeError: weight column 'w' has dtype object; it must be numeric (int, uint, float or bool)
    """
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        if not pd.api.types.is_complex_dtype(dtype):
            return
    raise TypeError(
        f"weight column {label!r} has dtype {dtype}; it must be numeric (int, uint, float or bool)"
    )


def weight_kind(dtype) -> str:
    """``"int"`` when weights are summed exactly in int64, else ``"float"`` (float64).

    >>> weight_kind(np.dtype("uint16")), weight_kind(pd.BooleanDtype()), weight_kind(np.dtype("f4"))
    ('int', 'int', 'float')
    """
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        return "int"
    return "float"
