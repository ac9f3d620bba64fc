"""Seeded, paper-faithful generators of the grokking tasks.

``make_task("composition", preset="tutorial", phi=9.0)`` builds a task from a named preset
(``"paper"`` or ``"tutorial"``), with explicit parameters overriding the preset.
"""

import dataclasses

from grok_circuits.tasks.comparison import PRESETS as COMPARISON_PRESETS
from grok_circuits.tasks.comparison import ComparisonParams, make_comparison
from grok_circuits.tasks.composition import PRESETS as COMPOSITION_PRESETS
from grok_circuits.tasks.composition import CompositionParams, make_composition
from grok_circuits.tasks.data import PROBES, Split, TaskData
from grok_circuits.tasks.vocab import Vocab

_TASKS = {
    "composition": (CompositionParams, COMPOSITION_PRESETS, make_composition),
    "comparison": (ComparisonParams, COMPARISON_PRESETS, make_comparison),
}


def register_task(name: str, params_cls, presets: dict, make) -> None:
    """Add a task kind to :func:`make_task` (used by the mixed task)."""
    _TASKS[name] = (params_cls, presets, make)


def task_names() -> list[str]:
    return sorted(_TASKS)


def _lookup(name: str):
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {task_names()}")
    return _TASKS[name]


def make_params(name: str, preset: str | None = "tutorial", **params):
    """The parameters ``make_task`` would use, without generating anything."""
    params_cls, presets, _ = _lookup(name)
    if preset is None:
        base = params_cls()
    elif preset in presets:
        base = presets[preset]
    else:
        raise ValueError(f"unknown {name} preset {preset!r}; choose one of {sorted(presets)}")
    fields = {f.name for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"unknown {name} parameter(s) {unknown}; the parameters are {sorted(fields)}"
        )
    return dataclasses.replace(base, **params)


def make_task(name: str, preset: str | None = "tutorial", **params) -> TaskData:
    """Generate a task.

    Args:
        name: ``"composition"`` or ``"comparison"`` (``"mixed"`` once
            :mod:`grok_circuits.tasks.mixed` is imported, which the package does).
        preset: ``"tutorial"`` (groks on two CPU cores in minutes), ``"paper"`` (the paper's
            scale) or ``None`` for the dataclass defaults.
        **params: fields of the task's params dataclass (e.g. ``phi``, ``seed``,
            ``n_entities``), overriding the preset.

    Returns:
        The generated :class:`TaskData`. The same arguments give the same data, byte for byte.
    """
    _, _, make = _lookup(name)
    return make(make_params(name, preset, **params))


def params_from_dict(name: str, d: dict):
    params_cls, _, _ = _lookup(name)
    return params_cls.from_dict(d)


__all__ = [
    "PROBES",
    "ComparisonParams",
    "CompositionParams",
    "Split",
    "TaskData",
    "Vocab",
    "make_params",
    "make_task",
    "params_from_dict",
    "register_task",
    "task_names",
]

# Imported last: the module registers the "mixed" task through register_task above.
from grok_circuits.tasks.mixed import MixedParams, mixed_subtask  # noqa: E402

__all__ += ["MixedParams", "mixed_subtask"]
