#!/usr/bin/env bash
# The test suite under both TransformerLens lines: first in the active environment (the README's
# setup installs 3.x, HookedTransformer), then in .venv-tl4, which layers transformer-lens 4.x
# (TransformerBridge) over the active environment's packages, so that only TransformerLens itself
# is installed again. Before them, in the active environment: the docs build, mypy type-checks the
# package (pyproject.toml's [tool.mypy]) and part of the tests run with the signatures checked at
# run time; a failure of either fails the script after the test runs. Extra arguments go to both
# pytest runs (not to the checked one). TL4_VERSION picks the 4.x release.
set -uo pipefail
cd "$(dirname "$0")/.."

TL4_VERSION="${TL4_VERSION:-4.3.0}"
TL4_VENV="${TL4_VENV:-.venv-tl4}"
tl_version() { "$1" -c "import importlib.metadata as m; print(m.version('transformer-lens'))"; }

# The documentation site, once, in strict mode: a broken link or reference fails the script
# (tests/test_docs.py checks the docstrings and runs the pages' code). Not `-q`: it hides the
# warnings from the count that strict mode fails on; the INFO lines are filtered out instead.
echo "== docs: mkdocs build --strict =="
site_dir=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict -d "$site_dir" 2>&1 | grep -v "^INFO"
status_docs=${PIPESTATUS[0]}
rm -rf "$site_dir"
[ "$status_docs" -eq 0 ] || { echo "the documentation does not build (exit $status_docs)"; exit 1; }

echo "== mypy (type check) =="; python -m mypy; status_types=$?

# The shapes and types in the signatures, checked at run time on every call (jaxtyping with
# beartype, as TransformerLens' tests do), on the tests of the analyses, tasks and training, once.
# Tests marked wrong_types run unchecked (tests/conftest.py).
echo "== run-time type check of the signatures (jaxtyping, beartype) =="
python -m pytest tests/analysis tests/tasks tests/training -q \
    --jaxtyping-packages=grok_circuits,beartype.beartype
status_shapes=$?

echo "== TransformerLens $(tl_version python) =="
python -m pytest "$@"
status_first=$?

if [ "$(tl_version "$TL4_VENV/bin/python" 2>/dev/null)" != "$TL4_VERSION" ]; then
    rm -rf "$TL4_VENV"
    python -m venv "$TL4_VENV" || exit 1
    base_site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    tl4_site=$("$TL4_VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    # addsitedir (not a plain path line) so that the base's own .pth files, the editable
    # install of grok_circuits among them, are read too; it appends, so 4.x comes first.
    echo "import site; site.addsitedir('$base_site')" > "$tl4_site/_base_env.pth"
    "$TL4_VENV/bin/python" -m pip install -q "transformer-lens==$TL4_VERSION" || exit 1
fi
echo "== TransformerLens $(tl_version "$TL4_VENV/bin/python") =="
# the notebooks' kernels start as "python" from PATH: the 4.x one
PATH="$(cd "$TL4_VENV/bin" && pwd):$PATH" "$TL4_VENV/bin/python" -m pytest "$@"
status_second=$?

echo "mypy: exit $status_types; checked signatures: exit $status_shapes;" \
    "TransformerLens $(tl_version python): exit $status_first;" \
    "TransformerLens $TL4_VERSION: exit $status_second"
[ "$status_types" -eq 0 ] && [ "$status_shapes" -eq 0 ] && [ "$status_first" -eq 0 ] \
    && [ "$status_second" -eq 0 ]
