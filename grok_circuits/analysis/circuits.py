"""Finding a task's circuit: causal tracing of states and components, and the components it keeps.

"Grokked Transformers are Implicit Reasoners" (Wang et al. 2024) finds the circuit of a grokked
model by **causal tracing** (Meng et al. 2022): three runs per example,

1. the *clean* run on a training query, e.g. ``<e_h> <r_1> <r_2>``;
2. a *perturbed* run, where one input token is swapped for another of the same type such that the
   answer changes (composition: ``h``, ``r1`` or ``r2``; comparison: ``e1``, ``e2`` or ``attr``;
   built by :func:`~grok_circuits.analysis.counterfactuals.make_counterfactuals`);
3. an *intervened* run: the clean input, with one hidden state replaced by its value in the
   perturbed run ("noising", :func:`~grok_circuits.analysis.causal_tracing.causal_trace` with
   ``direction="noise"``).

The **causal strength** of a state is how often the intervention changes the model's top-1
prediction (the paper's measure; ``metric="logit_difference"`` uses the drop of the clean-minus-
perturbed answer logit difference instead, normalised so that the whole swap is 1). Traced over
every (layer, position) of the residual stream (``resid_pre``; layer 0 is the embeddings), once
per swapped input token, it gives the paper's causal graph: which states carry what the answer
depends on. Composition's generalizing circuit stores the bridge entity at the r1 position around
the middle layers; comparison's retrieves both values in parallel.

For circuit *reuse* (:mod:`grok_circuits.analysis.reuse`) a circuit must be a set of
**components**. The same interventions applied to components give their scores: the output
``hook_z`` of each attention head (all positions at once; ``[layer, head]``) and the output of each
MLP (``[layer, pos]``; an MLP's score is its strongest position). A component's score is its
largest over the swaps (it is in the circuit if it carries the information of *any* input token
the answer needs), and a ``threshold`` or ``top_k`` on the scores selects the circuit.

Every circuit method here has the same signature (auto-circuit's ``PruneAlgo``)::

    method(model, task, *, subtask=None, split="train_inferred", n_examples=300,
           threshold=None, top_k=None, seed=0, ...) -> Circuit

so comparing training stages or tasks is a loop. :func:`find_circuit` is the paper's patching
method; :func:`ablation_circuit` scores each component by the accuracy lost when it alone is
mean-ablated (necessity on the data distribution, without counterfactuals).
"""

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from grok_circuits.analysis.ablation import (
    AblationMethod,
    Component,
    accuracy_under_ablation,
    all_components,
)
from grok_circuits.analysis.counterfactuals import (
    SWAPS,
    Counterfactuals,
    make_counterfactuals,
    trace_counterfactuals,
)
from grok_circuits.tasks import TaskData
from grok_circuits.tasks.mixed import mixed_subtask

#: Input tokens perturbed for causal tracing, per task (names of ``TaskData.positions``).
PERTURBATIONS: dict[str, tuple[str, ...]] = dict(SWAPS)

#: Used when neither ``threshold`` nor ``top_k`` is given: a component is in the circuit when
#: replacing it changes the answer on at least 10% of the examples (patching), or costs at
#: least 10 points of accuracy (ablation). Fixed before looking at any result, not tuned.
DEFAULT_THRESHOLD = 0.1

