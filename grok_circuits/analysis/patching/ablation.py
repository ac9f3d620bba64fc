"""Ablating model components: attention heads and MLPs, by mean or by resampling.

To ask whether a set of components is *needed* for a task, remove what they compute and measure
the accuracy that is left. "Removing" is done by replacing a component's output with a value that
carries no information about the input at hand (Wang et al. 2022, "Interpretability in the Wild";
Chan et al. 2022, "Causal Scrubbing"; Heimersheim & Nanda 2024, "How to use and interpret
activation patching"):

- **mean ablation**: the component's output at each position is replaced by its mean over a
  reference set of examples. Zero-ablation would push the residual stream off-distribution; the
  mean keeps what is constant across inputs and removes only what varies.
- **resample ablation**: the output is replaced by the component's output on *another* example of
  the reference set, drawn at random (seeded). For each example one reference example is drawn,
  and every ablated component reads that same example: the ablated components see a coherent,
  real, but unrelated input.

Components are the units of the circuit analysis (:mod:`grok_circuits.analysis.circuits.find`): an
attention head ``(layer, head)``, ablated through its ``hook_z`` (the head's output before
``W_O``, ``[batch, pos, head, d_head]``), or an MLP ``(layer,)``, ablated through
``hook_mlp_out`` (``[batch, pos, d_model]``).

Prompts of different formats share batches (atomic facts have 2 tokens, comparisons 5), so
both methods are *format-aware*: an example is ablated with the mean of, or a draw from, the
reference examples with the same prompt length (same ``answer_pos``). The mean is per position.
Because attention is causal, ablating positions after the answer position changes nothing.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grok_circuits.analysis.components import (
    ComponentLike,
    as_components,
)
from grok_circuits.backend import Model
from grok_circuits.model import answer_logits
from grok_circuits.tasks import Split

#: How a component is removed (``ablation=`` everywhere).
Ablation = Literal["mean", "resample"]
#: The values of :data:`Ablation`.
ABLATIONS: tuple[str, ...] = ("mean", "resample")


def _fit_width(tokens: Tensor, width: int, pad_id: int = 0) -> Tensor:
    """Right-pad or cut prompts to ``width`` tokens. Cutting is exact for the positions kept:
    attention is causal, so no position reads a later one."""
    if tokens.shape[1] >= width:
        return tokens[:, :width]
    return torch.nn.functional.pad(tokens, (0, width - tokens.shape[1]), value=pad_id)


def _formats(split: Split, reference: Split) -> Int[Tensor, " batch"]:
    """For each example, the index of its format (prompt length) among the reference's formats;
    raises when the reference has no example of some format the split needs."""
    ref_formats = torch.unique(reference.answer_pos)
    missing = sorted(set(torch.unique(split.answer_pos).tolist()) - set(ref_formats.tolist()))
    if missing:
        raise ValueError(
            f"the reference split has no prompt of {[m + 1 for m in missing]} tokens (answer "
            f"positions {missing}), which the ablated split needs: components are ablated with "
            "the activations of same-format reference examples; pass a reference that contains "
            "the same kinds of prompts (e.g. the same probe)"
        )
    return torch.searchsorted(ref_formats, split.answer_pos.contiguous())


@torch.no_grad()
def _cache(
    model: Model, tokens: Int[Tensor, "batch pos"], names: Sequence[str]
) -> dict[str, Tensor]:
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return {n: cache[n] for n in names}


@torch.no_grad()
def _format_means(
    model: Model,
    reference: Split,
    names: Sequence[str],
    width: int,
    batch_size: int,
) -> dict[str, Tensor]:
    """Per format and position, the mean activation of each hook over the reference:
    ``{name: [n_formats, pos, ...]}`` (formats in ascending ``answer_pos``)."""
    device = model.cfg.device
    assert device is not None  # both lines' configs set it when the model is built
    fmt = _formats(reference, reference)
    n_formats = int(fmt.max()) + 1
    sums: dict[str, Tensor] = {}
    counts = torch.bincount(fmt, minlength=n_formats).to(device)
    for i in range(0, len(reference), batch_size):
        b = reference.select(slice(i, i + batch_size)).to(device)
        acts = _cache(model, _fit_width(b.tokens, width), names)
        f = fmt[i : i + batch_size].to(device)
        for n, a in acts.items():
            if n not in sums:
                sums[n] = torch.zeros((n_formats, *a.shape[1:]), dtype=a.dtype, device=device)
            sums[n].index_add_(0, f, a)
    return {n: s / counts.view(-1, *[1] * (s.dim() - 1)).to(s.dtype) for n, s in sums.items()}


def resample_draw(split: Split, reference: Split, seed: int) -> Int[Tensor, " batch"]:
    """For each example, a reference example of the same format, drawn uniformly (seeded)."""
    fmt_split = _formats(split, reference)
    fmt_ref = _formats(reference, reference)
    g = torch.Generator().manual_seed(seed)
    draw = torch.empty(len(split), dtype=torch.int64)
    for f in torch.unique(fmt_split).tolist():
        pool = torch.nonzero(fmt_ref == f).flatten()
        rows = torch.nonzero(fmt_split == f).flatten()
        draw[rows] = pool[torch.randint(len(pool), (len(rows),), generator=g)]
    return draw


def _replace_hook(replacement: Tensor, mask: Tensor):
    """A hook that writes ``replacement`` where ``mask`` (broadcast over batch and the last
    dimension) is true and keeps the activation elsewhere."""

    def hook(activation: Tensor, hook) -> Tensor:
        return torch.where(mask, replacement.to(activation.dtype), activation)

    return hook


def _position_mask(positions: Sequence[int] | None, width: int) -> Tensor:
    if positions is None:
        return torch.ones(width, dtype=torch.bool)
    bad = [p for p in positions if not 0 <= int(p) < width]
    if bad:
        raise ValueError(
            f"positions {bad} are outside the prompts (positions 0..{width - 1}); "
            "pass prompt positions, or positions=None for all of them"
        )
    mask = torch.zeros(width, dtype=torch.bool)
    mask[list(positions)] = True
    return mask


@torch.no_grad()
def ablated_answer_logits(
    model: Model,
    split: Split,
    components: Iterable[ComponentLike],
    *,
    ablation: Ablation = "mean",
    reference: Split | None = None,
    positions: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> Float[Tensor, "batch d_vocab"]:
    """Logits at each example's answer position with ``components`` ablated.

    Args:
        model: the model (not modified: the hooks live only inside this call).
        split: the examples to run.
        components: heads and MLPs to ablate (:class:`Component`, ``"L2H1"``, ``(2, 1)``,
            ``"MLP3"``, ``(3,)``); empty gives the clean logits.
        ablation: ``"mean"`` (the per-position mean over same-format reference examples) or
            ``"resample"`` (one same-format reference example per example, drawn with ``seed``).
        reference: where the replacement activations come from; default ``split`` itself.
        positions: prompt positions at which to ablate (default all).
        seed: seeds the resample draw (unused by ``"mean"``).
        batch_size: examples per forward pass.

    Returns:
        ``[batch, d_vocab]`` answer logits, on the model's device.
    """
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
    if len(split) == 0:
        raise ValueError("the split to ablate is empty")
    comps = as_components(model, components)
    reference = split if reference is None else reference
    if len(reference) == 0:
        raise ValueError("the reference split is empty; pass one with examples of each format")
    device = model.cfg.device
    assert device is not None  # both lines' configs set it when the model is built
    width = split.tokens.shape[1]
    pos_mask = _position_mask(positions, width).to(device)
    names = sorted({c.hook_name for c in comps})

    # Which (position, head) entries of each hook are replaced.
    masks: dict[str, Tensor] = {}
    for n in names:
        heads = [c.head for c in comps if c.hook_name == n and c.head is not None]
        if heads:  # hook_z: [batch, pos, head, d_head]
            head_mask = torch.zeros(model.cfg.n_heads, dtype=torch.bool, device=device)
            head_mask[heads] = True
            masks[n] = (pos_mask[:, None] & head_mask[None, :])[None, :, :, None]
        else:  # hook_mlp_out: [batch, pos, d_model]
            masks[n] = pos_mask[None, :, None]

    if comps and ablation == "mean":
        means = _format_means(model, reference, names, width, batch_size)
        fmt = _formats(split, reference)
    elif comps:
        draw = resample_draw(split, reference, seed)

    out = []
    for i in range(0, len(split), batch_size):
        b = split.select(slice(i, i + batch_size)).to(device)
        if not comps:
            out.append(answer_logits(model, b.tokens, b.answer_pos))
            continue
        if ablation == "mean":
            f = fmt[i : i + batch_size].to(device)
            repl = {n: means[n][f] for n in names}
        else:
            rows = reference.select(draw[i : i + batch_size]).to(device)
            repl = _cache(model, _fit_width(rows.tokens, width), names)
        hooks: list[tuple[str | Callable, Callable]] = [
            (n, _replace_hook(repl[n], masks[n])) for n in names
        ]
        with model.hooks(fwd_hooks=hooks):
            out.append(answer_logits(model, b.tokens, b.answer_pos))
    return torch.cat(out)


def accuracy_under_ablation(
    model: Model,
    split: Split,
    components: Iterable[ComponentLike],
    *,
    ablation: Ablation = "mean",
    reference: Split | None = None,
    positions: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> float:
    """Top-1 accuracy on ``split`` with ``components`` ablated (see
    :func:`ablated_answer_logits` for the arguments). With no component it is the clean
    accuracy that :func:`grok_circuits.training.loop.evaluate` reports."""
    logits = ablated_answer_logits(
        model,
        split,
        components,
        ablation=ablation,
        reference=reference,
        positions=positions,
        seed=seed,
        batch_size=batch_size,
    )
    # correct / n, as ``evaluate`` computes it, so that no ablation reproduces it exactly
    return int((logits.argmax(-1).cpu() == split.answers.cpu()).sum()) / len(split)
