"""Edge attribution: a score for every edge of the model's graph, by a method chosen by name.

The graph (sources, destinations and the edges between them) is described in
:mod:`grok_circuits.analysis.edges.graph`, the scores and the circuits selected from them in
:mod:`grok_circuits.analysis.edges.scores`. The methods live one per file and are looked up by
name in :data:`EDGE_METHODS`: ``"eap"`` (edge attribution patching, Syed et al. 2023) and
``"eap-ig"`` (its integrated-gradients version, Hanna et al. 2024), both in
:mod:`grok_circuits.analysis.edges.eap`.

:func:`edge_attribution` turns its data into :class:`~grok_circuits.PromptPairs` once, switches on
the hook points the graph reads (:func:`~grok_circuits.analysis.edges.graph.edge_hooks`), freezes
the parameters, measures the mean metric on the clean and on the corrupt prompts, and calls the
method, which returns one score per edge and position.

**The metric** is the clean-minus-corrupt answer logit difference per example
(:func:`~grok_circuits.analysis.metrics.answer_logit_difference`, the one
:func:`~grok_circuits.analysis.metrics.logit_difference` uses), or any differentiable function
of the answer logits.

TransformerLens' own attribution patching, and why this stays ours
------------------------------------------------------------------
TransformerLens ships ``tools.analysis.attribution_patch`` (3.9 for ``HookedTransformer``, 4.3
for ``TransformerBridge``). What it computes, we compare against rather than rewrite: at node
granularity its scores are our ``"eap"`` scores taken with ``gradient_at="corrupt"`` (its
denoising convention) and summed over the destinations each node feeds, equal to float
rounding (``tests/analysis/edges/test_tl_parity.py``; ``benchmarks/edge_circuits.py`` prints
the agreement and the time on the shipped composition run). We do not call it, because on the
models this package builds it gives less, and more slowly:

- **edges**: 3.9 scores nodes only; 4.3's edge granularity (and its ``faithfulness``) need
  per-head attention results, which the natively booted bridge (``AttentionBridge``) refuses.
  Edges, per position, are what :class:`~grok_circuits.analysis.edges.scores.EdgeScores`,
  the circuits and MIB's faithfulness are made of;
- **batching**: it runs one pair per call (its metric sees one example's logits, and pairs
  here have their own answers), two forward and one backward pass each; ours runs 256 pairs a
  pass, an order of magnitude faster on a few hundred pairs on CPU;
- **EAP-IG** (``ig_steps > 1``) is not implemented there; it is the default here;
- **TransformerLens 3.x** and the gradient at the clean run (``"eap"``'s default, auto-circuit's
  convention) are served by the same code.

Adding an edge method
---------------------
A method is one function with the :class:`EdgeMethod` signature, in a file of its own, registered
by name::

    # my_exact_patching.py
    def exact_patching(model, pairs, graph, *, metric, batch_size=256, progress=False, top=None):
        ...  # one forward pass per edge
        return scores  # [graph.n_sources, graph.n_destinations, pairs.width]

    register_edge_method("exact", exact_patching)
    edge_attribution(model, task, method="exact", top=100)

Keyword options that the function declares (``top`` here, ``ig_steps`` for ``"eap-ig"``) are
passed through :func:`edge_attribution`; it refuses any other. A method that ships with the
package is a new file in ``grok_circuits/analysis/edges/`` and one entry of
:data:`EDGE_METHODS`.
"""

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis._inputs import Data, as_pairs, weights_digest
from grok_circuits.analysis.edges.eap import eap, eap_ig
from grok_circuits.analysis.edges.graph import EdgeGraph, _frozen, edge_hooks
from grok_circuits.analysis.edges.scores import EdgeScores
from grok_circuits.analysis.metrics import answer_logit_difference
from grok_circuits.backend import Model
from grok_circuits.model import logits_at
from grok_circuits.tasks import PromptPairs
from grok_circuits.tasks.registry import Facts

