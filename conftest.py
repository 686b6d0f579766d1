"""pytest settings for the docstring examples (``pytest --doctest-modules dask_cumbatch``, run by
docs/build.sh); the test suite's own fixtures are in tests/conftest.py.

The examples of ``dask_cumbatch/torch.py`` need PyTorch, which dask-cumbatch does not install:
without it they are reported as skipped (with the reason), never as failures; with it they run.
"""
from __future__ import annotations

from pathlib import Path

import pytest

TORCH_MODULE = Path(__file__).resolve().parent / "dask_cumbatch" / "torch.py"


def pytest_collection_modifyitems(config, items):
    torch_examples = [item for item in items if _is_doctest_of(item, TORCH_MODULE)]
    if torch_examples and not _torch_importable():
        skip = pytest.mark.skip(reason="needs PyTorch (pip install torch); dask-cumbatch does not install it")
        for item in torch_examples:
            item.add_marker(skip)


def _is_doctest_of(item, module: Path) -> bool:
    from _pytest.doctest import DoctestItem

    return isinstance(item, DoctestItem) and Path(item.path).resolve() == module


def _torch_importable() -> bool:
    """Whether ``dask_cumbatch.torch`` found PyTorch (it imports without it, and fails on use)."""
    import dask_cumbatch.torch

    return dask_cumbatch.torch.torch is not None
