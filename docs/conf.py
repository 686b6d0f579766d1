"""Sphinx configuration for the dask-cumbatch documentation.

Build with ``bash docs/build.sh`` (HTML with warnings as errors, then every example run by
``sphinx-build -b doctest``). The figures and the quick performance measurement are made
from the library itself when the builder starts (:func:`generate`), into ``docs/_generated/``
(not tracked by git), so they cannot drift from the code.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))  # figures.py, perf_plot.py

import dask_cumbatch  # noqa: E402

project = "dask-cumbatch"
author = "the dask-cumbatch contributors"
copyright = "the dask-cumbatch contributors"
release = version = dask_cumbatch.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "_generated/*.md",  # included into pages, not pages themselves
    "_perf_table.md",  # the measured benchmark table, included by performance.md
    "_bench_follow.md",  # the measured streaming table, included by streaming.md
    "README*",
]

myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 3

# Autodoc: the public names, documented where users import them from.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_preserve_defaults = True
autosummary_generate = False
# No sphinx.ext.napoleon as an extension: it would read a property docstring's "Text: more"
# first line as "type: description". The accessor methods' docstrings have NumPy sections
# (Parameters, Returns, Raises, Examples; the shared options generated from the option spec):
# only docstrings with such a section go through napoleon's NumPy parser, see setup() below.
_NUMPY_SECTIONS = ("Parameters", "Returns", "Raises", "Examples")


def _numpy_docstring(app, what, name, obj, options, lines):
    if what not in ("function", "method", "class") or not any(
        line.strip() in _NUMPY_SECTIONS and nxt.strip().startswith("---")
        for line, nxt in zip(lines, lines[1:])
    ):
        return
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import NumpyDocstring

    config = Config(napoleon_use_param=False, napoleon_use_rtype=False)  # plain text types
    lines[:] = NumpyDocstring(lines, config, app, what, name, obj, options).lines()

# Nitpicky mode (build.sh passes -n) reports every unresolved reference; types from other
# libraries are not documented here (no intersphinx: the build needs no network), and a few
# internal helper classes appear only in signatures.
nitpick_ignore_regex = [
    ("py:class", r"(pandas|pd|numpy|np|dask|dd|distributed|pyarrow|pa|torch|cupy|fsspec|argparse|threading)\..*"),
    ("py:class", r"(BatchSource|TrainingOptions|BatchIterator|Prepared|PartitionPlan|Entry|Summary)"),
    ("py:class", r"(optional|callable|array-like|iterable|iterator)"),
]

# Doctest: every {doctest} block of every page runs in `sphinx-build -b doctest`, in a fresh
# temporary working directory per page (examples write files with relative paths).
doctest_global_setup = """
import os as _os, tempfile as _tempfile
import matplotlib as _mpl
_mpl.use("Agg")
_cumbatch_cwd = _os.getcwd()
_os.chdir(_tempfile.mkdtemp(prefix="cumbatch-docs-"))
"""
doctest_global_cleanup = """
_os.chdir(_cumbatch_cwd)
"""
# The >>> examples in the API docstrings need their module's namespace: build.sh runs them
# with `pytest --doctest-modules dask_cumbatch`, not here.
doctest_test_doctest_blocks = ""
trim_doctest_flags = True

html_theme = "pydata_sphinx_theme"
html_title = f"dask-cumbatch {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 5,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "getting-started": [], "**": ["sidebar-nav-bs"]}
html_show_sourcelink = False

pygments_style = "sphinx"

GENERATED = DOCS / "_generated"


def demote_headings(text: str, top: int = 3) -> str:
    """Shift Markdown headings so the highest becomes level ``top`` (for an included file)."""
    lines = text.splitlines()
    levels = [len(line) - len(line.lstrip("#")) for line in lines
              if line.startswith("#") and line.lstrip("#").startswith(" ")]
    if not levels:
        return text
    shift = top - min(levels)
    out = []
    for line in lines:
        if line.startswith("#") and line.lstrip("#").startswith(" ") and shift > 0:
            line = "#" * shift + line
        out.append(line)
    return "\n".join(out) + "\n"


def perf_table(outdir: Path, name: str = "_perf_table.md", into: str = "perf_table.md") -> None:
    """Copy a measured benchmark table (``docs/_perf_table.md`` for performance.md,
    ``docs/_bench_follow.md`` for streaming.md) for its page to include.

    Until it exists, a note takes its place, so the site builds before the first measurement.
    """
    src = DOCS / name
    dst = outdir / into
    if src.exists():
        dst.write_text(demote_headings(src.read_text(), top=3))
    else:
        dst.write_text(
            "*The measured table is not there yet: run the benchmark as described below; it "
            f"writes `docs/{name}`, which this page includes.*\n"
        )


def generate(app) -> None:
    """Make the figures and the quick measurement (builder-inited hook).

    The HTML builder always remakes them; other builders (doctest) only fill in missing files.
    """
    only_missing = app.builder.name != "html"
    GENERATED.mkdir(exist_ok=True)
    import figures
    import perf_plot

    t = time.perf_counter()
    made = figures.main(GENERATED, only_missing=only_missing)
    made += perf_plot.main(GENERATED, only_missing=only_missing)
    perf_table(GENERATED)
    perf_table(GENERATED, "_bench_follow.md", "follow_table.md")
    if made:
        print(f"[cumbatch-docs] generated {len(made)} figure file(s) in {time.perf_counter() - t:.1f} s")


# Pages other contributors write alongside these (see docs/development.md). Until one exists,
# references to it read as plain text and it leaves the table of contents, so the site builds
# (warning-free) in any order of landing; once the file is there, nothing here changes anything.
PENDING_PAGES = {"export": "the export guide", "training": "the training guide"}
# a config value, so that a page landing makes an incremental build re-read every page
cumbatch_missing_pages = sorted(p for p in PENDING_PAGES if not (DOCS / f"{p}.md").exists())


def pending_pages(app, docname, source) -> None:
    """``source-read`` hook: unlink pending pages that do not exist yet."""
    import re

    text = source[0]
    for page in app.config.cumbatch_missing_pages:
        text = re.sub(rf"{{doc}}`{page}`", PENDING_PAGES[page], text)
        text = re.sub(rf"^{page}\n", "", text, flags=re.M)  # a toctree entry
    source[0] = text


def setup(app):
    app.connect("builder-inited", generate)
    app.add_config_value("cumbatch_missing_pages", [], "env")
    app.connect("source-read", pending_pages)
    app.connect("autodoc-process-docstring", _numpy_docstring)
    return {"parallel_read_safe": True}
