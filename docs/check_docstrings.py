"""List the public names of dask_cumbatch whose docstring has no example (``>>>``).

Public means: the names in ``dask_cumbatch.__all__``, the accessor methods, and the names in
``__all__`` of the user-facing modules (errors, export, training, torch, demo, engine, cli), with the
public methods and properties of those classes. ``python docs/check_docstrings.py`` prints
them; ``--strict`` exits with status 1 when there are any.
"""
from __future__ import annotations

import importlib
import inspect
import sys

MODULES = ["dask_cumbatch", "dask_cumbatch.errors", "dask_cumbatch.export", "dask_cumbatch.training", "dask_cumbatch.torch",
           "dask_cumbatch.demo", "dask_cumbatch.engine", "dask_cumbatch.cli"]
EXTRA = {"dask_cumbatch.cli": ["main", "build_parser"], "dask_cumbatch.training": ["BatchIterator"],
         "dask_cumbatch.torch": ["CumbatchIterableDataset"]}


def _members(cls):
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            yield name, value.fget
        elif isinstance(value, (classmethod, staticmethod)):
            yield name, value.__func__
        elif inspect.isfunction(value):
            yield name, value


def public_names():
    """``(qualified name, object)`` of every public function, class, method and property."""
    seen = set()
    for modname in MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError as err:  # a module not written yet
            print(f"(cannot import {modname}: {err})")
            continue
        names = list(getattr(mod, "__all__", [])) + EXTRA.get(modname, [])
        for name in names:
            obj = getattr(mod, name, None)
            if obj is None or not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            yield f"{modname}.{name}", obj
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for member, func in _members(obj):
                    yield f"{modname}.{name}.{member}", func


def missing():
    out = []
    for qualname, obj in public_names():
        doc = inspect.getdoc(obj) or ""
        if ">>>" not in doc:
            out.append((qualname, "no docstring" if not doc.strip() else "no example"))
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    found = missing()
    for qualname, why in found:
        print(f"{why:13s} {qualname}")
    print(f"{len(found)} public name(s) without a docstring example")
    return 1 if found and "--strict" in argv else 0


if __name__ == "__main__":
    sys.exit(main())
