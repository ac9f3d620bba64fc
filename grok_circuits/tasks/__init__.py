"""Seeded, paper-faithful generators of the grokking tasks.

``make_task("composition", preset="tutorial", phi=9.0)`` builds a task from a named preset
(``"paper"`` or ``"tutorial"``), with explicit parameters overriding the preset.
"""

import dataclasses

# Each task module registers itself on import: composition, comparison, complex reasoning (built
# on comparison), mixed (built from composition and comparison), and modular arithmetic. The
# registry is a leaf module, so nothing here imports back up.
from grok_circuits.tasks import comparison, complex, composition, mixed, modular  # noqa: F401
from grok_circuits.tasks.comparison import ComparisonParams
from grok_circuits.tasks.complex import ComplexParams, complex_baselines
from grok_circuits.tasks.composition import CompositionParams
from grok_circuits.tasks.data import PROBES, Split, TaskData
from grok_circuits.tasks.mixed import MixedParams, mixed_subtask
from grok_circuits.tasks.modular import ModularParams, op_pairs
from grok_circuits.tasks.pairs import Counterfactuals, PromptPairs, make_pairs
from grok_circuits.tasks.registry import TaskSpec, register_task, task_names, task_spec
from grok_circuits.tasks.vocab import Vocab


def _lookup(name: str):
    spec = task_spec(name)
    return spec.params_cls, spec.presets, spec.make


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
        name: a registered task: ``"composition"``, ``"comparison"``, ``"mixed"``,
            ``"modular"``, or one of your own (:func:`register_task`).
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


def subtasks(task: TaskData) -> dict[str, TaskData]:
    """The views of a task made of several (the mixed task: ``{"composition": ...,
    "comparison": ...}``); ``{task.name: task}`` for any other."""
    spec = task_spec(task)
    return spec.subtasks(task) if spec.subtasks is not None else {task.name: task}


__all__ = [
    "PROBES",
    "ComparisonParams",
    "ComplexParams",
    "CompositionParams",
    "Counterfactuals",
    "MixedParams",
    "ModularParams",
    "PromptPairs",
    "Split",
    "TaskData",
    "TaskSpec",
    "Vocab",
    "complex_baselines",
    "make_pairs",
    "make_params",
    "make_task",
    "mixed_subtask",
    "op_pairs",
    "params_from_dict",
    "register_task",
    "subtasks",
    "task_names",
    "task_spec",
]
