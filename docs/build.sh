#!/usr/bin/env bash
# Build the documentation and run every example in it. Exits non-zero on any failure.
#
#   bash docs/build.sh            # HTML into docs/_build/html, then the doctests
#
# Needs: pip install -e ".[docs]"   (Sphinx, pydata-sphinx-theme, myst-parser, sphinx-argparse,
# matplotlib, distributed, pytest). No system packages. PyTorch is optional: without it the
# examples of dask_cumbatch/torch.py are reported as skipped (conftest.py); with it they run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
out="$here/_build"
python="${PYTHON:-python}"
export MPLBACKEND=Agg
start=$(date +%s)
status=0

echo "== docs: HTML (warnings are errors)"
"$python" -m sphinx -b html -W --keep-going -n -q -d "$out/doctrees" "$here" "$out/html" || status=1

echo "== docs: doctests (every {doctest} block and API docstring example)"
"$python" -m sphinx -b doctest -W --keep-going -q -d "$out/doctrees" "$here" "$out/doctest" || status=1

echo "== docs: the >>> examples in the API docstrings"
(cd "$root" && "$python" -m pytest -q -p no:cacheprovider --doctest-modules dask_cumbatch \
    --ignore=dask_cumbatch/__main__.py) || status=1

echo "== docs: console examples, code-block checks (tests/test_docs.py)"
(cd "$root" && "$python" -m pytest -q -p no:cacheprovider tests/test_docs.py) || status=1

echo "== docs: public names without a docstring example (report only)"
"$python" "$here/check_docstrings.py" || true

echo "== docs: done in $(( $(date +%s) - start )) s, status $status; open $out/html/index.html"
exit $status
