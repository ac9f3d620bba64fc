"""Making tasks by name: a preset's parameters, the generated task, and a saved task read back.

Above the registry and every built-in task module, whose imports register them."""

import dataclasses
import os

# Each task module registers itself on import: composition, comparison, complex reasoning (built
# on comparison), mixed (built from composition and comparison), and modular arithmetic.
from grok_circuits.tasks import comparison, complex, composition, mixed, modular  # noqa: F401
from grok_circuits.tasks.data import TaskData
from grok_circuits.tasks.registry import task_spec


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
    """The parameters dataclass of the registered task ``name``, from its ``to_dict`` form
    (as a run's ``task.json`` stores it)."""
    params_cls, _, _ = _lookup(name)
    return params_cls.from_dict(d)


def load_task(path: str | os.PathLike) -> TaskData:
    """Load a task saved by :meth:`TaskData.save`."""
    return TaskData.from_folder(path, params_from_dict)


__all__ = ["load_task", "make_params", "make_task", "params_from_dict"]
