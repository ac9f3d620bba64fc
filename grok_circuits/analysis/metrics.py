"""The metrics every pair-level analysis reads from a run, and the checks they share.

Every metric takes the logits ``[batch, pos, d_vocab]`` of a run, like TransformerLens' patching
metrics. The pair-level analyses (:func:`~grok_circuits.analysis.patching.causal_trace.trace_pairs`,
:func:`~grok_circuits.trace_reasoning`, :func:`~grok_circuits.compare_stages`,
:func:`~grok_circuits.find_circuit`, :func:`~grok_circuits.circuit_reuse`) name them with one
word, :data:`PairMetric`, and each name has one meaning and one label everywhere
(:func:`metric_label`): a patch's score, where 0 is no effect and 1 the whole effect of the swap.

- ``"strength"``: :func:`prediction_changed` against the unpatched run's top-1 prediction, averaged
  over examples: the share of answers the patch changes, the paper's **strength** of a state
  (Wang et al. 2024, section 5). Label: "causal strength (share of answers changed)".
- ``"logit_difference"``: the share of the clean-minus-corrupt logit difference
  (:func:`logit_difference`: the logit of the clean answer minus the logit of the corrupt answer
  at the answer position) that the patch moves, ``(patched - unpatched) / (source - unpatched)``
  on the means over examples, as :attr:`CausalTrace.normalized
  <grok_circuits.analysis.patching.causal_trace.CausalTrace.normalized>` computes. In the default
  ``"noise"`` direction (corrupt states into the clean run) it is the share the patch
  **removes**, in ``"denoise"`` the share it **restores**; 0 = no effect, 1 = the whole effect of
  running the other prompt (it may leave [0, 1] where a patch overshoots). Label: "share of the
  logit difference removed" (or "restored"). Pairs whose swap leaves the logit difference
  unchanged are refused: the share would be 0/0.

The raw logit difference stays available as a metric function: pass :func:`logit_difference` to
:func:`~grok_circuits.analysis.patching.causal_trace.causal_trace`, whose result keeps the raw
values with the unpatched (``baseline``) and other run's (``source``) ones.
"""

from collections.abc import Callable
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grok_circuits.backend import Model
from grok_circuits.model import logits_at

#: A metric maps the patched run's logits to a scalar (like TransformerLens' patching metrics),
#: or, with ``per_example=True``, to one value per example.
Metric = Callable[[Float[Tensor, "batch pos d_vocab"]], Float[Tensor, ""] | Float[Tensor, " batch"]]

#: The metric of every pair-level analysis (tracing, circuits, stages, reuse).
PairMetric = Literal["strength", "logit_difference"]
#: The values of :data:`PairMetric`.
PAIR_METRICS: tuple[str, ...] = ("strength", "logit_difference")


def metric_label(metric: str | None, direction: str = "noise") -> str:
    """The axis label of a pair metric's scores (see the module docstring); ``"patching
    effect"`` for the scores of a metric function, which have no fixed meaning."""
    if metric == "strength":
        return "causal strength (share of answers changed)"
    if metric == "logit_difference":
        return f"share of the logit difference {_moved(direction)}"
    return "patching effect"


def metric_name(metric: str | None, direction: str = "noise") -> str:
    """A short name of a pair metric's scores, for table columns: ``"strength"``, ``"logit diff
    removed"`` (``"restored"`` when denoising), or ``"effect"``."""
    if metric == "strength":
        return "strength"
    if metric == "logit_difference":
        return f"logit diff {_moved(direction)}"
    return "effect"


def _moved(direction: str) -> str:
    return "restored" if direction == "denoise" else "removed"


def check_metric(metric: str) -> None:
    """Refuse a metric name that is not one of :data:`PAIR_METRICS`, in one line."""
    if metric not in PAIR_METRICS:
        raise ValueError(f"metric={metric!r}; choose one of {PAIR_METRICS}")


def no_effect_error(change: str, value: float) -> ValueError:
    """The error of an analysis whose pairs give it nothing to measure: ``change`` (the swap, or
    ablating every edge) leaves the metric at ``value``, so every score would be 0, or 0/0 once
    normalised by that effect, and a circuit ranked by them would be arbitrary."""
    return ValueError(
        f"{change} leaves the metric where it was ({value:.4g}): there is no effect to measure; "
        "use pairs whose corrupt prompts change the answer"
    )


def prediction_changed(
    answer_pos: Int[Tensor, " batch"],
    reference: Int[Tensor, " batch"],
    per_example: bool = True,
) -> Metric:
    """A metric: 1.0 where the top-1 prediction at the answer position differs from
    ``reference``, else 0.0; its mean is the paper's strength.

    Args:
        answer_pos: the answer position of each example.
        reference: the prediction to compare with, usually the unpatched run's top-1
            (:func:`top1_predictions`).
        per_example: return ``[batch]`` values (use with ``causal_trace(per_example=True)``)
            or their mean.
    """

    def metric(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        changed = logits_at(logits, answer_pos).argmax(-1) != reference.to(logits.device)
        changed = changed.float()
        return changed if per_example else changed.mean()

    return metric


def answer_logit_difference(
    answer_logits: Float[Tensor, "batch d_vocab"],
    clean_answers: Int[Tensor, " batch"],
    corrupt_answers: Int[Tensor, " batch"],
) -> Float[Tensor, " batch"]:
    """Per example, the logit of the clean answer minus the logit of the corrupt answer, from
    the logits at the answer position: the one logit difference that :func:`logit_difference`
    and the edge analyses use."""
    rows = torch.arange(answer_logits.shape[0], device=answer_logits.device)
    clean = clean_answers.to(answer_logits.device)
    return answer_logits[rows, clean] - answer_logits[rows, corrupt_answers.to(clean.device)]


def logit_difference(
    answer_pos: Int[Tensor, " batch"],
    clean_answers: Int[Tensor, " batch"],
    corrupt_answers: Int[Tensor, " batch"],
    per_example: bool = False,
) -> Metric:
    """A metric: logit of the clean answer minus logit of the corrupt answer, at the answer
    position; the mean over examples, or ``[batch]`` values with ``per_example=True``."""

    def metric(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        diff = answer_logit_difference(
            logits_at(logits, answer_pos), clean_answers, corrupt_answers
        )
        return diff if per_example else diff.mean()

    return metric


@torch.no_grad()
def top1_predictions(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    answer_pos: Int[Tensor, " batch"],
    batch_size: int = 4096,
) -> Int[Tensor, " batch"]:
    """The model's top-1 token at each example's answer position."""
    device = model.cfg.device
    out = []
    for i in range(0, tokens.shape[0], batch_size):
        logits = model(tokens[i : i + batch_size].to(device))
        out.append(logits_at(logits, answer_pos[i : i + batch_size]).argmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
