"""Training plug-ins from the grokking literature, and the two places to add your own.

The training loop (:func:`grok_circuits.train`) has two extension points, and every built-in
plug-in goes through them:

- **a loss**: ``loss(logits [batch, d_vocab_out], targets [batch]) -> scalar`` (the mean over the
  batch), chosen by ``TrainConfig.loss``. Add one with :func:`register_loss`.
- **gradient hooks**: objects called between the backward pass and the optimizer step (before
  gradient clipping) with the model's parameters, which edit ``p.grad`` in place (see
  :class:`GradHook`). A hook with state (a running average) returns it from ``state_dict``; the
  checkpoint stores it, so a resumed run continues exactly. Add one with
  :func:`register_grad_hook` and name it in ``TrainConfig.grad_hooks``.

Both are chosen by name, so the run's ``train_config.json`` says what was used, and a resumed
run refuses to change them.

The built-ins:

- ``loss="stablemax"``: StableMax cross-entropy (Prieto et al. 2025, "Grokking at the edge of
  numerical stability"). Softmax's ``exp`` is replaced by ``s(x) = x + 1`` for ``x >= 0`` and
  ``1 / (1 - x)`` for ``x < 0``, so ``p_i = s(x_i) / sum_j s(x_j)``; the loss is
  ``-log p_target``. It grows only linearly in the logits, so the probabilities do not round to
  exactly 0 and 1 ("softmax collapse"). As in the authors' code it is computed in float64.
- ``loss_float64=True``: the loss of float64 logits (TransformerLens' grokking demo), with any
  loss.
- ``grad_filter="ema"``: Grokfast-EMA (Lee et al. 2024, "Grokfast: accelerated grokking by
  amplifying slow gradients"): ``ema = alpha * ema + (1 - alpha) * g``, then
  ``g = g + lambda * ema``. As in the authors' ``gradfilter_ema``, ``ema`` starts at the first
  gradient.
- ``grad_filter="ma"``: Grokfast-MA: ``g = g + lambda * mean(last window gradients)``, the
  current one included; as in the authors' ``gradfilter_ma`` (``warmup=True``) it starts once
  the window is full. Its state is ``window`` copies of the gradients, which the resume state
  of a checkpoint holds too.
- ``orthograd=True``: ⊥Grad (Prieto et al. 2025): per parameter ``w`` with gradient ``g``,
  ``g_perp = g - (w.g / w.w) w``, rescaled to the norm of ``g``. Applied after the filter.

Off by default, each leaves the loop as it was: a run with every plug-in off computes exactly
the weights and metrics it computed before they existed.
"""

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from grok_circuits.config import TrainConfig

#: ``loss(logits [batch, d_vocab_out], targets [batch]) -> scalar`` (mean over the batch).
LossFn = Callable[[Tensor, Tensor], Tensor]


@runtime_checkable
class GradHook(Protocol):
    """A gradient hook: ``hook(params)`` edits ``p.grad`` of each parameter in place (parameters
    come in ``model.parameters()`` order, the same every step); ``state_dict()`` returns what a
    checkpoint must hold to resume it (tensors, lists and numbers), ``load_state_dict`` restores
    it."""

    def __call__(self, params: Sequence[Tensor]) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


# ----------------------------------------------------------------------------- losses
def stablemax(x: Float[Tensor, "... vocab"]) -> Float[Tensor, "... vocab"]:
    """StableMax probabilities over the last axis: ``s(x_i) / sum_j s(x_j)`` with ``s(x) = x + 1``
    for ``x >= 0`` and ``1 / (1 - x)`` for ``x < 0``."""
    s = _s(x)
    return s / s.sum(-1, keepdim=True)


def _s(x: Tensor) -> Tensor:
    # clamp keeps the branch torch.where discards finite, so its gradient is never inf * 0 = nan
    return torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))


def stablemax_cross_entropy(
    logits: Float[Tensor, "batch vocab"], targets: Int[Tensor, " batch"]
) -> Tensor:
    """StableMax cross-entropy (Prieto et al. 2025): ``-log(s(x_t) / sum_j s(x_j))``, the mean
    over the batch, computed in float64 as in the authors' code."""
    x = logits.double()
    s = _s(x)
    log_p = torch.log(s.gather(-1, targets[:, None])[:, 0]) - torch.log(s.sum(-1))
    return -log_p.mean()


#: The training losses by name (``TrainConfig.loss``); add one with :func:`register_loss`.
LOSSES: dict[str, LossFn] = {
    "cross_entropy": F.cross_entropy,
    "stablemax": stablemax_cross_entropy,
}


