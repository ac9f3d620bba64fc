"""Edge attribution: a score for every edge of the model's graph.

The graph (sources, destinations and the edges between them) is described in
:mod:`grok_circuits.analysis.edges.graph`, the scores and the circuits selected from them in
:mod:`grok_circuits.analysis.edges.scores`, and the methods, edge attribution patching (EAP) and
its integrated-gradients version (EAP-IG), in :mod:`grok_circuits.analysis.edges.eap`.

**The metric** is the clean-minus-corrupt answer logit difference per example
(:func:`~grok_circuits.analysis.metrics.logit_difference`), or any differentiable function of
the answer logits.
"""

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from grok_circuits.analysis._inputs import Data, as_pairs, weights_digest
from grok_circuits.analysis.edges.eap import _gradients
from grok_circuits.analysis.edges.graph import EdgeGraph, _frozen, edge_hooks, source_outputs
from grok_circuits.analysis.edges.scores import EdgeScores
from grok_circuits.backend import Model
from grok_circuits.model import logits_at
from grok_circuits.tasks import PromptPairs

EdgeMethod = Literal["eap", "eap-ig"]
EDGE_METHODS: tuple[str, ...] = ("eap", "eap-ig")

#: A differentiable metric of the answer logits: ``metric(answer_logits [batch, d_vocab],
#: pairs) -> [batch]`` (one value per example), or the name ``"logit_difference"``.
EdgeMetric = Literal["logit_difference"] | Callable[[Tensor, PromptPairs], Tensor]


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
        rows = torch.arange(answer_logits.shape[0], device=answer_logits.device)
        clean = pairs.answers.to(answer_logits.device)
        corrupt = pairs.corrupt_answers.to(answer_logits.device)
        return answer_logits[rows, clean] - answer_logits[rows, corrupt]

    return logit_diff


def edge_attribution(
    model: Model,
    pairs: Data,
    *,
    method: EdgeMethod = "eap-ig",
    ig_steps: int = 5,
    metric: EdgeMetric = "logit_difference",
    swap: str | None = None,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> EdgeScores:
    """Score every edge of the model's graph by edge attribution patching (see the module
    docstring).

    Args:
        model: any ``Model`` with a sequential residual stream (not modified: its
            hook settings are restored and its parameters' gradients untouched).
        pairs: :class:`~grok_circuits.PromptPairs`, or a registered task (pairs are then built
            with ``swap``, ``subtask``, ``split``, ``n_examples``, ``seed``, as everywhere).
        method: ``"eap"`` (gradients at the clean run; Syed et al. 2023) or ``"eap-ig"``
            (gradients averaged over ``ig_steps`` inputs between corrupt and clean; Hanna et al.
            2024).
        ig_steps: interpolation steps of EAP-IG (the paper: 5); one forward and backward pass
            each per batch.
        metric: ``"logit_difference"`` (clean minus corrupt answer logit, per example) or a
            function ``(answer_logits [batch, d_vocab], pairs) -> [batch]``.
        batch_size: pairs per forward pass.
        progress: a progress bar over the batches.

    Returns:
        :class:`EdgeScores`, ``[source, destination, pos]``.
    """
    if method not in EDGE_METHODS:
        raise ValueError(f"method={method!r}; choose one of {EDGE_METHODS}")
    if method == "eap-ig" and ig_steps < 1:
        raise ValueError(f"ig_steps must be >= 1, got {ig_steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pairs = as_pairs(
        model, pairs, swap=swap, subtask=subtask, split=split, n_examples=n_examples, seed=seed
    )
    if len(pairs) == 0:
        raise ValueError("no pairs to score; pass at least one")
    fn = metric_fn(metric)
    graph = EdgeGraph.of(model)
    steps = ig_steps if method == "eap-ig" else 1
    n_pos = pairs.width
    raw = torch.zeros(graph.n_sources, graph.n_destinations, n_pos, dtype=torch.float64)
    clean_sum = corrupt_sum = 0.0
    device = model.cfg.device
    from tqdm.auto import tqdm

    with edge_hooks(model), _frozen(model):
        for i in tqdm(range(0, len(pairs), batch_size), desc="edges", disable=not progress):
            b = pairs[i : i + batch_size]
            clean = source_outputs(model, graph, b.clean.to(device))
            corrupt = source_outputs(model, graph, b.corrupt.to(device))
            with torch.no_grad():
                corrupt_logits = model(b.corrupt.to(device), return_type="logits")
                corrupt_sum += float(fn(logits_at(corrupt_logits, b.answer_pos), b).sum())
            grad = torch.zeros(*clean.shape[:2], graph.n_destinations, clean.shape[-1])
            grad = grad.to(clean)
            for k in range(1, steps + 1):
                g, values = _gradients(
                    model, graph, b, fn, clean[:, :, 0], corrupt[:, :, 0], k / steps
                )
                grad += g / steps
                if k == steps:  # alpha = 1: the clean run
                    clean_sum += float(values.sum())
            diff = clean - corrupt
            raw += torch.einsum("bpsm,bpdm->sdp", diff, grad).double().cpu()
    raw = (raw / len(pairs)).float() * graph.valid[:, :, None]
    return EdgeScores(
        graph=graph,
        raw=raw,
        clean_metric=clean_sum / len(pairs),
        corrupt_metric=corrupt_sum / len(pairs),
        method=method,
        ig_steps=steps,
        n_examples=len(pairs),
        pos_labels=pairs.pos_labels,
        model_digest=weights_digest(model),
    )


__all__ = [
    "EDGE_METHODS",
    "EdgeMethod",
    "EdgeMetric",
    "edge_attribution",
    "metric_fn",
]
