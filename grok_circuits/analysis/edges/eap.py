"""Edge attribution patching (EAP) and its integrated-gradients version (EAP-IG).

**Edge attribution patching** (Syed, Rager & Conmy 2023, "Attribution Patching Outperforms
Automated Circuit Discovery") estimates, for every edge at once, what happens to a metric when
only that edge carries the corrupt prompt's value instead of the clean one. To first order
(a Taylor expansion around the clean run),

    score(u -> v) = (a_u(clean) - a_u(corrupt)) . d metric / d in_v (clean),

where ``a_u`` is the source's output and ``in_v`` the destination's input: one forward and one
backward pass give the gradients at every destination, one cached forward pass per prompt
gives every source's output, and an outer product gives every edge. **EAP-IG** (Hanna, Pezzelle
& Belinkov 2024, "Have Faith in Faithfulness") replaces the gradient at the clean run with its
average over ``ig_steps`` inputs interpolated between the corrupt and the clean embeddings
(integrated gradients, Sundararajan et al. 2017), which follows the metric's curvature and ranks
edges closer to exact patching. ``ig_steps=1`` is plain EAP.

TransformerLens 3.x's ``tools.analysis.attribution_patching`` is node-level, targets
``TransformerBridge`` rather than ``HookedTransformer``, and declares edge scores and integrated
gradients unimplemented, and ``transformer_lens.patching`` patches one node per forward pass; so
the gradient bookkeeping and EAP-IG are written here. The tests check EAP against a first-order
estimate computed by hand, and its node sums against ``transformer_lens.patching``.
"""

import functools
from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis.edges.graph import EdgeGraph, _stack
from grok_circuits.backend import Model, split_qkv_hooks
from grok_circuits.model import logits_at
from grok_circuits.tasks import PromptPairs


def _gradients(
    model: Model,
    graph: EdgeGraph,
    pairs: PromptPairs,
    metric: Callable[[Tensor, PromptPairs], Tensor],
    clean_embed: Tensor,
    corrupt_embed: Tensor,
    alpha: float,
) -> tuple[Float[Tensor, "batch pos destination d_model"], Tensor]:
    """d metric / d input of every destination, on the input ``corrupt + alpha (clean -
    corrupt)`` (interpolated at the embeddings), and the metric per example there."""
    names = graph.destination_hooks()
    grads: dict[str, Tensor] = {}

    def interpolate(act: Tensor, hook) -> Tensor:
        x = corrupt_embed + alpha * (clean_embed - corrupt_embed)
        return x.detach().requires_grad_(True)

    def keep_grad(act: Tensor, hook, *, name: str) -> Tensor:
        # A copy, so that the gradient is the destination's alone: the bridge's hook_mlp_in
        # passes the residual stream itself, whose gradient also holds the skip connection.
        # The name is the one registered: the bridge calls an alias by its own name.
        act = act.clone()
        act.register_hook(lambda g: grads.__setitem__(name, g.detach()))
        return act

    hooks = [("blocks.0.hook_resid_pre", interpolate)]
    hooks += [(n, functools.partial(keep_grad, name=n)) for n in names]
    with torch.enable_grad(), model.hooks(fwd_hooks=split_qkv_hooks(model, hooks)):
        logits = model(pairs.clean.to(model.cfg.device), return_type="logits")
        values = metric(logits_at(logits, pairs.answer_pos), pairs)
        values.sum().backward()
    return _stack([grads[n] for n in names]), values.detach()
