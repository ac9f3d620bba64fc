"""Finding a circuit: score every component with a circuit method, keep the ones that matter.

For circuit *reuse* (:mod:`grok_circuits.analysis.circuits.reuse`) a circuit must be a set of
**components**: the attention heads and MLPs of :mod:`grok_circuits.analysis.components`. A
circuit method scores every component on prompt pairs; a ``threshold`` or ``top_k`` on the scores
selects the circuit. One call, one signature, whatever the model, the data and the method
(auto-circuit's ``PruneAlgo`` takes ``(model, data)`` the same way)::

    find_circuit(model, data, *, method="patching", top_k=None, threshold=None, ...)

``data`` is :class:`~grok_circuits.PromptPairs` (or a list of them, one per swapped token), or a
registered task, whose swaps build them. Comparing training stages or tasks is then a loop over
models or data.

The methods are registered by name in :data:`METHODS`:

- ``"patching"`` (:mod:`~grok_circuits.analysis.circuits.patching`): the paper's causal tracing
  (Wang et al. 2024); a component's score is how often noising it with its value on the corrupt
  prompt changes the answer; it also traces the residual states, the causal graph.
- ``"ablation"`` (:mod:`~grok_circuits.analysis.circuits.ablation`): the accuracy lost when a
  component alone is ablated (mean or resample), on the clean prompts; no counterfactual needed.

Adding a circuit method
-----------------------
A method is one function with the signature every method has::

    def my_scores(model, pairs, components, *, seed=0, **its_options) -> dict[Component, float]:
        ...

``pairs`` is a list of :class:`~grok_circuits.PromptPairs` already checked to fit the model (one
set per swap of a task, or the pairs the user gave); ``components`` the components to score
(every head and MLP); ``seed`` seeds any random draw; the return value has a score for each
component, higher meaning more important (return a
:class:`~grok_circuits.analysis.circuits.scores.Scores` to also say what the scores measure).
Register it by name, in the file that defines it::

    register_circuit_method("my-method", my_scores)
    find_circuit(model, task, method="my-method", top_k=5)

A method that reads only the clean prompts registers with ``clean_only=True``: from a task it is
then given ``n_examples`` examples of ``split`` instead of one set of pairs per swap. Options
beyond ``seed`` reach it through :func:`find_circuit`'s ``metric=``, ``ablation=`` and
``batch_size=`` when it declares them (any other is refused in one line), or are bound with
``functools.partial`` when registering. ``tests/analysis/circuits/test_planted_circuit.py``
registers a method that way and finds the planted circuit with it.
"""

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis._inputs import (
    Data,
    as_pairs,
    check_task_fits,
    resolve_subtask,
    swap_pairs,
)
from grok_circuits.analysis.circuits.ablation import ablation_scores, distinct_clean
from grok_circuits.analysis.circuits.patching import patching_scores
from grok_circuits.analysis.circuits.scores import Scores
from grok_circuits.analysis.components import Component, all_components
from grok_circuits.analysis.metrics import PAIR_METRICS, PairMetric, metric_label, metric_name
from grok_circuits.analysis.patching.ablation import Ablation, accuracy_under_ablation
from grok_circuits.backend import Model
from grok_circuits.tasks import PromptPairs, TaskData
from grok_circuits.tasks.registry import Facts

#: Used when neither ``threshold`` nor ``top_k`` is given: a component is in the circuit when
#: replacing it changes the answer on at least 10% of the examples (patching), or costs at
#: least 10 points of accuracy (ablation). Fixed before looking at any result, not tuned.
DEFAULT_THRESHOLD = 0.1