TraceMetric = Literal["strength", "logit_difference"]


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class Circuit:
    """A task's circuit: scores of every component, the selected components, and (for the
    patching method) the causal strength of every residual state.

    Attributes:
        task: the (sub-)task, ``"composition"`` or ``"comparison"``.
        method: ``"patching"`` (:func:`find_circuit`) or ``"ablation"`` (:func:`ablation_circuit`).
        split: the probe the examples were drawn from.
        n_examples: how many distinct examples of ``split`` were traced (patching: those with a
            swap that changes the answer, over all swaps) or scored (ablation).
        n_layers, n_heads: the model's shape.
        scores: every component's score (strength, or accuracy lost), by :class:`Component`.
        components: the circuit: the selected components, in computation order.
        threshold, top_k: the selection rule (one of them is set).
        metric: what the scores measure.
        positions: the names of the prompt positions.
        perturbations: the swapped input tokens (patching only).
        n_traced: per swap, how many examples were traced (patching only).
        state_scores: ``[perturbation, layer, pos]`` causal strength of each ``resid_pre`` state.
        head_scores: ``[perturbation, layer, head]`` score of each head's ``hook_z``.
        mlp_scores: ``[perturbation, layer, pos]`` score of each MLP output at each position.
        clean_accuracy: the model's accuracy on those ``n_examples`` examples.
    """

    task: str
    method: str
    split: str
    n_examples: int
    n_layers: int
    n_heads: int
    scores: Mapping[Component, float]
    components: tuple[Component, ...]
    threshold: float | None
    top_k: int | None
    metric: str
    positions: Mapping[str, int]
    perturbations: tuple[str, ...] = ()
    n_traced: tuple[int, ...] = ()
    state_scores: Float[Tensor, "perturbation layer pos"] | None = None
    head_scores: Float[Tensor, "perturbation layer head"] | None = None
    mlp_scores: Float[Tensor, "perturbation layer pos"] | None = None
    clean_accuracy: float = math.nan

    @property
    def heads(self) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.is_head)

    @property
    def mlps(self) -> tuple[Component, ...]:
        return tuple(c for c in self.components if not c.is_head)

    @property
    def node_strength(self) -> Float[Tensor, "layer pos"] | None:
        """Strength of each residual state, the largest over the perturbations (None for
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

    def plot(self, **kw):
        """The causal graph (states at layer x position, shaded by strength; patching only) and
        the component scores, circuit members outlined. See
        :func:`grok_circuits.viz.plot_circuit`."""
        from grok_circuits.viz.circuits import plot_circuit

        return plot_circuit(self, **kw)

    def __str__(self) -> str:
        rule = f"top_k={self.top_k}" if self.top_k is not None else f"threshold={self.threshold}"
        head = (
            f"Circuit({self.task}, {self.method}, {self.metric}, {rule}): "
            f"{len(self.components)} of {len(self.scores)} components "
            f"[{', '.join(map(str, self.components))}]\n"
            f"  {self.n_examples} examples from {self.split!r}, "
            f"clean accuracy {self.clean_accuracy:.3f}"
        )
        ranked = sorted(self.scores.items(), key=lambda kv: (-kv[1], kv[0].sort_key()))[:8]
        lines = [f"  {'component':>9}  {'score':>6}  in"]
        lines += [
            f"  {str(c):>9}  {s:6.3f}  {'*' if c in self.components else ''}" for c, s in ranked
        ]
        return "\n".join([head, *lines])

    __repr__ = __str__


class CircuitMethod(Protocol):
    """The signature every circuit method shares."""

    def __call__(
        self,
        model: HookedTransformer,
        task: TaskData,
        *,
        subtask: str | None = None,
        split: str = "train_inferred",
        n_examples: int = 300,
        threshold: float | None = None,
        top_k: int | None = None,
        seed: int = 0,
    ) -> Circuit: ...


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
    else:
        chosen = [c for c, s in scores.items() if s >= threshold]
    return tuple(sorted(chosen, key=Component.sort_key))


# ----------------------------------------------------------------------------- the data
def resolve_task(task: TaskData, subtask: str | None) -> TaskData:
    """The task a circuit method analyses: ``task`` itself, or one sub-task of a mixed task."""
    if task.name == "mixed":
        if subtask is None:
            raise ValueError(
                "this is a mixed task: pass subtask='composition' or subtask='comparison' to "
                "say whose circuit to find"
            )
        return mixed_subtask(task, subtask)
    if subtask is not None:
        return mixed_subtask(task, subtask)  # raises unless subtask is the task's own name
    if task.name not in PERTURBATIONS:
        raise ValueError(
            f"no circuit analysis for task {task.name!r}; have {sorted(PERTURBATIONS)}"
        )
    return task


def _check_split(task: TaskData, split: str, n_examples: int) -> None:
    if split not in task.splits:
        raise ValueError(
            f"no split {split!r} in the {task.name} task; choose one of {list(task.splits)}"
        )
    if len(task.splits[split]) == 0:
        raise ValueError(f"split {split!r} of the {task.name} task is empty")
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")


# ----------------------------------------------------------------------------- methods
@torch.no_grad()
def find_circuit(
    model: HookedTransformer,
    task: TaskData,
    *,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    threshold: float | None = None,
    top_k: int | None = None,
    seed: int = 0,
    metric: TraceMetric = "strength",
    perturb: Sequence[str] | None = None,
    facts: Literal["id", "all"] = "id",
) -> Circuit:
    """The paper's causal tracing, for the residual states and for every component.

    For each perturbed token, :func:`~grok_circuits.analysis.make_counterfactuals` draws up to
    ``n_examples`` examples of ``split`` that have a swap changing the answer, and
    :func:`~grok_circuits.analysis.trace_counterfactuals` noises (``direction="noise"``)
    ``resid_pre`` at each (layer, position), each head's ``hook_z`` at all positions, and
    ``mlp_out`` at each (layer, position).

    Args:
        model: the (grokked) model.
        task: the task it was trained on.
        subtask: for a mixed task, ``"composition"`` or ``"comparison"``: whose circuit.
        split: the probe to draw the examples from (the paper: training inferred facts).
        n_examples: examples per perturbed token (the paper: 300).
        threshold: select components whose score is ``>= threshold``...
        top_k: ...or the ``top_k`` highest-scoring ones (default: ``DEFAULT_THRESHOLD``).
        seed: seeds the examples and the swapped tokens.
        metric: ``"strength"`` (the fraction of examples whose top-1 prediction changes; the
            paper) or ``"logit_difference"`` (the drop of the clean-minus-corrupt answer logit
            difference, normalised: 0 = no effect, 1 = the whole effect of the swap).
        perturb: the input tokens to swap (default: all of :data:`PERTURBATIONS`).
        facts: build the swapped queries from ``"id"`` atomic facts only (default) or ``"all"``.

    Returns:
        A :class:`Circuit` with ``state_scores``, ``head_scores``, ``mlp_scores`` and the
        selected components.
    """
    threshold, top_k = _selection_rule(threshold, top_k)
    if metric not in ("strength", "logit_difference"):
        raise ValueError(f"metric must be 'strength' or 'logit_difference', got {metric!r}")
    task = resolve_task(task, subtask)
    _check_split(task, split, n_examples)
    perturb = tuple(PERTURBATIONS[task.name] if perturb is None else perturb)
    if not perturb:
        raise ValueError("perturb is empty; name at least one input token to swap")

    def score(cf: Counterfactuals, activation: str, **kw) -> Tensor:
        trace = trace_counterfactuals(
            model, cf, metric=metric, activation=activation, direction="noise", **kw
        )
        s = trace.scores if metric == "strength" else trace.normalized
        return s.detach().float().cpu()

    states, heads, mlps, traced, rows = [], [], [], [], []
    for swap in perturb:
        cf = make_counterfactuals(task, swap, split, n_examples=n_examples, facts=facts, seed=seed)
        traced.append(len(cf))
        rows.append(cf.index)
        states.append(score(cf, "resid_pre"))  # [layer, pos]
        heads.append(score(cf, "z", per_position=False))  # [layer, head], all positions at once
        mlps.append(score(cf, "mlp_out"))  # [layer, pos]

    state_scores, head_scores = torch.stack(states), torch.stack(heads)
    mlp_scores = torch.stack(mlps)
    # A component's score: its largest over the perturbations (and, for MLPs, positions).
    head_best, mlp_best = head_scores.amax(0), mlp_scores.amax(dim=(0, 2))
    scores = {
        c: float(head_best[c.layer, c.head] if c.is_head else mlp_best[c.layer])
        for c in all_components(model)
    }
    examples = task.splits[split].select(torch.unique(torch.cat(rows)))
    return Circuit(
        task=task.name,
        method="patching",
        split=split,
        n_examples=len(examples),
        n_layers=model.cfg.n_layers,
        n_heads=model.cfg.n_heads,
        scores=scores,
        components=select_components(scores, threshold=threshold, top_k=top_k),
        threshold=threshold,
        top_k=top_k,
        metric=metric,
        positions=dict(task.positions),
        perturbations=perturb,
        n_traced=tuple(traced),
        state_scores=state_scores,
        head_scores=head_scores,
        mlp_scores=mlp_scores,
        clean_accuracy=accuracy_under_ablation(model, examples, []),
    )


def ablation_circuit(
    model: HookedTransformer,
    task: TaskData,
    *,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    threshold: float | None = None,
    top_k: int | None = None,
    seed: int = 0,
    method: AblationMethod = "mean",
) -> Circuit:
    """Score each component by the accuracy lost when it alone is ablated (at every position,
    with the mean or a resample over the same examples), and select the circuit.

    Same arguments as :func:`find_circuit`, plus ``method`` (``"mean"`` or ``"resample"``).
    """
    threshold, top_k = _selection_rule(threshold, top_k)
    task = resolve_task(task, subtask)
    _check_split(task, split, n_examples)
    examples = task.splits[split].sample(n_examples, seed)
    clean = accuracy_under_ablation(model, examples, [])
    scores = {
        c: clean - accuracy_under_ablation(model, examples, [c], method=method, seed=seed)
        for c in all_components(model)
    }
    return Circuit(
        task=task.name,
        method="ablation",
        split=split,
        n_examples=len(examples),
        n_layers=model.cfg.n_layers,
        n_heads=model.cfg.n_heads,
        scores=scores,
        components=select_components(scores, threshold=threshold, top_k=top_k),
        threshold=threshold,
        top_k=top_k,
        metric=f"accuracy lost ({method} ablation)",
        positions=dict(task.positions),
        clean_accuracy=clean,
    )


#: The circuit methods by name; each has the :class:`CircuitMethod` signature.
CIRCUIT_METHODS: dict[str, CircuitMethod] = {
    "patching": find_circuit,
    "ablation": ablation_circuit,
}
