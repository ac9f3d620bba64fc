"""Finding a task's circuit: causal tracing of states and components, and the components it keeps.

"Grokked Transformers are Implicit Reasoners" (Wang et al. 2024) finds the circuit of a grokked
model by **causal tracing** (Meng et al. 2022): three runs per example,

1. the *clean* run on a training query, e.g. ``<e_h> <r_1> <r_2>``;
2. a *perturbed* run, where one input token is swapped for another of the same type such that the
   answer changes (composition: ``h``, ``r1`` or ``r2``; comparison: ``e1``, ``e2`` or ``attr``;
   built by :func:`~grok_circuits.make_pairs`);
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

For circuit *reuse* (:mod:`grok_circuits.analysis.circuits.reuse`) a circuit must be a set of
**components**. The same interventions applied to components give their scores: the output
``hook_z`` of each attention head (all positions at once; ``[layer, head]``) and the output of each
MLP (``[layer, pos]``; an MLP's score is its strongest position). A component's score is its
largest over the swaps (it is in the circuit if it carries the information of *any* input token
the answer needs), and a ``threshold`` or ``top_k`` on the scores selects the circuit.

One call, one signature, whatever the model and the data (auto-circuit's ``PruneAlgo`` takes
``(model, data)`` the same way)::

    find_circuit(model, pairs, *, top_k=None, threshold=None, method="patching" | "ablation")

``pairs`` is :class:`~grok_circuits.PromptPairs` (or a list of them, one per swapped token), or a
registered task, whose every swap builds them. ``method="patching"`` is the paper's causal
tracing; ``method="ablation"`` scores each component by the accuracy lost when it alone is
ablated (mean or resample, ``ablation=``; necessity on the clean prompts, no counterfactual
needed). Comparing training stages or tasks is then a loop over models or data.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis._inputs import (
    Data,
    check_fits,
    check_task_fits,
    resolve_subtask,
    swap_pairs,
)
from grok_circuits.analysis.components import Component, all_components
from grok_circuits.analysis.metrics import PairMetric, check_metric, no_effect_error
from grok_circuits.analysis.patching.ablation import (
    Ablation,
    accuracy_under_ablation,
)
from grok_circuits.analysis.patching.causal_trace import CausalTrace, trace_pairs
from grok_circuits.backend import Model
from grok_circuits.tasks import PromptPairs, Split, TaskData
from grok_circuits.tasks.registry import Facts

#: Used when neither ``threshold`` nor ``top_k`` is given: a component is in the circuit when
#: replacing it changes the answer on at least 10% of the examples (patching), or costs at
#: least 10 points of accuracy (ablation). Fixed before looking at any result, not tuned.
DEFAULT_THRESHOLD = 0.1

CircuitMethod = Literal["patching", "ablation"]


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class Circuit:
    """A task's circuit: scores of every component, the selected components, and (for the
    patching method) the causal strength of every residual state.

    Attributes:
        task: the (sub-)task's name, or None for pairs built by hand.
        method: ``"patching"`` or ``"ablation"``.
        split: the probe the examples were drawn from (None for pairs built by hand).
        n_examples: how many distinct clean prompts were traced (patching: over all swaps) or
            scored (ablation).
        n_layers, n_heads: the model's shape.
        scores: every component's score (strength, or accuracy lost), by :class:`Component`.
        components: the circuit: the selected components, in computation order.
        threshold, top_k: the selection rule (one of them is set).
        metric: what the scores measure.
        positions: the names of the prompt positions.
        swaps: what each set of pairs swapped (patching only).
        n_traced: per swap, how many examples were traced (patching only).
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

    def plot(self, **kw):
        """The causal graph (states at layer x position, shaded by strength; patching only) and
        the component scores, circuit members outlined. See
        :func:`grok_circuits.viz.plot_circuit`."""
        from grok_circuits.viz.circuits import plot_circuit

        return plot_circuit(self, **kw)

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
    else:
        chosen = [c for c, s in scores.items() if s >= threshold]
    return tuple(sorted(chosen, key=Component.sort_key))


