"""How the training forward pass runs: bf16 autocast and ``torch.compile``, both off by default.

The paper trains an 8-layer GPT-2-shaped model for up to 1.5M steps; on a GPU two switches of
:class:`~grok_circuits.TrainConfig` make each step cheaper:

- ``precision="bf16"``: the forward pass of the training step runs under
  ``torch.autocast(dtype=torch.bfloat16)`` (matrix products in bf16, reductions and LayerNorm in
  float32, as autocast decides); the answer logits are cast back to float32 before the loss, so
  the loss, its gradient into the logits, the optimizer state and the weights stay float32.
  Evaluation runs the plain float32 model. bf16 keeps float32's exponent range, so no loss
  scaling is needed (unlike float16).
- ``compile=True``: the training forward pass goes through ``torch.compile(model)`` (the same
  parameters; evaluation and the analyses run the plain model, whose hooks compile would not
  see). Compiling takes tens of seconds once per process, so it pays off only
  for long runs.

Neither is exact: compiled kernels and bf16 round differently, so a run with either differs from
one without by floating-point noise that training can amplify; ``benchmarks/paper_scale.py``
measures how far the metrics move over 200 steps. Both are fixed for a run (a resumed run may not
switch them). :mod:`grok_circuits.training.throughput` times the training step with each.
"""

from contextlib import nullcontext

import torch

from grok_circuits.config import TrainConfig


def training_forward(model: torch.nn.Module, cfg: TrainConfig):
    """What the training step calls: the model itself, or ``torch.compile(model)`` when
    ``cfg.compile`` (sharing its parameters)."""
    return torch.compile(model) if cfg.compile else model


def autocast(precision: str, device: torch.device):
    """A context: bf16 autocast on ``device`` for ``precision="bf16"``, else nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


__all__ = ["autocast", "training_forward"]
