"""The README tells the truth: its Python examples run as pasted, its links and extras exist.

Every ```python block of README.md is run as its own script, in a fresh interpreter and a fresh
empty folder, exactly as a reader would paste it (the examples create the data they read).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*\n(.*?)^```\s*$", re.S | re.M)


def fenced(lang: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every README block fenced as ``lang``."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(text)
            if m.group(1) == lang]


PYTHON = fenced("python")


def run_block(code: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True,
                          timeout=600)


def test_readme_has_python_examples():
    assert len(PYTHON) >= 2


@pytest.mark.parametrize("line, code", PYTHON, ids=[f"README.md:{line}" for line, _ in PYTHON])
def test_python_block_runs_as_pasted(line, code, tmp_path):
    done = run_block(code, tmp_path)
    assert done.returncode == 0, f"README.md:{line} failed:\n{done.stderr}"


def test_quickstart_exports_every_row_and_can_be_pasted_twice(tmp_path):
    quickstart = next(code for _, code in PYTHON if "to_files(" in code)
    done = run_block(quickstart, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "BatchPlan:" in done.stdout  # print(plan)
    out = tmp_path / "out"
    assert (out / "_SUCCESS").exists()
    files = sorted(out.glob("part-*.parquet"))
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == 100_000
    first = {f.name: f.read_bytes() for f in files}
    again = run_block(quickstart, tmp_path)  # pasted a second time, in the same folder
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout and "up to date" not in done.stdout
    assert {f.name: f.read_bytes() for f in sorted(out.glob("part-*.parquet"))} == first


def test_links_point_at_files_in_the_repository():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert local, "the README links the docs"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert missing == []


def declared_extras() -> set[str]:
    """The names under ``[project.optional-dependencies]`` in pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+)\s*=", section, re.M))


def test_setup_commands_and_extras():
    bash = [code.strip() for _, code in fenced("bash")]
    assert 'pip install -e . && python -m dask_cumbatch demo' in bash
    assert 'pip install -e ".[test]" && pytest' in bash
    assert 'pip install -e ".[docs]" && bash docs/build.sh' in bash
    extras = declared_extras()
    used = {e for cmd in bash for group in re.findall(r"\.\[([\w,]+)\]", cmd) for e in group.split(",")}
    assert used <= set(extras)
    assert (ROOT / "docs" / "build.sh").exists()
