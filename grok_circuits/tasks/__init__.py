"""Seeded, paper-faithful generators of the grokking tasks.

``make_task("composition", preset="tutorial", phi=9.0)`` builds a task from a named preset
(``"paper"`` or ``"tutorial"``), with explicit parameters overriding the preset.
"""

from grok_circuits.tasks.comparison import ComparisonParams, value_gap
from grok_circuits.tasks.complex import ComplexParams, complex_baselines
from grok_circuits.tasks.composition import CompositionParams
from grok_circuits.tasks.data import PROBES, Split, TaskData
from grok_circuits.tasks.make import load_task, make_params, make_task, params_from_dict
from grok_circuits.tasks.mixed import MixedParams, mixed_subtask
from grok_circuits.tasks.modular import ModularParams, op_pairs
from grok_circuits.tasks.pairs import Counterfactuals, PromptPairs, make_pairs
from grok_circuits.tasks.params import TaskParams
from grok_circuits.tasks.registry import TaskSpec, register_task, subtasks, task_names, task_spec
from grok_circuits.tasks.vocab import Vocab

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
    "TaskParams",
    "TaskSpec",
    "Vocab",
    "complex_baselines",
    "load_task",
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
    "value_gap",
]
