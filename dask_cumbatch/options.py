"""The batching options: one validated, immutable spec shared by every entry point.

Everything a user can get wrong about the options (a bad limit, an unknown mode, a
missing or non-numeric column) is caught here, before any data is read.
"""
from __future__ import annotations

import difflib
import functools
import inspect
import math
from decimal import Decimal
import re
import textwrap
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

MODES = ("greedy", "fill", "floor")  # the built-in modes, in the order messages list them
COSTS = ("sum", "padded")
OVERSIZE = ("allow", "raise")
INVALID = ("raise", "skip")
DEVICES = ("cpu", "auto", "gpu")


#: The one registry of batching modes: name -> the engine's mode object, opaque here. The engine
#: adds the built-in modes when it loads them and plug-ins through ``engine.register_mode``; it
#: lives in this module, below the engine, so that options can name the modes without reaching
#: up into the engine.
MODE_REGISTRY: dict = {}


def known_modes() -> tuple:
    """The modes ``mode=`` accepts: the built-in ones, then the plug-ins registered with
    ``engine.register_mode`` (:data:`MODE_REGISTRY`, the one list of modes).

    >>> known_modes()[:3]
    ('greedy', 'fill', 'floor')
    """
    return MODES + tuple(name for name in MODE_REGISTRY if name not in MODES)


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
_LIMIT_RE = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


