"""The declared lower bounds are the tested ones: pyproject.toml, .ci/lower-bounds.txt (which
CI installs for its second test pass) and the README's table agree, version for version."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _pins() -> dict:
    pins = {}
    for line in (ROOT / ".ci" / "lower-bounds.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def _lower_bounds() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in ("distributed", "plot", "test"):
        requirements += project["optional-dependencies"][extra]
    bounds = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=([0-9][^,;\s]*)", req.strip())
        if m:
            bounds[m.group(1).lower()] = m.group(2)
    return bounds


def _readme_minimums() -> dict:
    rows = re.findall(r"^\| ([a-z0-9_-]+)(?: \(tests\))? \| ([0-9][^ |]*) \| [0-9][^ |]* \|$",
                      (ROOT / "README.md").read_text(), re.M)
    return {name: version for name, version in rows}


def test_every_runtime_lower_bound_is_pinned_in_the_constraints_file():
    pins, bounds = _pins(), _lower_bounds()
    for name in ("dask", "distributed", "pandas", "numpy", "pyarrow", "numba", "fsspec", "filelock",
                 "matplotlib", "s3fs", "moto"):
        assert bounds.get(name) == pins.get(name), f"{name}: pyproject says >={bounds.get(name)}, " \
                                                    f".ci/lower-bounds.txt pins {pins.get(name)}"


def test_the_readme_table_states_the_pinned_minimums():
    pins, table = _pins(), _readme_minimums()
    assert table, "the README has no versions table"
    for name, version in table.items():
        assert pins.get(name) == version, f"README says {name} {version}, .ci/lower-bounds.txt {pins.get(name)}"
    bounded = (set(_lower_bounds()) & set(pins)) | {"llvmlite"}  # numba's own, pinned with it
    assert bounded <= set(table), f"missing from the README table: {sorted(bounded - set(table))}"
