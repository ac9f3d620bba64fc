"""Progress measures: quantities logged at every evaluation that need no test set.

Test accuracy tells when a run has grokked; these are measured on training examples only, and
some of them move before test accuracy does. :func:`grok_circuits.train` logs them into the
run's ``metrics.json`` (next to the weight norm), and ``grok-circuits report`` plots them under
the accuracy curves. All are computed on a fixed sample of :data:`MEASURE_SIZE` examples.

- ``softmax_collapse``: the share of training examples whose float32 softmax gives the correct
  class a probability of exactly 1 (Prieto et al. 2025, "Grokking at the edge of numerical
  stability"). Such examples contribute no gradient through the loss any more, which the paper
  blames for stalled grokking without weight decay.
- ``grad_alignment``: the cosine between the negative training gradient ``-g`` and the weights
  ``w`` (all parameters as one vector). Prieto et al. call gradient descent along ``w`` (scaling
  the logits up, cos -> 1) "naive loss minimisation": it lowers the loss without changing the
  prediction.
- ``train_loss``, ``train_loss_inferred``, ``train_loss_atomic``: the training loss on the
  sample, and on its rows that are inferred facts (a ``*train_inferred`` probe) and atomic facts
  (an ``*atomic`` probe). A task whose training set has no atomic facts (modular arithmetic) logs
  no ``train_loss_atomic``.
- ``lens_mid_<target>_mrr``: the logit lens at the middle layer (the residual stream after
  ``n_layers // 2`` blocks) on training inferred examples: the mean reciprocal rank of each of
  the task's registered lens targets (``register_task(lens_targets=...)``), e.g.
  ``lens_mid_bridge@r1_mrr`` for composition: the bridge entity decoded at the ``r1`` position,
  the first hop that the generalizing circuit stores mid-network (Wang et al. 2024, section 5).
  Tasks without lens targets, and one-layer models, skip it.

Computing them does not touch the model's ``.grad``, its weights or the random state, so the
training metrics and weights are those of a run without them.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from grok_circuits import backend
from grok_circuits.backend import Model
from grok_circuits.model import answer_logits
from grok_circuits.tasks import Split, TaskData
from grok_circuits.tasks.registry import lens_targets

#: Examples each measure is computed on (a fixed sample, the same at every evaluation).
MEASURE_SIZE = 512


def softmax_collapse(logits: Float[Tensor, "batch vocab"], targets: Int[Tensor, " batch"]) -> float:
    """The share of examples whose float32 softmax rounds the target's probability to exactly 1."""
    p = logits.float().softmax(-1).gather(-1, targets[:, None])[:, 0]
    return float((p == 1.0).float().mean())


def gradient_alignment(grads: list[Tensor], params: list[Tensor]) -> float:
    """``cos(-g, w)``, with every gradient and every parameter flattened into one vector."""
    g = torch.cat([x.detach().flatten().double() for x in grads])
    w = torch.cat([x.detach().flatten().double() for x in params])
    return float(-(g @ w) / (g.norm() * w.norm()).clamp(min=1e-300))


def middle_layer(n_layers: int) -> int | None:
    """The row of the logit lens read as "the middle layer": the residual stream after
    ``n_layers // 2`` blocks; None for one-layer models, which have no middle."""
    return n_layers // 2 if n_layers >= 2 else None


@torch.no_grad()
def lens_mrr_at(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    targets: Int[Tensor, " batch"],
    positions: Int[Tensor, " batch"],
    layer: int,
) -> float:
    """The logit-lens MRR of ``targets`` at ``positions`` in the residual stream before block
    ``layer`` (``layer == n_layers``: the final one), decoded through the final LayerNorm (with
    the state's own statistics) and the unembedding; rank 0 is the top token, ties counted in the
    target's favour. One row of :func:`grok_circuits.logit_lens`, at the cost of one forward
    pass."""
    n = model.cfg.n_layers
    name = f"blocks.{layer}.hook_resid_pre" if layer < n else f"blocks.{n - 1}.hook_resid_post"
    _, cache = model.run_with_cache(tokens, names_filter=name, stop_at_layer=min(layer + 1, n))
    rows = torch.arange(len(tokens), device=tokens.device)
    state = cache[name][rows, positions]
    if model.cfg.normalization_type is not None:
        state = model.ln_final(state)
    logits = model.unembed(state[:, None])[:, 0]
    rank = (logits > logits.gather(-1, targets[:, None])).sum(-1)
    return float((1.0 / (rank.double() + 1)).mean())