#: A circuit method: ``fn(model, pairs, components, *, seed, **options) -> {Component: score}``.
CircuitMethod = Callable[..., Mapping[Component, float]]


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class Circuit:
    """A circuit: scores of every component, the selected components, and (for a method that
    traces the residual stream, such as patching) the causal strength of every residual state.

    Attributes:
        task: the (sub-)task's name, or None for pairs built by hand.
        method: the circuit method's registered name, e.g. ``"patching"`` or ``"ablation"``.
        split: the probe the examples were drawn from (None for pairs built by hand).
        n_examples: how many distinct clean prompts the method read (over all swaps).
        n_layers, n_heads: the model's shape.
        scores: every component's score (strength, or accuracy lost), by :class:`Component`.
        components: the circuit: the selected components, in computation order.
        threshold, top_k: the selection rule (one of them is set).
        metric: what the scores measure.
        positions: the names of the prompt positions.
        swaps: what each set of pairs swapped (methods that read counterfactual pairs).
        n_traced: per swap, how many pairs the method read (the same methods).
        state_scores: ``[swap, layer, pos]`` causal strength of each ``resid_pre`` state.
        head_scores: ``[swap, layer, head]`` score of each head's ``hook_z``.
        mlp_scores: ``[swap, layer, pos]`` score of each MLP output at each position.
        clean_accuracy: the model's accuracy on those ``n_examples`` examples.
    """

    task: str | None
    method: str
    split: str | None
    n_examples: int
    n_layers: int
    n_heads: int
    scores: Mapping[Component, float]
    components: tuple[Component, ...]
    threshold: float | None
    top_k: int | None
    metric: str
    positions: Mapping[str, int]
    swaps: tuple[str, ...] = ()
    n_traced: tuple[int, ...] = ()
    state_scores: Float[Tensor, "swap layer pos"] | None = None
    head_scores: Float[Tensor, "swap layer head"] | None = None
    mlp_scores: Float[Tensor, "swap layer pos"] | None = None
    clean_accuracy: float = math.nan

    @property
    def heads(self) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.is_head)

    @property
    def mlps(self) -> tuple[Component, ...]:
        return tuple(c for c in self.components if not c.is_head)

    @property
    def score_label(self) -> str:
        """What the state scores measure, as an axis label (a pair metric's label, see
        :func:`~grok_circuits.analysis.metrics.metric_label`; else the metric's name)."""
        return metric_label(self.metric) if self.metric in PAIR_METRICS else self.metric

    @property
    def score_name(self) -> str:
        """A short name of what the scores measure (``"strength"``, ``"logit diff removed"``,
        or the method's own metric)."""
        return metric_name(self.metric) if self.metric in PAIR_METRICS else self.metric

    @property
    def node_strength(self) -> Float[Tensor, "layer pos"] | None:
        """Strength of each residual state, the largest over the swaps (None for
        methods that do not trace states)."""
        return None if self.state_scores is None else self.state_scores.amax(0)

    def score(self, c: "Component | str | tuple[int, ...]") -> float:
        """The score of one component, given as ``Component``, ``"L2H1"``, ``(2, 1)``, ..."""
        return self.scores[Component.parse(c)]

    def __contains__(self, c) -> bool:
        return Component.parse(c) in self.components

    def __len__(self) -> int:
        return len(self.components)

    def select(self, *, threshold: float | None = None, top_k: int | None = None) -> "Circuit":
        """The same scores with another selection rule (nothing is recomputed)."""
        threshold, top_k = _selection_rule(threshold, top_k)
        return dataclasses.replace(
            self,
            components=select_components(self.scores, threshold=threshold, top_k=top_k),
            threshold=threshold,
            top_k=top_k,
        )

    def to_frame(self):
        """One row per component: kind, layer, head, score, and whether it is in the circuit;
        sorted by score."""
        import pandas as pd

        rows = [
            {
                "component": str(c),
                "kind": c.kind,
                "layer": c.layer,
                "head": c.head,
                "score": s,
                "in_circuit": c in self.components,
            }
            for c, s in self.scores.items()
        ]
        df = pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable")
        df["head"] = df["head"].astype("Int64")  # MLPs have no head: <NA>, not a float NaN
        return df.set_index("component")

    def summary(self) -> dict:
        """The headline numbers: the circuit's size (heads and MLPs), the largest score, and the
        clean accuracy on the examples the method read."""
        finite = [s for s in self.scores.values() if not math.isnan(s)]
        return {
            "size": len(self.components),
            "heads": len(self.heads),
            "mlps": len(self.mlps),
            "max_score": max(finite) if finite else math.nan,
            "clean_accuracy": self.clean_accuracy,
            "n_examples": self.n_examples,
        }

    def plot(self, ax=None, *, title: str | None = None, **options):
        """The causal graph (states at layer x position, shaded by strength; methods that trace
        states) next to the component scores, circuit members outlined; a circuit without state
        scores draws only the component scores, and only such a one can take an ``ax``.
        ``options``: ``min_strength``, ``step``. See :func:`grok_circuits.viz.plot_circuit`."""
        from grok_circuits.viz.circuits import plot_circuit

        return plot_circuit(self, ax, title=title, **options)

    def __str__(self) -> str:
        rule = f"top_k={self.top_k}" if self.top_k is not None else f"threshold={self.threshold}"
        head = (
            f"Circuit({self.task or 'pairs'}, {self.method}, {self.metric}, {rule}): "
            f"{len(self.components)} of {len(self.scores)} components "
            f"[{', '.join(map(str, self.components))}]\n"
            f"  {self.n_examples} examples from {self.split or 'the pairs'!r}, "
            f"clean accuracy {self.clean_accuracy:.3f}"
        )
        ranked = sorted(self.scores.items(), key=lambda kv: (-kv[1], kv[0].sort_key()))[:8]
        lines = [f"  {'component':>9}  {'score':>6}  in"]
        lines += [
            f"  {str(c):>9}  {s:6.3f}  {'*' if c in self.components else ''}" for c, s in ranked
        ]
        return "\n".join([head, *lines])

    __repr__ = __str__


