"""The documentation site (``mkdocs.yml``, ``docs/``) stays true to the code.

- Every public name has a docstring: the names of ``grok_circuits.__all__`` and of each module
  the API reference documents (``docs/_tools/api_pages.py``). mkdocstrings renders a name
  without one silently, so this is where a missing docstring fails.
- The code on the pages runs: each page's ``python`` blocks run in order, in one namespace, in a
  scratch folder, with the registries they add to restored afterwards. A block whose first line
  is ``# TransformerLens 3.x`` (or ``4.x``) runs only under that line; one whose first line is
  ``# not run:`` says why it does not run here (it needs the network).
"""

import functools
import re
import sys
from pathlib import Path

import griffe
import pytest

from grok_circuits import backend

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_tools"))

import api_pages as api  # noqa: E402 - after the path above
from comment_docstrings import CommentDocstrings, comment_above  # noqa: E402

PUBLIC = [(module, name) for module in api.PUBLIC_MODULES for name in api.public_names(module)]


@functools.cache
def package() -> griffe.Object:
    """The package as the API reference reads it (griffe, with the docs' extension)."""
    return griffe.load(
        "grok_circuits",
        search_paths=[str(ROOT)],
        extensions=griffe.load_extensions(CommentDocstrings),
        resolve_aliases=True,
    )


def docstring_of(module_name: str, name: str) -> str | None:
    """The docstring the API reference shows for ``module_name.name`` (a constant's: the ``#:``
    comment above its assignment)."""
    path = api.object_path(module_name, name).removeprefix("grok_circuits.")
    docstring = package()[path].docstring
    return None if docstring is None else docstring.value


@pytest.mark.parametrize(("module", "name"), PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_every_public_name_has_a_docstring(module, name):
    doc = docstring_of(module, name)
    assert doc and doc.strip(), (
        f"{module}.{name} has no docstring: the API reference would show it bare; write one "
        "(a constant: a '#:' comment on the line above its assignment)"
    )


def test_the_check_catches_a_missing_docstring():
    assert docstring_of("grok_circuits.analysis", "find_circuit")
    assert docstring_of("grok_circuits.training.plugins", "GRAD_HOOKS")  # a '#:' comment
    assert comment_above(["x = 1", "#: the answer", "ANSWER = 42"], 3) == "the answer"
    assert comment_above(["# not a doc comment", "ANSWER = 42"], 2) is None


# ----------------------------------------------------------------------------- the pages' code
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
PAGES = sorted(p for p in DOCS.rglob("*.md") if _BLOCK.search(p.read_text()))


def runnable(block: str) -> bool:
    first = block.splitlines()[0].strip()
    if first.startswith("# not run:"):
        return False
    line = re.fullmatch(r"# TransformerLens (\d+)\.x", first)
    return line is None or backend.TL_VERSION.split(".")[0] == line.group(1)


@pytest.fixture
def registries_restored():
    """The registries a page may add to, as they were before it ran."""
    from grok_circuits.analysis.circuits import find
    from grok_circuits.analysis.edges import attribution
    from grok_circuits.tasks import registry
    from grok_circuits.training import plugins, progress_measures

    saved = [
        (find.METHODS, dict(find.METHODS)),
        (find._CLEAN_ONLY, set(find._CLEAN_ONLY)),
        (attribution.EDGE_METHODS, dict(attribution.EDGE_METHODS)),
        (registry._REGISTRY, dict(registry._REGISTRY)),
        (plugins.LOSSES, dict(plugins.LOSSES)),
        (plugins.GRAD_HOOKS, dict(plugins.GRAD_HOOKS)),
        (progress_measures.MEASURES, dict(progress_measures.MEASURES)),
        (backend.BACKENDS, dict(backend.BACKENDS)),
    ]
    active = backend.active()
    yield
    for registry_, before in saved:
        registry_.clear()
        registry_.update(before)
    assert backend.active() is active


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_the_code_on_the_page_runs(page, tmp_path, monkeypatch, registries_restored, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    blocks = [b for b in _BLOCK.findall(page.read_text()) if runnable(b)]
    assert blocks or page.name == "models.md", f"{page}: no block runs here"
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)  # noqa: S102 - the page's own code
    assert capsys.readouterr().out, f"{page}: its code prints nothing to show"