def _row_keys(split: Split) -> list[tuple[int, ...]]:
    """Each example as (prompt up to the answer position, answer): equal rows are equal facts."""
    return [
        (*t[: int(p) + 1].tolist(), int(a))
        for t, p, a in zip(split.tokens, split.answer_pos, split.answers)
    ]


class ProgressMeasures:
    """The progress measures of one task, ready to compute at every evaluation.

    Args:
        task: the task; its training split and lens targets choose the examples.
        loss: the training loss (``TrainConfig.loss``), for the gradient and the train losses.
        size: examples per measure (a fixed sample, seed 0).
        device: where the examples live (the model's device).

    Calling it with a model returns ``{column: value}`` (see the module docstring).
    """

    def __init__(
        self,
        task: TaskData,
        loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        size: int = MEASURE_SIZE,
        device: str | torch.device = "cpu",
    ):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.loss = loss
        sample = task.train.sample(size, seed=0)
        keys = _row_keys(sample)
        self.kinds: dict[str, Tensor] = {}
        for kind, suffix in (("inferred", "train_inferred"), ("atomic", "atomic")):
            known = {
                k for name, s in task.splits.items() if name.endswith(suffix) for k in _row_keys(s)
            }
            mask = torch.tensor([k in known for k in keys], dtype=torch.bool)
            if mask.any():
                self.kinds[kind] = mask.to(device)
        self.sample = sample.to(device)
        self.lens: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        probe = task.splits[task.key_probes["train"]].sample(size, seed=0)
        for name, (targets, positions) in lens_targets(task, probe).items():
            self.lens[name] = (probe.tokens.to(device), targets.to(device), positions.to(device))

    def __call__(self, model: Model) -> dict[str, float]:
        was_training = model.training
        model.eval()
        params = backend.parameters(model)
        with torch.enable_grad():
            logits = answer_logits(model, self.sample.tokens, self.sample.answer_pos)
            loss = self.loss(logits, self.sample.answers)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        logits = logits.detach()
        out = {
            "softmax_collapse": softmax_collapse(logits, self.sample.answers),
            "grad_alignment": gradient_alignment(grads, params),
            "train_loss": float(loss.detach()),
        }
        with torch.no_grad():
            for kind, mask in self.kinds.items():
                out[f"train_loss_{kind}"] = float(
                    self.loss(logits[mask], self.sample.answers[mask])
                )
        layer = middle_layer(model.cfg.n_layers)
        if layer is not None:
            for name, (tokens, targets, positions) in self.lens.items():
                out[f"lens_mid_{name}_mrr"] = lens_mrr_at(model, tokens, targets, positions, layer)
        model.train(was_training)
        return out


def progress_measures(
    model: Model,
    task: TaskData,
    loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    size: int = MEASURE_SIZE,
) -> dict[str, float]:
    """The progress measures of ``model`` on ``task`` (see the module docstring), e.g. for the
    checkpoints of a run trained before they were logged::

        rows = [progress_measures(run.model(s), run.task) for s in run.steps]
    """
    device = next(model.parameters()).device
    return ProgressMeasures(task, loss, size, device)(model)


__all__ = [
    "MEASURE_SIZE",
    "ProgressMeasures",
    "gradient_alignment",
    "lens_mrr_at",
    "middle_layer",
    "progress_measures",
    "softmax_collapse",
]
