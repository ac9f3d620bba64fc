"""The public names the API reference documents, and where each is documented.

A public module's names are its ``__all__`` (a module without one: the functions and classes it
defines whose names do not start with an underscore). The top level's names are documented on
their own page; the other pages link to them instead of documenting them twice.
"""

import importlib
import inspect

#: The API reference's pages: the page's file (under ``docs/api/``) -> the modules it documents.
PAGES: dict[str, tuple[str, ...]] = {
    "grok_circuits.md": ("grok_circuits",),
    "analysis.md": ("grok_circuits.analysis",),
    "tasks.md": ("grok_circuits.tasks", "grok_circuits.tasks.paper"),
    "training.md": (
        "grok_circuits.config",
        "grok_circuits.training.loop",
        "grok_circuits.training.plugins",
        "grok_circuits.training.progress_measures",
        "grok_circuits.training.presets",
        "grok_circuits.training.precision",
        "grok_circuits.training.cpu",
        "grok_circuits.training.throughput",
        "grok_circuits.training.tracking",
        "grok_circuits.training.curriculum",
    ),
    "runs.md": (
        "grok_circuits.runs",
        "grok_circuits.model",
        "grok_circuits.recurrence",
        "grok_circuits.hf",
    ),
    "backend.md": ("grok_circuits.backend", "grok_circuits.backend.protocol"),
    "viz.md": ("grok_circuits.viz",),
    "sweeps.md": ("grok_circuits.sweeps",),
}

PUBLIC_MODULES = tuple(m for modules in PAGES.values() for m in modules)


def public_names(module_name: str) -> list[str]:
    """The public names of ``module_name``, in its ``__all__`` order."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module_name
    ]


def object_path(module_name: str, name: str) -> str:
    """The dotted path under which the docs show ``module_name.name``: where a function or a
    class is defined, else the module that binds it (for lazily exported names, the module the
    export loads it from)."""
    module = importlib.import_module(module_name)
    exports = getattr(module, "_EXPORTS", {})
    obj = inspect.getattr_static(module, name, None)
    if obj is None:  # a lazy export not loaded yet, or a name only __getattr__ knows
        obj = getattr(module, name)
    if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__qualname__ == name:
        return f"{obj.__module__}.{name}"
    if name in exports:
        return object_path(exports[name], name)
    return f"{module_name}.{name}"


def owners() -> dict[str, tuple[str, str, str]]:
    """Where each documented object is documented: its path -> (page, module, name) of its
    first listing in :data:`PAGES` order; every later listing links there."""
    found: dict[str, tuple[str, str, str]] = {}
    for page, modules in PAGES.items():
        for module in modules:
            for name in public_names(module):
                found.setdefault(object_path(module, name), (page, module, name))
    return found