# ----------------------------------------------------------------------------- the methods
def distinct_clean(pairs: Sequence[PromptPairs]) -> Split:
    """The distinct clean prompts of ``pairs`` (two pairs with one clean prompt and answer
    position are one example), in first-seen order."""
    seen: dict[tuple, int] = {}
    rows = []
    for k, p in enumerate(pairs):
        for i, (row, pos) in enumerate(zip(p.clean.tolist(), p.answer_pos.tolist())):
            key = (tuple(row), pos)
            if key not in seen:
                seen[key] = len(rows)
                rows.append((k, i))
    return Split.concat([pairs[k].clean_split().select(slice(i, i + 1)) for k, i in rows], 0)


def patching_scores(
    model: Model,
    pairs: Sequence[PromptPairs],
    *,
    metric: PairMetric = "strength",
    batch_size: int = 2048,
) -> dict:
    """The paper's causal tracing, per set of pairs: ``resid_pre`` at each (layer, position),
    each head's ``hook_z`` at all positions, ``mlp_out`` at each (layer, position). Scores are
    the strength, or the normalised drop of the logit difference (0 = no effect, 1 = the whole
    effect of the swap). A component's score is its largest over the pairs (and, for an MLP,
    its positions).

    Pairs of which no set changes the metric are refused, as :func:`~grok_circuits.faithfulness`
    refuses them: the normalised logit difference would be 0/0 everywhere, and pairs that swap
    no token give nothing to trace. (A model whose top-1 prediction no swap changes, such as an
    early checkpoint, scores an honest 0 in strength: no component passes a threshold.)"""

    def trace(p: PromptPairs, activation: str, **kw) -> CausalTrace:
        return trace_pairs(
            model, p, metric=metric, activation=activation, batch_size=batch_size, **kw
        )

    def score(t: CausalTrace) -> Tensor:
        s = t.scores if metric == "strength" else t.normalized
        return s.detach().float().cpu()

    state_traces = [trace(p, "resid_pre") for p in pairs]
    no_swap = all(torch.equal(p.clean, p.corrupt) for p in pairs)
    no_effect = all(abs(t.source - t.baseline) < 1e-9 for t in state_traces)
    if no_effect and (metric == "logit_difference" or no_swap):
        change = "running the corrupt prompts instead of the clean ones"
        raise no_effect_error(change, state_traces[0].baseline)
    states = torch.stack([score(t) for t in state_traces])  # [swap, layer, pos]
    heads = torch.stack([score(trace(p, "z", per_position=False)) for p in pairs])
    mlps = torch.stack([score(trace(p, "mlp_out")) for p in pairs])  # [swap, layer, pos]
    head_best, mlp_best = heads.amax(0), mlps.amax(dim=(0, 2))
    scores = {
        c: float(head_best[c.layer, c.head] if c.is_head else mlp_best[c.layer])
        for c in all_components(model)
    }
    return dict(scores=scores, state_scores=states, head_scores=heads, mlp_scores=mlps)


def ablation_scores(
    model: Model, examples: Split, *, ablation: Ablation = "mean", seed: int = 0
) -> dict:
    """Each component's score: the accuracy lost on ``examples`` when it alone is ablated (at
    every position, with the mean of or a resample from the same examples)."""
    clean = accuracy_under_ablation(model, examples, [])
    scores = {
        c: clean - accuracy_under_ablation(model, examples, [c], ablation=ablation, seed=seed)
        for c in all_components(model)
    }
    return dict(scores=scores)


#: The circuit methods by name: how :func:`find_circuit` scores the components.
CIRCUIT_METHODS: dict[str, Callable[..., dict]] = {
    "patching": patching_scores,
    "ablation": ablation_scores,
}


