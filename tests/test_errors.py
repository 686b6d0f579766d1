"""dask_cumbatch.errors holds every user-facing exception and warning, as the same class objects
that the older import paths give."""
import importlib

import pytest

from dask_cumbatch import errors

OLD_PATHS = {
    "WeightError": ["dask_cumbatch", "dask_cumbatch.engine", "dask_cumbatch.engine.state"],
    "OversizeError": ["dask_cumbatch", "dask_cumbatch.engine", "dask_cumbatch.engine.state"],
    "InputChangedError": ["dask_cumbatch", "dask_cumbatch.engine", "dask_cumbatch.engine.state"],
    "ExportError": ["dask_cumbatch.export", "dask_cumbatch.export.folder"],
    "StoreWarning": ["dask_cumbatch.export.folder"],
}


def test_every_name_has_an_old_path_listed():
    assert sorted(errors.__all__) == sorted(OLD_PATHS)


@pytest.mark.parametrize("name", errors.__all__)
def test_is_an_exception_or_warning_class(name):
    cls = getattr(errors, name)
    assert isinstance(cls, type) and issubclass(cls, Exception)
    assert cls.__doc__ and cls.__name__ in errors.__doc__


@pytest.mark.parametrize("name,module", [(n, m) for n, mods in OLD_PATHS.items() for m in mods])
def test_same_object_at_old_path(name, module):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_no_other_exception_class_defined_in_the_package():
    """A new user-facing error belongs in errors.py; LockLost is the export lock's internal
    signal, caught where it is raised."""
    import inspect
    import pkgutil

    import dask_cumbatch

    internal = {"dask_cumbatch.export.folder.LockLost"}
    found = set()
    for info in pkgutil.walk_packages(dask_cumbatch.__path__, "dask_cumbatch."):
        if info.name.endswith("__main__"):  # running it is the command line
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, Warning | Exception) and obj.__module__ == info.name:
                found.add(f"{info.name}.{name}")
    public = {f"{getattr(errors, n).__module__}.{n}" for n in errors.__all__}
    assert found - internal == public