#: A differentiable metric of the answer logits: ``metric(answer_logits [batch, d_vocab],
#: pairs) -> [batch]`` (one value per example), or the name ``"logit_difference"``.
EdgeMetric = Literal["logit_difference"] | Callable[[Tensor, PromptPairs], Tensor]


@runtime_checkable
class EdgeMethod(Protocol):
    """The signature of every edge method: ``method(model, pairs, graph, *, metric, batch_size,
    progress, **options) -> scores``.

    Args:
        model: the model, its graph's hook points switched on
            (:func:`~grok_circuits.analysis.edges.graph.edge_hooks`) and its parameters frozen.
        pairs: the :class:`~grok_circuits.PromptPairs` to score, already checked against the model.
        graph: the model's :class:`~grok_circuits.analysis.edges.graph.EdgeGraph`.
        metric: ``metric(answer_logits [batch, d_vocab], pairs) -> [batch]``, one value per
            example (differentiable).
        batch_size: pairs per forward pass; progress: whether to show a progress bar.
        options: the method's own keyword options, each with a default (a method may add any
            such option to this signature).

    Returns:
        ``[source, destination, pos]``: for every edge at every position, the estimated drop of
        the mean metric when that edge carries the corrupt prompt's value instead of the clean
        one (entries that are no edge are ignored).
    """

    def __call__(
        self,
        model: Model,
        pairs: PromptPairs,
        graph: EdgeGraph,
        *,
        metric: Callable[[Tensor, PromptPairs], Tensor],
        batch_size: int,
        progress: bool,
    ) -> Float[Tensor, "source destination pos"]: ...


#: The edge methods by name (see "Adding an edge method" in the module docstring).
EDGE_METHODS: dict[str, EdgeMethod] = {"eap": eap, "eap-ig": eap_ig}

#: The arguments every edge method takes; the others it declares are its own options.
_COMMON = ("model", "pairs", "graph", "metric", "batch_size", "progress")


def register_edge_method(name: str, method: EdgeMethod) -> None:
    """Make ``method`` (an :class:`EdgeMethod`) available as ``edge_attribution(...,
    method=name)``. A name already registered is refused: pick another."""
    if not name or not isinstance(name, str):
        raise ValueError(f"an edge method needs a non-empty string name, got {name!r}")
    if not callable(method):
        raise ValueError(f"edge method {name!r} must be callable, got {method!r}")
    if name in EDGE_METHODS:
        raise ValueError(
            f"edge method {name!r} is registered already (the methods are {sorted(EDGE_METHODS)}); "
            "register yours under another name"
        )
    EDGE_METHODS[name] = method


def _options(name: str, method: EdgeMethod, given: Mapping[str, Any]) -> dict[str, Any]:
    """The method's own options: its declared keyword defaults updated by ``given``; an option
    it does not declare is refused (unless it takes ``**options``)."""
    params = inspect.signature(method).parameters.values()
    own = {p.name: p.default for p in params if p.name not in _COMMON and p.default is not p.empty}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    unknown = sorted(set(given) - set(own))
    if unknown and not takes_any:
        raise ValueError(
            f"edge method {name!r} takes no option {', '.join(unknown)}; its options are "
            f"{sorted(own) or 'none'}"
        )
    return {**own, **given}


# ----------------------------------------------------------------------------- the metric
def metric_fn(metric: EdgeMetric) -> Callable[[Tensor, PromptPairs], Tensor]:
    """The per-example metric of the answer logits that ``metric`` names."""
    if callable(metric):
        return metric
    if metric != "logit_difference":
        raise ValueError(
            f"metric={metric!r}: edge attribution needs a differentiable metric; use "
            "'logit_difference' or a function (answer_logits, pairs) -> [batch]"
        )

    def logit_diff(answer_logits: Tensor, pairs: PromptPairs) -> Tensor:
        if pairs.corrupt_answers is None:
            raise ValueError(
                "metric='logit_difference' needs pairs.corrupt_answers (the corrupt prompts' "
                "answers); build the pairs with them, or pass a metric function"
            )
        return answer_logit_difference(answer_logits, pairs.answers, pairs.corrupt_answers)

    return logit_diff