def register_loss(name: str, loss: LossFn) -> None:
    """Make ``loss`` (``loss(logits [batch, vocab], targets [batch]) -> mean loss``) available
    as ``TrainConfig(loss=name)``; a later registration of the same name replaces it. Register
    it before training and before resuming (runs store the name, not the function)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a loss needs a non-empty string name, got {name!r}")
    if not callable(loss):
        raise ValueError(f"loss {name!r} must be callable, got {loss!r}")
    LOSSES[name] = loss


def loss_for(cfg: TrainConfig) -> LossFn:
    """The training loss ``cfg`` names (with float64 logits if ``cfg.loss_float64``)."""
    if cfg.loss not in LOSSES:
        raise ValueError(
            f"unknown TrainConfig.loss {cfg.loss!r}; the losses are {sorted(LOSSES)} (add one "
            "with grok_circuits.register_loss)"
        )
    loss = LOSSES[cfg.loss]
    if not cfg.loss_float64:
        return loss
    return lambda logits, targets: loss(logits.double(), targets)


# ----------------------------------------------------------------------------- gradient hooks
def _grads(params: Sequence[Tensor], hook: str) -> list[Tensor]:
    """The gradient of every parameter; a filter that keeps one state per parameter needs all."""
    grads = [p.grad for p in params]
    missing = [i for i, g in enumerate(grads) if g is None]
    if missing:
        raise ValueError(
            f"{hook} filters every parameter's gradient, but parameter(s) {missing} (in "
            "model.parameters() order) have none: train every parameter, or turn the filter off"
        )
    return [g for g in grads if g is not None]


class GrokfastEMA:
    """Grokfast-EMA: ``ema = alpha * ema + (1 - alpha) * g; g += lamb * ema`` (``ema`` starts at
    the first gradient)."""

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0):
        self.alpha, self.lamb = alpha, lamb
        self.ema: list[Tensor] | None = None

    @torch.no_grad()
    def __call__(self, params: Sequence[Tensor]) -> None:
        grads = _grads(params, "Grokfast-EMA")
        if self.ema is None:
            self.ema = [g.detach().clone() for g in grads]
        for ema, g in zip(self.ema, grads):
            ema.mul_(self.alpha).add_(g, alpha=1 - self.alpha)
            g.add_(ema, alpha=self.lamb)

    def state_dict(self) -> dict:
        return {"ema": self.ema}

    def load_state_dict(self, state: dict) -> None:
        self.ema = state["ema"]


class GrokfastMA:
    """Grokfast-MA: once ``window`` gradients are stored, ``g += lamb * mean(last window)``.

    The window's sum is kept as a running total (add the newest, subtract the one leaving), so a
    step costs the same for any window; the total is part of the state, so resuming is exact."""

    def __init__(self, window: int = 100, lamb: float = 5.0):
        self.window, self.lamb = window, lamb
        self.history: list[list[Tensor]] = []  # per step, the gradients of every parameter
        self.total: list[Tensor] | None = None

    @torch.no_grad()
    def __call__(self, params: Sequence[Tensor]) -> None:
        grads = _grads(params, "Grokfast-MA")
        newest = [g.detach().clone() for g in grads]
        self.history.append(newest)
        if self.total is None:
            self.total = [g.clone() for g in newest]
        else:
            for total, g in zip(self.total, newest):
                total.add_(g)
        if len(self.history) > self.window:
            for total, g in zip(self.total, self.history.pop(0)):
                total.sub_(g)
        if len(self.history) == self.window:
            for g, total in zip(grads, self.total):
                g.add_(total, alpha=self.lamb / self.window)

    def state_dict(self) -> dict:
        return {"history": self.history, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.history, self.total = state["history"], state["total"]


class OrthoGrad:
    """⊥Grad: each gradient loses its component along its parameter and keeps its norm."""

    @torch.no_grad()
    def __call__(self, params: Sequence[Tensor]) -> None:
        for p in params:
            if p.grad is None:
                continue
            w, g = p.detach().flatten(), p.grad.flatten()
            perp = g - (w @ g) / (w @ w + 1e-30) * w
            p.grad.copy_((perp * (g.norm() / (perp.norm() + 1e-30))).view_as(p.grad))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


#: Gradient hooks by name: ``factory(cfg) -> GradHook``.
GRAD_HOOKS: dict[str, Callable[[TrainConfig], GradHook]] = {
    "ema": lambda cfg: GrokfastEMA(cfg.grad_filter_alpha, cfg.grad_filter_lamb),
    "ma": lambda cfg: GrokfastMA(cfg.grad_filter_window, cfg.grad_filter_lamb),
    "orthograd": lambda cfg: OrthoGrad(),
}


def register_grad_hook(name: str, factory: Callable[[TrainConfig], GradHook]) -> None:
    """Make a gradient hook available as ``TrainConfig(grad_hooks=(name,))``.

    Args:
        name: the name runs store; register it before training and before resuming.
        factory: ``factory(cfg) -> hook``, called once per training run with its
            :class:`TrainConfig`; the hook follows :class:`GradHook`.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a gradient hook needs a non-empty string name, got {name!r}")
    if not callable(factory):
        raise ValueError(f"the factory of gradient hook {name!r} must be callable")
    GRAD_HOOKS[name] = factory


def grad_hooks_for(cfg: TrainConfig) -> list[GradHook]:
    """The gradient hooks ``cfg`` turns on, in the order they run: the Grokfast filter, ⊥Grad,
    then ``cfg.grad_hooks``."""
    names: list[str] = [cfg.grad_filter] if cfg.grad_filter else []
    names += ["orthograd"] if cfg.orthograd else []
    names += list(cfg.grad_hooks)
    unknown = [n for n in names if n not in GRAD_HOOKS]
    if unknown:
        raise ValueError(
            f"unknown gradient hook(s) {unknown} in TrainConfig.grad_hooks; the hooks are "
            f"{sorted(GRAD_HOOKS)} (add one with grok_circuits.register_grad_hook)"
        )
    return [GRAD_HOOKS[n](cfg) for n in names]


__all__ = [
    "GRAD_HOOKS",
    "LOSSES",
    "GradHook",
    "GrokfastEMA",
    "GrokfastMA",
    "LossFn",
    "OrthoGrad",
    "grad_hooks_for",
    "loss_for",
    "register_grad_hook",
    "register_loss",
    "stablemax",
    "stablemax_cross_entropy",
]
