"""How the training forward pass runs: bf16 autocast and ``torch.compile``, both off by default
(composition's tutorial preset takes bf16 where the hardware has it, ``precision="auto"``).

The paper trains an 8-layer GPT-2-shaped model for up to 1.5M steps; on a GPU two switches of
:class:`~grok_circuits.TrainConfig` make each step cheaper:

- ``precision="bf16"``: the forward pass of the training step runs under
  ``torch.autocast(dtype=torch.bfloat16)`` (matrix products in bf16, reductions and LayerNorm in
  float32, as autocast decides); the answer logits are cast back to float32 before the loss, so
  the loss, its gradient into the logits, the optimizer state and the weights stay float32.
  Evaluation runs the plain float32 model. bf16 keeps float32's exponent range, so no loss
  scaling is needed (unlike float16).
- ``precision="auto"``: bf16 where the training device multiplies bf16 matrices in hardware
  (:func:`native_bf16`: a CUDA GPU with bf16, or a CPU with AVX-512 BF16 or AMX, which
  PyTorch's oneDNN kernels use), else float32. A run resolves it when it starts and stores the
  result, so its record says which it used and resuming it elsewhere keeps it. Composition's
  tutorial preset, the README's main job, uses it: on a CPU with AVX-512 BF16 the run is about
  1.5x faster and groks at the same steps (``benchmarks/README.md``, "The main job's time").
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
from typing import Literal, cast

import torch

from grok_circuits.config import TrainConfig


def training_forward(model: torch.nn.Module, cfg: TrainConfig):
    """What the training step calls: the model itself, or ``torch.compile(model)`` when
    ``cfg.compile`` (sharing its parameters)."""
    return torch.compile(model) if cfg.compile else model


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: a CUDA GPU that supports bf16
    without emulation, or a CPU with AVX-512 BF16 or AMX tiles. Elsewhere bf16 products are
    emulated, which is usually slower than float32."""
    if device.type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch before 2.4 has no emulation and no such argument
            return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":  # PyTorch's own probes; absent from a build, they count as no
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def resolve_precision(precision: str, device: torch.device) -> Literal["float32", "bf16"]:
    """``precision`` made concrete: ``"auto"`` becomes ``"bf16"`` where :func:`native_bf16`
    holds for ``device``, else ``"float32"``; the others stay as they are."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "float32"
    return cast(Literal["float32", "bf16"], precision)


def autocast(precision: str, device: torch.device):
    """A context: bf16 autocast on ``device`` for ``precision="bf16"`` (or ``"auto"`` where
    :func:`resolve_precision` makes it bf16), else nothing."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


__all__ = ["autocast", "native_bf16", "resolve_precision", "training_forward"]
