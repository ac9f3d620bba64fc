"""A griffe extension: a module attribute's ``#:`` comment is its docstring.

The package documents its constants and registries the way Sphinx reads them, with ``#:``
comment lines right above the assignment; griffe reads only a string literal below it. This
extension gives an attribute without a docstring the text of those comment lines, so that the
API reference shows them.
"""

import ast
import importlib
import inspect
import re

import griffe


def comment_above(lines: list[str], lineno: int) -> str | None:
    """The ``#:`` comment block right above line ``lineno`` (1-based) of ``lines``, or None."""
    found = []
    index = lineno - 2
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        found.append(lines[index].lstrip()[2:].strip())
        index -= 1
    return "\n".join(reversed(found)) or None


def runtime_docstring(attr: griffe.Attribute) -> str | None:
    """The docstring an attribute's value carries at runtime, where it has one of its own (a
    ``functools.partial`` given a ``__doc__``, as the causal-trace specialisations are)."""
    try:
        value = getattr(importlib.import_module(attr.module.path), attr.name)
    except Exception:  # noqa: BLE001 - an attribute that cannot be imported has no such docstring
        return None
    doc = getattr(value, "__doc__", None)
    if not isinstance(doc, str) or doc == getattr(type(value), "__doc__", None):
        return None
    return inspect.cleandoc(doc)


class CommentDocstrings(griffe.Extension):
    """Fill an attribute's missing docstring from its ``#:`` comment, else from the docstring
    its value carries at runtime."""

    def on_attribute_instance(self, *, node: ast.AST, attr: griffe.Attribute, **kwargs) -> None:
        if attr.docstring is not None or attr.lineno is None:
            return
        try:
            lines = attr.lines_collection[attr.filepath]
        except (KeyError, TypeError):
            return
        text = comment_above(lines, attr.lineno) or runtime_docstring(attr)
        if text:
            attr.docstring = griffe.Docstring(
                plain_roles(text), lineno=attr.lineno - 1, parent=attr
            )


#: A Sphinx cross-reference role (``:func:`~grok_circuits.train```); the docstrings use them.
_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|attr|meth|obj|exc|const):`(~?)([^`]+)`")


def plain_roles(text: str) -> str:
    """``text`` with each Sphinx role written as a code span (``~`` keeps the last name)."""

    def code(match: re.Match) -> str:
        tilde, target = match.groups()
        return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"

    return _ROLE.sub(code, text)


class SphinxRoles(griffe.Extension):
    """Show the docstrings' Sphinx roles (which Markdown does not know) as code spans."""

    def on_instance(self, *, node: ast.AST, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
