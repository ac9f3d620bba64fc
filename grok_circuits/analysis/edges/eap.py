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

TransformerLens' ``tools.analysis.attribution_patch`` scores nodes (3.9) and, in 4.3, edges, with
the gradient taken on the corrupt run (its denoising form) and without integrated gradients;
``"eap"`` offers that point as ``gradient_at="corrupt"``, and its node sums equal
TransformerLens' node scores (``tests/analysis/edges/test_tl_parity.py``). Its edge scores and
``faithfulness`` need per-head attention results, which the natively booted bridge of 4.3 does
not provide, and it runs one pair per forward pass; so the gradient bookkeeping, per-position
edges and EAP-IG are written here. The tests check EAP against a first-order estimate computed
by hand, and its node sums against ``transformer_lens.patching``.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis.edges.graph import EdgeGraph, source_outputs
from grok_circuits.backend import Model, split_qkv_hooks
from grok_circuits.model import logits_at
from grok_circuits.tasks import PromptPairs


def _stack(acts: Sequence[Tensor]) -> Float[Tensor, "batch pos node d_model"]:
    """Hook activations ``[batch, pos, (head,) d_model]`` stacked along one node axis."""
    return torch.cat([a if a.dim() == 4 else a[:, :, None] for a in acts], dim=2)


def _gradients(
    model: Model,
    graph: EdgeGraph,
    pairs: PromptPairs,
    metric: Callable[[Tensor, PromptPairs], Tensor],
    clean_embed: Tensor,
    corrupt_embed: Tensor,
    alpha: float,
) -> Float[Tensor, "batch pos destination d_model"]:
    """d metric / d input of every destination, on the input ``corrupt + alpha (clean -
    corrupt)`` (interpolated at the embeddings)."""
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
    return _stack([grads[n] for n in names])


def eap_ig(
    model: Model,
    pairs: PromptPairs,
    graph: EdgeGraph,
    *,
    metric: Callable[[Tensor, PromptPairs], Tensor],
    ig_steps: int = 5,
    batch_size: int = 256,
    progress: bool = False,
) -> Float[Tensor, "source destination pos"]:
    """EAP-IG scores (Hanna et al. 2024): each edge's source difference (clean minus corrupt)
    times the gradient at its destination averaged over ``ig_steps`` inputs between the
    corrupt and the clean embeddings, the mean over the pairs.

    Args:
        ig_steps: interpolation steps (the paper: 5); one forward and backward pass each per
            batch. 1 is plain EAP, the gradient at the clean run.

    The rest as in :class:`~grok_circuits.analysis.edges.attribution.EdgeMethod`.
    """
    if ig_steps < 1:
        raise ValueError(f"ig_steps must be >= 1, got {ig_steps}")
    alphas = [k / ig_steps for k in range(1, ig_steps + 1)]
    return _attribute(model, pairs, graph, metric, alphas, batch_size, progress)


def _attribute(
    model: Model,
    pairs: PromptPairs,
    graph: EdgeGraph,
    metric: Callable[[Tensor, PromptPairs], Tensor],
    alphas: Sequence[float],
    batch_size: int,
    progress: bool,
) -> Float[Tensor, "source destination pos"]:
    """Source differences (clean minus corrupt) times the destinations' gradients averaged over
    the inputs ``corrupt + alpha (clean - corrupt)``, the mean over the pairs."""
    raw = torch.zeros(graph.n_sources, graph.n_destinations, pairs.width, dtype=torch.float64)
    device = model.cfg.device
    from tqdm.auto import tqdm

    for i in tqdm(range(0, len(pairs), batch_size), desc="edges", disable=not progress):
        b = pairs[i : i + batch_size]
        clean = source_outputs(model, graph, b.clean.to(device))
        corrupt = source_outputs(model, graph, b.corrupt.to(device))
        grad = torch.zeros(*clean.shape[:2], graph.n_destinations, clean.shape[-1])
        grad = grad.to(clean)
        for alpha in alphas:
            g = _gradients(model, graph, b, metric, clean[:, :, 0], corrupt[:, :, 0], alpha)
            grad += g / len(alphas)
        diff = clean - corrupt
        raw += torch.einsum("bpsm,bpdm->sdp", diff, grad).double().cpu()
    return (raw / len(pairs)).float()


def eap(
    model: Model,
    pairs: PromptPairs,
    graph: EdgeGraph,
    *,
    metric: Callable[[Tensor, PromptPairs], Tensor],
    batch_size: int = 256,
    progress: bool = False,
    gradient_at: Literal["clean", "corrupt"] = "clean",
) -> Float[Tensor, "source destination pos"]:
    """EAP scores (Syed et al. 2023): each edge's source difference (clean minus corrupt) times
    the gradient at its destination, the mean over the pairs.

    Args:
        gradient_at: where the gradient is taken: ``"clean"`` (default; EAP-IG with one step,
            as auto-circuit does: the estimate of corrupting one edge of the clean run) or
            ``"corrupt"`` (TransformerLens 4.x ``attribution_patch``'s denoising form: the
            estimate of restoring one edge of the corrupt run). Both are the drop to first
            order; they differ by the metric's curvature between the two runs.

    The rest as in :class:`~grok_circuits.analysis.edges.attribution.EdgeMethod`.
    """
    if gradient_at not in ("clean", "corrupt"):
        raise ValueError(f"gradient_at={gradient_at!r}; choose 'clean' or 'corrupt'")
    alphas = [1.0 if gradient_at == "clean" else 0.0]
    return _attribute(model, pairs, graph, metric, alphas, batch_size, progress)


__all__ = ["eap", "eap_ig"]