def edge_attribution(
    model: Model,
    data: Data,
    *,
    method: str = "eap-ig",
    metric: EdgeMetric = "logit_difference",
    swap: str | None = None,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
    **options: Any,
) -> EdgeScores:
    """Score every edge of the model's graph with an edge method (see the module docstring).

    Args:
        model: any ``Model`` with a sequential residual stream (not modified: its
            hook settings are restored and its parameters' gradients untouched).
        data: :class:`~grok_circuits.PromptPairs`, or a registered task (pairs are then built
            with ``swap``, ``subtask``, ``split``, ``n_examples``, ``facts``, ``seed``, as
            everywhere).
        method: a name of :data:`EDGE_METHODS`: ``"eap"`` (gradients at the clean run; Syed
            et al. 2023) or ``"eap-ig"`` (gradients averaged over ``ig_steps`` inputs between
            corrupt and clean; Hanna et al. 2024), or one added with
            :func:`register_edge_method`.
        metric: ``"logit_difference"`` (clean minus corrupt answer logit, per example) or a
            function ``(answer_logits [batch, d_vocab], pairs) -> [batch]``.
        batch_size: pairs per forward pass.
        progress: a progress bar over the batches.
        options: the method's own options, e.g. ``ig_steps=5`` for ``"eap-ig"`` (the
            interpolation steps; one forward and backward pass each per batch).

    Returns:
        :class:`~grok_circuits.analysis.edges.scores.EdgeScores`, ``[source, destination, pos]``.
    """
    if method not in EDGE_METHODS:
        raise ValueError(
            f"method={method!r} is not an edge method; choose one of {sorted(EDGE_METHODS)} "
            "(or add one with register_edge_method)"
        )
    fn = EDGE_METHODS[method]
    options = _options(method, fn, options)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    metric = metric_fn(metric)
    pairs = as_pairs(
        model,
        data,
        swap=swap,
        subtask=subtask,
        split=split,
        n_examples=n_examples,
        facts=facts,
        seed=seed,
    )
    if len(pairs) == 0:
        raise ValueError("no pairs to score; pass at least one")
    graph = EdgeGraph.of(model)
    with edge_hooks(model), _frozen(model):
        clean_metric = _mean_metric(model, pairs, pairs.clean, metric, batch_size)
        corrupt_metric = _mean_metric(model, pairs, pairs.corrupt, metric, batch_size)
        raw = fn(
            model, pairs, graph, metric=metric, batch_size=batch_size, progress=progress, **options
        )
    shape = (graph.n_sources, graph.n_destinations, pairs.width)
    if not isinstance(raw, Tensor) or tuple(raw.shape) != shape:
        got = tuple(raw.shape) if isinstance(raw, Tensor) else type(raw).__name__
        raise ValueError(
            f"edge method {method!r} returned {got}; an edge method returns a tensor of shape "
            f"[source, destination, pos] = {shape}"
        )
    raw = raw.detach().float().cpu() * graph.valid[:, :, None]
    return EdgeScores(
        graph=graph,
        raw=raw,
        clean_metric=clean_metric,
        corrupt_metric=corrupt_metric,
        method=method,
        options=options,
        n_examples=len(pairs),
        pos_labels=pairs.pos_labels,
        model_digest=weights_digest(model),
    )


@torch.no_grad()
def _mean_metric(
    model: Model, pairs: PromptPairs, tokens: Tensor, metric: Callable, batch_size: int
) -> float:
    """The mean metric over the pairs with ``tokens`` (their clean or corrupt prompts) run."""
    device = model.cfg.device
    total = 0.0
    for i in range(0, len(pairs), batch_size):
        b = pairs[i : i + batch_size]
        logits = model(tokens[i : i + batch_size].to(device), return_type="logits")
        total += float(metric(logits_at(logits, b.answer_pos), b).sum())
    return total / len(pairs)


__all__ = [
    "EDGE_METHODS",
    "EdgeMethod",
    "EdgeMetric",
    "edge_attribution",
    "metric_fn",
    "register_edge_method",
]