# ----------------------------------------------------------------------------- selection
def _selection_rule(threshold: float | None, top_k: int | None) -> tuple[float | None, int | None]:
    if threshold is not None and top_k is not None:
        raise ValueError(
            f"pass threshold or top_k, not both (got threshold={threshold}, top_k={top_k})"
        )
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if threshold is None and top_k is None:
        threshold = DEFAULT_THRESHOLD
    return threshold, top_k


def select_components(
    scores: Mapping[Component, float], *, threshold: float | None = None, top_k: int | None = None
) -> tuple[Component, ...]:
    """The components scoring ``>= threshold``, or the ``top_k`` highest (ties broken by
    computation order, so the result is deterministic); returned in computation order. A NaN
    score (a swap with no effect to normalise by) ranks last and passes no threshold."""
    if top_k is not None:

        def rank(c: Component) -> tuple[float, tuple[int, int]]:
            s = scores[c]
            return (math.inf if math.isnan(s) else -s, c.sort_key())

        ranked = sorted(scores, key=rank)
        chosen = ranked[: min(top_k, len(ranked))]
    elif threshold is not None:
        chosen = [c for c, s in scores.items() if s >= threshold]
    else:
        raise ValueError("select_components needs a rule: pass threshold= or top_k=")
    return tuple(sorted(chosen, key=Component.sort_key))


# ----------------------------------------------------------------------------- the registry
#: The circuit methods by name: ``METHODS[name](model, pairs, components, *, seed, **options)``.
METHODS: dict[str, CircuitMethod] = {}
#: The registered methods that read only the clean prompts (from a task: plain examples).
_CLEAN_ONLY: set[str] = set()


