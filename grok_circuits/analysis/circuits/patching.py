"""The ``"patching"`` circuit method: the paper's causal tracing of states and components.

"Grokked Transformers are Implicit Reasoners" (Wang et al. 2024) finds the circuit of a grokked
model by **causal tracing** (Meng et al. 2022): three runs per example,

1. the *clean* run on a training query, e.g. ``<e_h> <r_1> <r_2>``;
2. a *perturbed* run, where one input token is swapped for another of the same type such that the
   answer changes (composition: ``h``, ``r1`` or ``r2``; comparison: ``e1``, ``e2`` or ``attr``;
   built by :func:`~grok_circuits.make_pairs`);
3. an *intervened* run: the clean input, with one hidden state replaced by its value in the
   perturbed run ("noising", :func:`~grok_circuits.analysis.patching.causal_trace.causal_trace`
   with ``direction="noise"``).

The **causal strength** of a state is how often the intervention changes the model's top-1
prediction (the paper's measure; ``metric="logit_difference"`` uses the drop of the clean-minus-
perturbed answer logit difference instead, normalised so that the whole swap is 1). Traced over
every (layer, position) of the residual stream (``resid_pre``; layer 0 is the embeddings), once
per swapped input token, it gives the paper's causal graph: which states carry what the answer
depends on. Composition's generalizing circuit stores the bridge entity at the r1 position around
the middle layers; comparison's retrieves both values in parallel.

The same interventions applied to components give their scores: the output ``hook_z`` of each
attention head (all positions at once; ``[layer, head]``) and the output of each MLP
(``[layer, pos]``; an MLP's score is its strongest position). A component's score is its largest
over the swaps: it is in the circuit if it carries the information of *any* input token the
answer needs.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from grok_circuits.analysis.circuits.scores import Scores
from grok_circuits.analysis.components import Component
from grok_circuits.analysis.metrics import PairMetric, check_metric, no_effect_error
from grok_circuits.analysis.patching.causal_trace import Activation, CausalTrace, trace_pairs
from grok_circuits.backend import Model
from grok_circuits.tasks import PromptPairs


@torch.no_grad()
def patching_scores(
    model: Model,
    pairs: Sequence[PromptPairs],
    components: Sequence[Component],
    *,
    seed: int = 0,
    metric: PairMetric = "strength",
    batch_size: int = 2048,
) -> Scores:
    """Causal tracing, per set of pairs: ``resid_pre`` at each (layer, position), each head's
    ``hook_z`` at all positions, ``mlp_out`` at each (layer, position). Scores are the strength,
    or the normalised drop of the logit difference (0 = no effect, 1 = the whole effect of the
    swap). A component's score is its largest over the pairs (and, for an MLP, its positions).

    Args:
        model: the model.
        pairs: one set of pairs per swapped token, checked to fit the model.
        components: the components to score.
        seed: unused (tracing draws nothing at random); every circuit method takes it.
        metric: ``"strength"`` (the fraction of examples whose top-1 prediction changes; the
            paper) or ``"logit_difference"``.
        batch_size: rows per forward pass.

    Returns:
        :class:`Scores` with the traced ``state_scores``, ``head_scores`` and ``mlp_scores``.

    Pairs of which no set changes the metric are refused, as :func:`~grok_circuits.faithfulness`
    refuses them: the normalised logit difference would be 0/0 everywhere, and pairs that swap
    no token give nothing to trace. (A model whose top-1 prediction no swap changes, such as an
    early checkpoint, scores an honest 0 in strength: no component passes a threshold.)"""
    check_metric(metric)

    def trace(p: PromptPairs, activation: Activation, **kw) -> CausalTrace:
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
        c: float(head_best[c.layer, c.head] if c.is_head else mlp_best[c.layer]) for c in components
    }
    return Scores(scores, metric=metric, state_scores=states, head_scores=heads, mlp_scores=mlps)


__all__ = ["patching_scores"]
