"""Exports that load on first use (PEP 562), for packages whose imports are slow."""

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    namespace: dict, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__`` for ``exports`` (public name -> the module
    that defines it): a name is imported when first looked up, then kept in ``namespace`` (the
    module's ``globals()``) so later lookups skip the hook.

    ``__getattr__`` returns ``Any``, so that a type checker takes a lazily exported name as
    untyped rather than as a plain ``object`` that cannot be called."""
    module_name = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