_HUGE = Decimal(2) ** 1023  # whole numbers beyond this stay floats (then inf: rejected)


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
    >>> parse_limit("9007199254740993")  # integer strings are exact (2**53 + 1)
    9007199254740993

    A string that is not a whole number becomes the nearest float64, as ``float()`` reads
    it, unless that float lies on the other side of a whole number (or on one): integer
    weights would then be cut at another place than the string says, so it is refused.

    >>> parse_limit("0.1"), parse_limit("2.5 KB")
    (0.1, 2500)
    >>> parse_limit("9007199254740993.5")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: limit '9007199254740993.5' has no float64 value between the same whole numbers ...
    """
    if isinstance(value, str):
        value = _limit_from_text(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"limit must be a number or a string like '5MB', not {type(value).__name__}")
    if not (math.isfinite(float(value)) and value > 0):
        raise ValueError(f"limit must be a finite number > 0, got {value!r}")
    return value.item() if isinstance(value, np.generic) else value


def _limit_from_text(text: str) -> float | int:
    """The number a limit string means: an int when whole, else a float64 that keeps its place
    between whole numbers (see :func:`parse_limit`)."""
    match = _LIMIT_RE.match(text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(
            f"cannot read limit {text!r}: use a number, optionally with a unit "
            "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. '5MB' or 4096"
        )
    number = Decimal(match.group(1)) * _UNITS[match.group(2).upper()]  # exact: no float detour
    if number == number.to_integral_value():
        return int(number) if number < _HUGE else float(number)
    rounded = float(number)
    if math.isfinite(rounded) and not math.floor(number) < rounded < math.floor(number) + 1:
        raise ValueError(
            f"limit {text!r} has no float64 value between the same whole numbers (float64 makes it "
            f"{rounded!r}, which would cut integer weights elsewhere); give a whole number, or fewer digits"
        )
    return rounded


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


def _close_match(name, candidates) -> str:
    """``"; did you mean 'x'?"`` for the candidate closest to ``name``, or ``""``.

    A candidate that differs only in case comes first (``"W"`` for ``"w"``).

    >>> _close_match("W", ["w", "v"]), _close_match("gready", ["greedy", "fill"]), _close_match("z", ["w"])
    ("; did you mean 'w'?", "; did you mean 'greedy'?", '')
    """
    match = close_match(name, candidates)
    return "" if match is None else f"; did you mean {match!r}?"


def close_match(name, candidates):
    """The candidate closest to ``name`` (same letters in another case first), or None.

    >>> close_match("--limt", ["--limit", "--weight"]), close_match("Key", ["key"])
    ('--limit', 'key')
    """
    words = {str(c): c for c in candidates}
    folded = [w for w in words if w.casefold() == str(name).casefold()]
    match = folded or difflib.get_close_matches(str(name), list(words), n=1, cutoff=0.6)
    return words[match[0]] if match else None


def unexpected_keyword(method: str, name: str, accepted) -> TypeError:
    """The ``TypeError`` for a misspelt keyword, naming the method called and the closest option.

    >>> str(unexpected_keyword("ids", "max_row", ["mode", "max_rows"]))
    "ids() got an unexpected keyword argument 'max_row'; did you mean 'max_rows'?"
    """
    hint = _close_match(name, accepted) or f"; it takes {', '.join(sorted(accepted))}"
    return TypeError(f"{method}() got an unexpected keyword argument {name!r}{hint}")


def missing_column(what: str, column, columns) -> KeyError:
    """The ``KeyError`` for a column the frame does not have, with the closest column name.

    >>> missing_column("weight column", "n_token", ["id", "n_tokens"]).args[0]
    "weight column 'n_token' not found; did you mean 'n_tokens'? available columns: ['id', 'n_tokens']"
    """
    hint = _close_match(column, columns) if isinstance(column, str) else ""
    return KeyError(f"{what} {column!r} not found{hint}{' ' if hint else '; '}"
                    f"available columns: {list(columns)}")


def whole_number(name: str, value, minimum: int = 1, *, optional: bool = False) -> int | None:
    """Check a whole-number option (``None`` allowed when ``optional``); the one integer validator.

    >>> whole_number("max_rows", 8), whole_number("max_rows", None, optional=True)
    (8, None)
    >>> whole_number("max_rows", 0)
    Traceback (most recent call last):
    ValueError: max_rows must be >= 1, got 0
    """
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        allowed = f"a whole number >= {minimum}" + (" or None" if optional else "")
        raise TypeError(f"{name} must be {allowed}, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def seconds(name: str, value, *, zero: bool = False, optional: bool = False) -> float | None:
    """Check a number of seconds: finite and > 0 (>= 0 where ``zero``; ``None`` allowed where
    ``optional``); the one seconds validator (the command line's :func:`seconds_argument` too).

    >>> seconds("poll", 0.5), seconds("idle_exit", 0, zero=True), seconds("idle_exit", None, optional=True)
    (0.5, 0.0, None)
    >>> seconds("poll", 0)
    Traceback (most recent call last):
    ValueError: poll must be a finite number > 0, got 0
    """
    if value is None and optional:
        return None
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not (is_number and math.isfinite(value) and (value >= 0 if zero else value > 0)):
        allowed = f"a finite number {'>=' if zero else '>'} 0" + (" or None" if optional else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return float(value)


def seconds_argument(text: str, zero: bool = False) -> float:
    """Parse a command-line number of seconds (an ``argparse`` type; checked by :func:`seconds`).

    >>> seconds_argument("1.5")
    1.5
    >>> seconds_argument("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: seconds must be a finite number > 0, got 0.0
    """
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    try:
        return seconds("seconds", value, zero=zero)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def one_of(name: str, value, allowed):
    """Check a choice option: ``value`` if it is one of ``allowed``; the one choice validator.

    The error names the Python keyword (the command line shows the flag, see :func:`hinted`)
    and, for a misspelt string, the closest choice.

    >>> one_of("cost", "sum", ("sum", "padded"))
    'sum'
    >>> one_of("cost", "pad", ("sum", "padded"))
    Traceback (most recent call last):
    ValueError: cost='pad' is not one of 'sum', 'padded'; did you mean 'padded'?
    """
    if value not in allowed:
        hint = _close_match(value, allowed) if isinstance(value, str) else ""
        raise hinted(ValueError(f"{keyword(name, value)} is not one of {', '.join(map(repr, allowed))}{hint}"),
                     (name, value))
    return value


def _key_columns(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (str, int)) or not isinstance(value, (list, tuple)):
        return (value,)
    return tuple(value)


def _column_name(value) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"name must be a non-empty column name, got {value!r}")
    return value


@dataclass(frozen=True)
class Option:
    """One batching option: its default, its check, and how docs and the command line show it.

    ``kind`` is ``"choice"`` (one of ``choices``), ``"count"`` (a whole number >= 1 or None),
    ``"columns"`` (a column name or a list of them) or ``"column"`` (one new column name).
    ``changes_result`` says whether the option can change the ids or the frames: an export
    records those (:data:`RESULT_OPTIONS`) and refuses to resume or append with other values.

    >>> OPTIONS["mode"].check("fill"), OPTIONS["max_rows"].flag
    ('fill', '--max-rows')
    """

    name: str
    default: object
    kind: str
    help: str
    doc: str = ""
    choices: tuple = ()  # or a function returning them (modes: plug-ins add names)
    metavar: str | None = None
    cli_note: str = ""
    changes_result: bool = True

    @property
    def flag(self) -> str:
        """The command-line flag (``--max-rows``)."""
        return flag(self.name)

    @property
    def allowed(self) -> tuple:
        """The values a choice takes now (registered plug-in modes included).

        >>> OPTIONS["cost"].allowed
        ('sum', 'padded')
        """
        return tuple(self.choices()) if callable(self.choices) else self.choices

    def check(self, value):
        """The validated (normalised) value; raises ``ValueError``/``TypeError`` naming the keyword.

        >>> OPTIONS["by"].check("user"), OPTIONS["multiple"].check(None)
        (('user',), None)
        """
        if self.kind == "choice":
            return one_of(self.name, value, self.allowed)
        if self.kind == "count":
            return whole_number(self.name, value, 1, optional=True)
        if self.kind == "columns":
            return _key_columns(value)
        return _column_name(value)

    def type_text(self) -> str:
        """The numpydoc type line: ``{'greedy', 'fill', 'floor'}, default 'greedy'``."""
        types = {"count": "int or None", "columns": "column label or list of them", "column": "str"}
        text = "{" + ", ".join(map(repr, self.allowed)) + "}" if self.kind == "choice" else types[self.kind]
        return f"{text}, default {self.default!r}"

    def parameter(self):
        """The keyword-only parameter this option adds to a signature."""
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=self.default)

    def numpydoc(self, indent: str) -> str:
        """This option's entry in a numpydoc Parameters section."""
        body = " ".join(f"{self.help[0].upper()}{self.help[1:]}. {self.doc}".split())
        lines = textwrap.wrap(body, 96 - len(indent) - 4)
        return "\n".join([f"{indent}{self.name} : {self.type_text()}"] + [f"{indent}    {ln}" for ln in lines])

    def cli_arguments(self) -> dict:
        """``argparse`` keyword arguments for this option's flag."""
        kw = {"dest": self.name, "help": self.help + self.cli_note, "default": self.default}
        if self.kind == "choice":
            kw["choices"] = self.allowed
        elif self.kind == "count":
            kw["type"] = count_argument
        elif self.kind == "columns":
            kw["action"] = "append"
        if self.metavar:
            kw["metavar"] = self.metavar
        return kw


def count_argument(text: str, minimum: int = 1) -> int:
    """Parse a command-line whole number >= ``minimum`` (an ``argparse`` type; checked by
    :func:`whole_number`, its error one line).

    >>> count_argument("8")
    8
    >>> count_argument("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: expected a number >= 1, got 0
    """
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    try:
        return whole_number("value", value, minimum)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}") from None


_SPEC = (
    Option("mode", "greedy", "choice",
           "greedy: never exceed the limit (default); fill: reach it; floor: the grid of the running "
           "sum before each row, (cumsum - w) // limit",
           "'floor' puts row i in batch floor(S / limit) with S the running sum before row i, i.e. "
           "``(df.w.cumsum() - df.w) // limit`` with dense ids (see docs/semantics.md).",
           choices=known_modes),
    Option("max_rows", None, "count", "at most N rows per batch",
           "None: no cap. A full batch closes whatever its weight.", metavar="N"),
    Option("by", None, "columns",
           "start a new batch when this key column changes",
           "A column name or a list of them; missing keys equal each other.", metavar="COL",
           cli_note=" (repeat or comma-separate)"),
    Option("cost", "sum", "choice", "sum of weights (default) or padded: max weight x rows",
           "'padded' is what a batch of padded sequences costs: its heaviest row times its row count.",
           choices=COSTS),
    Option("oversize", "allow", "choice",
           "a row heavier than the limit: its own batch (allow) or an error",
           "'raise' raises OversizeError naming the row.", choices=OVERSIZE),
    Option("invalid", "raise", "choice",
           "NaN/inf/missing/negative weights: error (default) or leave the rows out",
           "'skip' leaves those rows out of every batch (their id is missing) and counts them.",
           choices=INVALID),
    Option("name", "batch", "column", "name of the batch id column (default: batch)",
           "A column or index level of that name already in the frame is refused where the ids "
           "become a column (not by ids()): pick a new name.", metavar="COL"),
    Option("multiple", None, "count", "greedy: cut batches to a multiple of M rows",
           "A batch closed by the limit or max_rows keeps its first m * floor(r / m) rows when it "
           "holds r >= m rows; a batch that reaches the limit with fewer than m rows (heavy rows) "
           "is kept as it is, and so is the last batch of a group.", metavar="M"),
    Option("sort_window", None, "count", "sort rows by weight within windows of N rows before batching",
           "Reduces padding with cost='padded'; the rows of a batch are then not contiguous in the input.",
           metavar="N"),
    Option("device", "cpu", "choice", "where the kernels run: cpu (default), auto or gpu",
           "'auto' uses the GPU only for partitions where it was measured faster than the CPU "
           "(for now none: see the GPU guide), else the CPU.", choices=DEVICES,
           changes_result=False),  # every device gives the same ids, bit for bit
)

OPTIONS = {o.name: o for o in _SPEC}
"""The batching options by name, in signature order: the one spec every entry point uses."""

RESULT_OPTIONS = tuple(o.name for o in _SPEC if o.changes_result)
"""The options that can change the ids or the frames (all but ``device``), in spec order: what
an export records with its ``weight``, ``limit``, ``format`` and ``batches_per_file``."""


def option_parameters() -> list:
    """The batching options as keyword-only ``inspect.Parameter`` objects, in spec order.

    >>> [p.name for p in option_parameters()][:3]
    ['mode', 'max_rows', 'by']
    """
    return [opt.parameter() for opt in OPTIONS.values()]


def options_doc(indent: str = "") -> str:
    """The numpydoc Parameters entries of every batching option, generated from the spec.

    >>> print(options_doc().splitlines()[0])
    mode : {'greedy', 'fill', 'floor'}, default 'greedy'
    """
    return "\n".join(opt.numpydoc(indent) for opt in OPTIONS.values())


OPTIONS_MARKER = "{batching_options}"


def fill_doc(doc: str | None, blocks: dict) -> str | None:
    r"""Replace each line that is only ``{name}`` by ``blocks[name]``, indented like that line.

    A block is a text or a function of the indent (returning the indented text).

    >>> doc = "Raises\n    {errors}"
    >>> print(fill_doc(doc, {"errors": "KeyError\n    No such column."}))
    Raises
        KeyError
            No such column.
    """
    if not doc:
        return doc
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        name = line.strip()[1:-1] if line.strip().startswith("{") else None
        if name in blocks:
            indent = line[: len(line) - len(line.lstrip())]
            block = blocks[name]
            lines[i] = block(indent) if callable(block) else textwrap.indent(block, indent)
    return "\n".join(lines)


def _fill_options_doc(doc: str | None, blocks=None) -> str | None:
    """Replace the line holding :data:`OPTIONS_MARKER` with the options' entries, and the
    lines naming a key of ``blocks`` with that block (see ``fill_doc`` in this module)."""
    return fill_doc(doc, {OPTIONS_MARKER[1:-1]: options_doc, **(blocks or {})})


def takes_options(extra=(), docs=None):
    """Decorate ``f(..., **options)`` so its signature and docstring show the batching options.

    The wrapper's ``__signature__`` holds ``f``'s own parameters, then ``extra`` (more
    keyword-only ``inspect.Parameter`` objects), then every option of :data:`OPTIONS`, so
    ``inspect.signature``, ``help()``, IDEs and Sphinx show them with their defaults. The line
    ``{batching_options}`` of the docstring becomes their numpydoc entries. A keyword the
    signature does not have raises ``TypeError`` naming ``f`` and the closest parameter.
    ``docs`` maps more ``{name}`` docstring lines to shared text blocks (see ``fill_doc`` in this module).

    >>> @takes_options()
    ... def ids(weight, limit, **options):
    ...     return sorted(options)
    >>> str(inspect.signature(ids)).startswith("(weight, limit, *, mode='greedy', max_rows=None")
    True
    >>> ids("w", 5, max_row=2)
    Traceback (most recent call last):
    TypeError: ids() got an unexpected keyword argument 'max_row'; did you mean 'max_rows'?
    """
    def decorate(func):
        own = [p for p in inspect.signature(func).parameters.values() if p.kind is not p.VAR_KEYWORD]
        taken = {p.name for p in own}
        added = [p for p in list(extra) + option_parameters() if p.name not in taken]
        signature = inspect.signature(func).replace(parameters=own + added)
        accepted = set(signature.parameters) - {"self"}

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            for key in kwargs:
                if key not in accepted:
                    raise unexpected_keyword(func.__name__, key, accepted)
            return func(*args, **kwargs)

        wrapper.__signature__ = signature
        wrapper.__doc__ = _fill_options_doc(func.__doc__, docs)
        # Tools that read the source for defaults (Sphinx's autodoc_preserve_defaults) would
        # pair the source's defaults with the signature's options: they see the wrapper instead.
        del wrapper.__wrapped__
        return wrapper

    return decorate


@dataclass(frozen=True)
class BatchOptions:
    """The validated batching options (docs/design.md gives their meaning).

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
    extra: dict = field(default_factory=dict, compare=False, repr=False)  # engine hints that change no result ("keep_flags")

    @classmethod
    @takes_options()
    def make(cls, weight, limit, **options) -> BatchOptions:
        """Validate and build the options; raises ``ValueError``/``TypeError`` naming the fix.

        The keyword-only parameters are the batching options of
        :data:`~dask_cumbatch.options.OPTIONS`.

        >>> BatchOptions.make("w", "1MB", by="user").by
        ('user',)
        """
        values = {name: opt.check(options.get(name, opt.default)) for name, opt in OPTIONS.items()}
        _check_combination(values)
        if values["multiple"] == 1:
            values["multiple"] = None  # a multiple of 1 is no constraint
        return cls(weight=weight, limit=parse_limit(limit), **values)

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
            check_weight_label(self.weight)
            if self.weight not in columns:
                raise missing_column("weight column", self.weight, columns)
            check_weight_dtype(dtypes[self.weight], self.weight)
        for key in self.by:
            if key not in columns:
                raise hinted(missing_column(f"{keyword('by')} column", key, columns), ("by",))

    def check_id_column(self, columns, index_names=()) -> None:
        """Refuse an id column name that a column or index level of the frame already has.

        Called where the ids become a column (``assign``, ``repartition``, ``iter_batches``,
        the export), never by ``ids()``, whose Series replaces nothing.

        >>> BatchOptions.make("w", 10).check_id_column(["w", "batch"])
        Traceback (most recent call last):
        ValueError: the input already has a column 'batch', which the batch ids would replace; name the id column otherwise, e.g. name='batch_id'
        """
        where = ("a column" if self.name in columns else
                 "an index named" if self.name in index_names else None)
        if where is None:
            return
        taken = set(map(str, columns)) | set(map(str, index_names))
        free = next(n for n in (f"{self.name}_id", *(f"{self.name}_id{i}" for i in range(2, len(taken) + 3)))
                    if n not in taken)
        raise hinted(ValueError(f"the input already has {where} {self.name!r}, which the batch ids would "
                                f"replace; name the id column otherwise, e.g. {keyword('name', free)}"),
                     ("name", free))


def _check_combination(values: dict) -> None:
    mode, multiple = values["mode"], values["multiple"]
    if multiple is not None and multiple > 1 and mode != "greedy":
        raise hinted(ValueError(f"{keyword('multiple')} applies to {keyword('mode', 'greedy')} only, "
                                f"not {keyword('mode', mode)}"),
                     ("multiple",), ("mode", "greedy"), ("mode", mode))
    if mode == "floor" and values["cost"] != "sum":
        raise hinted(ValueError(f"{keyword('mode', 'floor')} cuts a fixed grid of the running sum: "
                                f"use {keyword('cost', 'sum')}"), ("mode", "floor"), ("cost", "sum"))


def _is_dask_series(obj) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    return isinstance(obj, dd.Series)


WEIGHTS_ACCEPTED = (
    "a column name, a Series aligned with the frame (a Dask Series for a Dask frame), or for a "
    "pandas frame an array or list with one value per row"
)


def check_weight_label(weight) -> None:
    """Raise ``TypeError`` (saying what is accepted) unless ``weight`` can name a column.

    >>> check_weight_label([1, 2])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: the weight must be a column name, a Series aligned with the frame ...; got list
    """
    try:
        hash(weight)
    except TypeError:
        raise TypeError(f"the weight must be {WEIGHTS_ACCEPTED}; got {type(weight).__name__}") from None


def check_weight_dtype(dtype, label) -> None:
    """Raise ``TypeError`` unless ``dtype`` is a numeric or bool dtype (NumPy, nullable or Arrow).

    >>> check_weight_dtype(np.dtype("float32"), "w")
    >>> check_weight_dtype(np.dtype("O"), "w")
    Traceback (most recent call last):
    TypeError: weight column 'w' has dtype object; it must be numeric (int, uint, float or bool)
    """
    scale = decimal_scale(dtype)
    if scale:
        raise TypeError(
            f"weight column {label!r} has dtype {dtype}: decimals with digits after the point are not "
            "summed (float64 would round them); cast it to int64 of the smallest unit (and the limit "
            "alike), or to float64 if rounding is acceptable"
        )
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        if not pd.api.types.is_complex_dtype(dtype):
            return
    raise TypeError(
        f"weight column {label!r} has dtype {dtype}; it must be numeric (int, uint, float or bool)"
    )


def weight_kind(dtype) -> str:
    """``"int"`` when weights are summed exactly in int64 (ints, bools, whole decimals), else
    ``"float"`` (float64).

    >>> weight_kind(np.dtype("uint16")), weight_kind(pd.BooleanDtype()), weight_kind(np.dtype("f4"))
    ('int', 'int', 'float')
    """
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype) or decimal_scale(dtype) == 0:
        return "int"
    return "float"


def decimal_scale(dtype) -> int | None:
    """The digits after the point of an Arrow decimal dtype, or None for any other dtype.

    Whole decimals (scale 0) are summed exactly as int64; others are refused
    (:func:`check_weight_dtype`): never summed as float64.

    >>> import pyarrow as pa
    >>> decimal_scale(pd.ArrowDtype(pa.decimal128(20, 0))), decimal_scale(pd.ArrowDtype(pa.decimal128(9, 2)))
    (0, 2)
    >>> decimal_scale(np.dtype("float64")) is None
    True
    """
    arrow_type = getattr(dtype, "pyarrow_dtype", None)
    if arrow_type is None:
        return None
    import pyarrow.types

    return arrow_type.scale if pyarrow.types.is_decimal(arrow_type) else None