def register_circuit_method(name: str, fn: CircuitMethod, *, clean_only: bool = False) -> None:
    """Make ``fn`` available as ``find_circuit(..., method=name)`` (see "Adding a circuit
    method" above).

    Args:
        name: the method's name; a name already registered is refused.
        fn: ``fn(model, pairs, components, *, seed, **options) -> {Component: score}``.
        clean_only: the method reads only the pairs' clean prompts, so from a task it is given
            ``n_examples`` examples of the split (as pairs whose corrupt prompt is the clean
            one) instead of one set of counterfactual pairs per swap.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a circuit method needs a non-empty string name, got {name!r}")
    if name in METHODS:
        raise ValueError(
            f"circuit method {name!r} is already registered; register yours under another name"
        )
    if not callable(fn):
        raise ValueError(f"circuit method {name!r} must be callable, got {fn!r}")
    METHODS[name] = fn
    if clean_only:
        _CLEAN_ONLY.add(name)


register_circuit_method("patching", patching_scores)
register_circuit_method("ablation", ablation_scores, clean_only=True)


def _method(name: str) -> CircuitMethod:
    if name not in METHODS:
        raise ValueError(
            f"unknown circuit method {name!r}; the methods are {sorted(METHODS)} (add one with "
            "register_circuit_method)"
        )
    return METHODS[name]


def method_options(name: str) -> tuple[str, ...] | None:
    """The keyword options the registered method ``name`` takes besides ``seed`` (None: it
    takes any, through ``**options``)."""
    params = inspect.signature(_method(name)).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "seed")


# ----------------------------------------------------------------------------- finding
def method_pairs(
    model: Model,
    data: Data | Sequence[PromptPairs],
    method: str,
    *,
    swap: str | None = None,
    swaps: Sequence[str] | None = None,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> tuple[list[PromptPairs], TaskData | None]:
    """The pairs circuit method ``method`` reads, checked to fit the model, and the (sub-)task
    they come from (None for pairs given): for a task, one set per swap (``swaps``, or
    ``swap`` alone; default: every swap the task registers), or for a ``clean_only`` method
    ``n_examples`` examples of ``split`` drawn by ``seed``."""
    _method(method)
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    if swap is not None:
        if swaps is not None:
            raise ValueError(f"pass swap= or swaps=, not both (got {swap!r} and {swaps!r})")
        swaps = (swap,)
    if not isinstance(data, TaskData):
        if subtask is not None:
            raise ValueError(
                "subtask= chooses how pairs are built from a task; these are pairs already "
                "(build others with make_pairs)"
            )
        return swap_pairs(model, data, swaps=swaps), None
    task = resolve_subtask(check_task_fits(model, data), subtask)
    if split not in task.splits or len(task.splits[split]) == 0:
        raise ValueError(
            f"no examples in split {split!r} of the {task.name} task; choose one of "
            f"{[k for k, v in task.splits.items() if len(v)]}"
        )
    if method in _CLEAN_ONLY:
        if swaps is not None:
            raise ValueError(
                f"swap= and swaps= choose counterfactual pairs; method={method!r} reads only the "
                "clean prompts (drop them)"
            )
        examples = task.splits[split].sample(n_examples, seed)
        return [as_pairs(model, PromptPairs.from_split(examples))], task
    pairs = swap_pairs(
        model, task, swaps=swaps, split=split, n_examples=n_examples, facts=facts, seed=seed
    )
    return pairs, task


def check_options(method: str, options: Mapping[str, object]) -> None:
    """Raise a ``ValueError`` unless ``method`` takes every one of ``options``."""
    known = method_options(method)
    if known is None:  # the method takes any option
        return
    unknown = [k for k in options if k not in known]
    if unknown:
        takes = ", ".join(f"{k}=" for k in known) or "no option"
        raise ValueError(
            f"method={method!r} takes no option {', '.join(f'{k}=' for k in unknown)}; it takes "
            f"{takes}"
        )


def circuit_from_pairs(
    model: Model,
    pairs: Sequence[PromptPairs],
    *,
    method: str = "patching",
    options: Mapping[str, object] | None = None,
    seed: int = 0,
    top_k: int | None = None,
    threshold: float | None = None,
    task: TaskData | None = None,
    split: str | None = None,
) -> Circuit:
    """:func:`find_circuit` on pairs already converted by :func:`method_pairs` (not checked
    again): scores every component with ``METHODS[method]`` and selects the circuit.
    ``options`` go to the method (checked by :func:`check_options`)."""
    threshold, top_k = _selection_rule(threshold, top_k)
    options = dict(options or {})
    check_options(method, options)
    components = all_components(model)
    found = _method(method)(model, pairs, components, seed=seed, **options)
    missing = [str(c) for c in components if c not in found]
    if missing:
        raise ValueError(
            f"circuit method {method!r} returned no score for {', '.join(missing)}; a method "
            "scores every component it is given"
        )
    extra = found if isinstance(found, Scores) else Scores({})
    scores = {c: float(found[c]) for c in components}
    examples = distinct_clean(pairs)
    counterfactual = method not in _CLEAN_ONLY
    with torch.no_grad():
        clean_accuracy = accuracy_under_ablation(model, examples, [])
    return Circuit(
        task=None if task is None else task.name,
        method=method,
        split=None if task is None else split,
        n_examples=len(examples),
        n_layers=model.cfg.n_layers,
        n_heads=model.cfg.n_heads,
        scores=scores,
        components=select_components(scores, threshold=threshold, top_k=top_k),
        threshold=threshold,
        top_k=top_k,
        metric=extra.metric or method,
        positions=dict(task.positions) if task is not None else pairs[0].positions,
        swaps=tuple(p.swap or f"pairs {k}" for k, p in enumerate(pairs)) if counterfactual else (),
        n_traced=tuple(len(p) for p in pairs) if counterfactual else (),
        state_scores=extra.state_scores,
        head_scores=extra.head_scores,
        mlp_scores=extra.mlp_scores,
        clean_accuracy=clean_accuracy,
    )


def find_circuit(
    model: Model,
    data: Data | Sequence[PromptPairs],
    *,
    method: str = "patching",
    top_k: int | None = None,
    threshold: float | None = None,
    metric: PairMetric | None = None,
    ablation: Ablation | None = None,
    batch_size: int | None = None,
    swaps: Sequence[str] | None = None,
    swap: str | None = None,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> Circuit:
    """A circuit: every component's score by a circuit method, and the components selected by
    ``top_k`` or ``threshold``.

    Args:
        model: any model (``HookedTransformer`` or ``TransformerBridge``).
        data: :class:`~grok_circuits.PromptPairs` or a list of them (one per swapped token;
            patching scores a component by its largest over them), or a registered task: then
            pairs are drawn from ``split`` for each of its ``swaps`` (default: all it
            registers), as the paper does.
        method: a name in :data:`METHODS`: ``"patching"`` (the paper's causal tracing; also
            gives the causal graph of the residual states) or ``"ablation"`` (accuracy lost when
            a component alone is ablated, on the distinct clean prompts).
        top_k: select the ``top_k`` highest-scoring components...
        threshold: ...or those scoring ``>= threshold`` (default: ``DEFAULT_THRESHOLD``).
        metric: patching's score, ``"strength"`` (its default: the fraction of examples whose
            top-1 prediction changes; the paper) or ``"logit_difference"`` (the drop of the
            clean-minus-corrupt answer logit difference, normalised: 0 = no effect, 1 = the
            whole effect of the swap).
        ablation: ablation's kind, ``"mean"`` (its default) or ``"resample"``.
        batch_size: rows per forward pass (default: the method's).
        swaps, swap: which of a task's swaps build the pairs (default: all it registers).
        subtask, split, n_examples, facts, seed: how pairs are built from a task (``subtask``
            names one sub-task of a mixed task; ``n_examples`` per swap, the paper: 300); for
            ``method="ablation"`` on a task, ``n_examples`` examples of ``split`` drawn by
            ``seed`` are scored. ``seed`` also seeds the method's own random draws.

    ``metric``, ``ablation`` and ``batch_size`` go to the method when given; a method that does
    not take one refuses it.

    Returns:
        A :class:`Circuit`.
    """
    threshold, top_k = _selection_rule(threshold, top_k)
    options = {
        k: v
        for k, v in (("metric", metric), ("ablation", ablation), ("batch_size", batch_size))
        if v is not None
    }
    check_options(method, options)
    pairs, task = method_pairs(
        model,
        data,
        method,
        swap=swap,
        swaps=swaps,
        subtask=subtask,
        split=split,
        n_examples=n_examples,
        facts=facts,
        seed=seed,
    )
    return circuit_from_pairs(
        model,
        pairs,
        method=method,
        options=options,
        seed=seed,
        top_k=top_k,
        threshold=threshold,
        task=task,
        split=split,
    )


__all__ = [
    "DEFAULT_THRESHOLD",
    "METHODS",
    "Circuit",
    "CircuitMethod",
    "Scores",
    "circuit_from_pairs",
    "distinct_clean",
    "find_circuit",
    "method_options",
    "method_pairs",
    "register_circuit_method",
    "select_components",
]
