"""The task registry: one registration makes a task first-class everywhere.

A task is a seeded generator plus what the library needs to know about it. Registering it with
:func:`register_task` makes it available to :func:`~grok_circuits.make_task`,
:func:`~grok_circuits.train`, the command line (``train``, ``report``, ``analyze``) and every
analysis. The analyses never ask which task they are looking at: they read this knowledge.

What a task contributes (all but the generator optional):

- ``make`` and ``params_cls``: the generator and its parameters dataclass (validated on
  construction, ``to_dict`` / ``from_dict``), and ``presets`` of named parameters.
- ``train_presets``: a :class:`~grok_circuits.TrainConfig` per preset name (``"tutorial"``,
  ``"paper"``); a task without a ``"paper"`` one gets the paper's recipe.
- ``model_overrides``: ``HookedTransformerConfig`` fields per model size (e.g. a 1-layer model
  with no LayerNorm for modular arithmetic).
- ``swaps``: named corruptions, each building counterfactual prompts from clean ones (see
  :data:`SwapFn`), and ``default_swap``, the one analyses use unless told otherwise. Its named
  positions are :attr:`TaskData.positions`, set by the generator.
- ``task_swaps``: where the swaps depend on a task's parameters (k-hop composition swaps ``h``
  and ``r1`` .. ``rK``), the swaps of one task; :func:`swaps_of` reads it, else ``swaps``.
- ``query_positions``: the answer positions of the task's queries, where they are several (a
  k-hop composition task's 2 .. K); default: its last named position.
- ``lens_targets``: per clean example, the intermediate tokens to look for with the logit lens and
  where (e.g. ``"bridge@r1"``: the bridge entity at the ``r1`` position).
- ``subtasks``: for a task made of several (the mixed task), a view of each, so circuits can be
  compared across them.
- ``cyclic_tokens``: token ids that form a cyclic group in order (the residues of modular
  arithmetic); analyses of the embedding's Fourier spectrum use them.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from grok_circuits.config import TrainConfig
from grok_circuits.tasks.data import Split, TaskData

Facts = Literal["id", "all"]

#: A swap: ``swap(task, clean, generator, facts=...) -> (corrupt, corrupt_answers, valid)``.
#: For each clean example of the :class:`Split` ``clean`` it returns the corrupt prompt
#: ``[batch, pos]``, the corrupt prompt's answer ``[batch]`` and whether the example has a valid
#: swap ``[batch]`` (examples without one are skipped). Draws must come from ``generator`` so that
#: a seed gives the same pairs. ``facts="id"`` asks for corrupt queries built from in-distribution
#: facts only, ``"all"`` allows any.
SwapFn = Callable[..., tuple[Tensor, Tensor, Tensor]]

#: Lens targets: ``lens_targets(task, clean) -> {name: (tokens [batch], positions [batch])}``.
LensFn = Callable[[TaskData, Split], dict[str, tuple[Tensor, Tensor]]]

#: Interchange pairs of a causal variable the task stores (e.g. composition's bridge entity):
#: ``variable(task, split, *, n_examples, facts, seed) -> PromptPairs`` whose ``corrupt`` are the
#: source prompts and whose ``corrupt_answers`` are the answers the variable, taken from the
#: source, predicts (what :func:`grok_circuits.analysis.patching.interchange.das` aligns).
VariableFn = Callable[..., Any]


@dataclass(frozen=True)
class TaskSpec:
    """Everything the library knows about one kind of task (see the module docstring)."""

    name: str
    params_cls: type
    presets: Mapping[str, Any]
    make: Callable[[Any], TaskData]
    train_presets: Mapping[str, TrainConfig] = field(default_factory=dict)
    model_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    swaps: Mapping[str, SwapFn] = field(default_factory=dict)
    default_swap: str | None = None
    lens_targets: LensFn | None = None
    task_swaps: Callable[[TaskData], Mapping[str, SwapFn]] | None = None
    query_positions: Callable[[TaskData], Sequence[int]] | None = None
    subtasks: Callable[[TaskData], dict[str, TaskData]] | None = None
    cyclic_tokens: Callable[[TaskData], Sequence[int]] | None = None
    variables: Mapping[str, VariableFn] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a task needs a non-empty string name, got {self.name!r}")
        if self.default_swap is not None and self.default_swap not in self.swaps:
            raise ValueError(
                f"task {self.name!r}: default_swap={self.default_swap!r} is not one of its swaps "
                f"{sorted(self.swaps)}"
            )
        for key, fn in [("make", self.make), *(("swap " + k, f) for k, f in self.swaps.items())]:
            if not callable(fn):
                raise ValueError(f"task {self.name!r}: {key} must be callable, got {fn!r}")


def pick_uniform(valid: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """For a swap: one uniformly drawn True column per row of ``valid`` ``[batch, candidates]``
    (the candidate chosen), and which rows had any (``valid`` of :data:`SwapFn`)."""
    scores = torch.rand(valid.shape, generator=generator)
    scores[~valid] = -1.0
    return scores.argmax(1), valid.any(1)


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(
    name: str,
    params_cls: type,
    presets: Mapping[str, Any],
    make: Callable[[Any], TaskData],
    **knowledge: Any,
) -> TaskSpec:
    """Register a task kind, built-in or your own; a later registration of the same name
    replaces the earlier one.

    Args:
        name: the name ``make_task`` and the command line take; the generator must set
            ``TaskData.name`` to it.
        params_cls: the parameters dataclass (``to_dict`` / ``from_dict``, runs store them;
            subclassing :class:`~grok_circuits.tasks.params.TaskParams` gives both).
        presets: named parameter sets, e.g. ``{"tutorial": Params(...)}``.
        make: ``make(params) -> TaskData``, deterministic in ``params`` (seed included).
        **knowledge: any other :class:`TaskSpec` field: ``train_presets``, ``model_overrides``,
            ``swaps``, ``default_swap``, ``lens_targets``, ``task_swaps``,
            ``query_positions``, ``subtasks``, ``cyclic_tokens``, ``variables``.

    Returns:
        The :class:`TaskSpec` now registered.
    """
    allowed = {f for f in TaskSpec.__dataclass_fields__} - {"name", "params_cls", "presets", "make"}
    unknown = sorted(set(knowledge) - allowed)
    if unknown:
        raise ValueError(
            f"register_task: unknown field(s) {unknown}; the fields are {sorted(allowed)}"
        )
    spec = TaskSpec(name, params_cls, dict(presets), make, **knowledge)
    _REGISTRY[name] = spec
    return spec


def task_names() -> list[str]:
    """The registered task names."""
    return sorted(_REGISTRY)


def task_spec(task: "str | TaskData") -> TaskSpec:
    """The registration of a task (by name, or of a :class:`TaskData`)."""
    name = task if isinstance(task, str) else task.name
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown task {name!r}; registered tasks are {task_names()} (register yours with "
            "grok_circuits.register_task)"
        )
    return _REGISTRY[name]


def swaps_of(task: TaskData) -> Mapping[str, SwapFn]:
    """The swaps of one task: its registration's ``task_swaps(task)``, else its ``swaps``."""
    spec = task_spec(task)
    return spec.swaps if spec.task_swaps is None else spec.task_swaps(task)


def query_positions(task: TaskData) -> tuple[int, ...]:
    """The answer positions of the task's queries (those swaps apply to)."""
    spec = task_spec(task)
    if spec.query_positions is None:
        return (max(task.positions.values()),)
    return tuple(spec.query_positions(task))


def lens_targets(task: TaskData, clean: Split) -> dict[str, tuple[Tensor, Tensor]]:
    """The task's logit-lens targets for the examples of ``clean`` (empty if it has none)."""
    spec = task_spec(task)
    if spec.lens_targets is None:
        return {}
    return {
        k: (t.long(), torch.as_tensor(p).long())
        for k, (t, p) in spec.lens_targets(task, clean).items()
    }


def subtasks(task: TaskData) -> dict[str, TaskData]:
    """The views of a task made of several (the mixed task: ``{"composition": ...,
    "comparison": ...}``); ``{task.name: task}`` for any other."""
    spec = task_spec(task)
    return spec.subtasks(task) if spec.subtasks is not None else {task.name: task}


__all__ = [
    "subtasks",
    "Facts",
    "LensFn",
    "SwapFn",
    "TaskSpec",
    "lens_targets",
    "pick_uniform",
    "query_positions",
    "register_task",
    "swaps_of",
    "task_names",
    "task_spec",
]