@torch.no_grad()
def find_circuit(
    model: Model,
    pairs: Data | Sequence[PromptPairs],
    *,
    top_k: int | None = None,
    threshold: float | None = None,
    method: CircuitMethod = "patching",
    metric: PairMetric = "strength",
    ablation: Ablation = "mean",
    swaps: Sequence[str] | None = None,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
    batch_size: int = 2048,
) -> Circuit:
    """A circuit: every component's score, and the components selected by ``top_k`` or
    ``threshold``.

    Args:
        model: any model (``HookedTransformer`` or ``TransformerBridge``).
        pairs: :class:`~grok_circuits.PromptPairs` or a list of them (one per swapped token;
            a component's score is its largest over them), or a registered task: then pairs are
            drawn from ``split`` for each of its ``swaps`` (default: all it registers), as the
            paper does.
        top_k: select the ``top_k`` highest-scoring components...
        threshold: ...or those scoring ``>= threshold`` (default: ``DEFAULT_THRESHOLD``).
        method: ``"patching"`` (the paper's causal tracing; also gives the causal graph of the
            residual states) or ``"ablation"`` (accuracy lost when a component alone is ablated,
            on the distinct clean prompts).
        metric: patching's score, ``"strength"`` (the fraction of examples whose top-1
            prediction changes; the paper) or ``"logit_difference"`` (the drop of the
            clean-minus-corrupt answer logit difference, normalised: 0 = no effect, 1 = the
            whole effect of the swap).
        ablation: ablation's kind, ``"mean"`` or ``"resample"``.
        swaps, subtask, split, n_examples, facts, seed: how pairs are built from a task
            (``subtask`` names one sub-task of a mixed task; ``n_examples`` per swap, the paper:
            300). For ``method="ablation"`` on a task, ``n_examples`` examples of ``split``
            drawn by ``seed`` are scored.
        batch_size: rows per forward pass.

    Returns:
        A :class:`Circuit`.
    """
    threshold, top_k = _selection_rule(threshold, top_k)
    check_metric(metric)
    if method not in CIRCUIT_METHODS:
        raise ValueError(f"method={method!r}; choose one of {tuple(CIRCUIT_METHODS)}")
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    task = None
    if isinstance(pairs, TaskData):
        task = resolve_subtask(check_task_fits(model, pairs), subtask)
    if task is not None:
        if split not in task.splits or len(task.splits[split]) == 0:
            raise ValueError(
                f"no examples in split {split!r} of the {task.name} task; choose one of "
                f"{[k for k, v in task.splits.items() if len(v)]}"
            )
    if method == "ablation":
        if task is not None:
            if swaps is not None:
                raise ValueError("swaps= applies to method='patching'; ablation needs no swap")
            examples = task.splits[split].sample(n_examples, seed)
            check_fits(model, PromptPairs.from_split(examples))
        else:
            examples = distinct_clean(swap_pairs(model, pairs))
        found = ablation_scores(model, examples, ablation=ablation, seed=seed)
        traced, swap_names, measured = (), (), f"accuracy lost ({ablation} ablation)"
    else:
        kw = dict(split=split, n_examples=n_examples, facts=facts, seed=seed)
        sets = swap_pairs(model, task if task is not None else pairs, swaps=swaps, **kw)
        found = patching_scores(model, sets, metric=metric, batch_size=batch_size)
        examples = distinct_clean(sets)
        traced = tuple(len(p) for p in sets)
        swap_names = tuple(p.swap or f"pairs {k}" for k, p in enumerate(sets))
        measured = metric
    if task is not None:
        positions = dict(task.positions)
    elif method == "patching":
        positions = sets[0].positions
    else:
        positions = {str(i): i for i in range(examples.tokens.shape[1])}
    return Circuit(
        task=None if task is None else task.name,
        method=method,
        split=None if task is None else split,
        n_examples=len(examples),
        n_layers=model.cfg.n_layers,
        n_heads=model.cfg.n_heads,
        components=select_components(found["scores"], threshold=threshold, top_k=top_k),
        threshold=threshold,
        top_k=top_k,
        metric=measured,
        positions=positions,
        swaps=swap_names,
        n_traced=traced,
        clean_accuracy=accuracy_under_ablation(model, examples, []),
        **found,
    )


__all__ = [
    "CIRCUIT_METHODS",
    "DEFAULT_THRESHOLD",
    "Circuit",
    "CircuitMethod",
    "ablation_scores",
    "distinct_clean",
    "find_circuit",
    "patching_scores",
    "select_components",
]
