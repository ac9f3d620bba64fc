"""``HookedTransformerConfig`` presets sized to a task's vocabulary, and model construction.

The paper trains a GPT-2-shaped decoder from scratch (8 layers, d_model 768, 12 heads). The
``"tutorial"`` size is the smallest model we found to grok the tutorial tasks quickly on two CPU
cores (see ``benchmarks/README.md`` for what was tried); ``"tiny"`` exists for tests.
"""

import dataclasses
import difflib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grok_circuits.config import ModelSize
from grok_circuits.tasks import TaskData, task_spec

if TYPE_CHECKING:  # imported where used: TransformerLens takes seconds to import
    from transformer_lens import HookedTransformer, HookedTransformerConfig

#: Shape of each size preset: (n_layers, d_model, n_heads).
SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 32, 2),
    "tutorial": (4, 128, 4),
    "paper": (8, 768, 12),
}


def model_config(
    task: TaskData, size: ModelSize = "tutorial", **overrides
) -> "HookedTransformerConfig":
    """A ``HookedTransformerConfig`` for ``task``: vocabulary and context sized to its tokens.

    Args:
        task: the task the model will be trained on (sets ``d_vocab`` and ``n_ctx``; its
            registration may change the size's shape through ``model_overrides``, e.g. a
            1-layer model without LayerNorm for modular arithmetic).
        size: ``"tiny"``, ``"tutorial"`` or ``"paper"``.
        **overrides: any ``HookedTransformerConfig`` field (e.g. ``n_layers=2``), applied last.
    """
    from transformer_lens import HookedTransformerConfig

    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    known = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    unknown = sorted(set(overrides) - known)
    if unknown:
        close = [m for name in unknown for m in difflib.get_close_matches(name, known, n=1)]
        hint = f"did you mean {close}? " if close else ""
        raise ValueError(
            f"unknown HookedTransformerConfig field(s) {unknown}; {hint}"
            f"the fields are {sorted(known)}"
        )
    n_layers, d_model, n_heads = SIZES[size]
    fields = dict(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_mlp=4 * d_model,
        d_vocab=len(task.vocab),
        n_ctx=task.train.tokens.shape[1],
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        default_prepend_bos=False,
    )
    fields.update(task_spec(task).model_overrides.get(size, {}))
    fields.update(overrides)
    if fields["d_vocab"] < len(task.vocab):
        raise ValueError(
            f"d_vocab={fields['d_vocab']} is smaller than the task's vocabulary ({len(task.vocab)})"
        )
    return HookedTransformerConfig(**fields)


def build_model(
    cfg: "HookedTransformerConfig", seed: int = 0, device: str | torch.device = "cpu"
) -> "HookedTransformer":
    """A freshly initialised ``HookedTransformer``; the same seed gives the same weights.

    The seed is applied inside ``torch.random.fork_rng`` so that building a model leaves the
    caller's global RNG untouched.
    """
    from transformer_lens import HookedTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HookedTransformer(cfg, move_to_device=False)
    return model.to(device, print_details=False)


def config_to_dict(cfg: "HookedTransformerConfig") -> dict:
    """A JSON-safe dict of the config fields needed to rebuild it (no derived fields)."""
    d = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        d[key] = value
    json.dumps(d)  # fail here, not half way through a write
    return d


def config_from_dict(d: dict) -> "HookedTransformerConfig":
    from transformer_lens import HookedTransformerConfig

    d = dict(d)
    if isinstance(d.get("dtype"), str):
        d["dtype"] = getattr(torch, d["dtype"])
    d.pop("device", None)  # chosen where the model is loaded, not where it was trained
    return HookedTransformerConfig.from_dict(d)


def save_config(cfg: "HookedTransformerConfig", path: str | os.PathLike) -> None:
    from grok_circuits.io import atomic_write_json

    atomic_write_json(Path(path), config_to_dict(cfg))


def resolve_device(device: str | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU. Raises a ValueError for a device this
    torch cannot use (not a device name, or CUDA asked for where there is none)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"unknown device {device!r} ({err}); use auto, cpu, cuda or cuda:N"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} asked for, but CUDA is not available to this torch "
            f"({torch.__version__}); use --device cpu (or auto), or install a CUDA build of torch"
        )
    if resolved.type == "cuda" and resolved.index is not None:
        if resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} asked for, but there are {torch.cuda.device_count()} CUDA "
                "devices; use cuda:0 to cuda:N-1, or auto"
            )
    return resolved


def logits_at(
    logits: Float[Tensor, "batch pos d_vocab"], answer_pos: Int[Tensor, " batch"]
) -> Float[Tensor, "batch d_vocab"]:
    """The logits at each example's answer position."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, answer_pos.to(logits.device)]


def answer_logits(
    model: "HookedTransformer", tokens: Int[Tensor, "batch pos"], answer_pos: Int[Tensor, " batch"]
) -> Float[Tensor, "batch d_vocab"]:
    """Run ``model`` on ``tokens`` and keep the logits at each example's answer position."""
    return logits_at(model(tokens, return_type="logits"), answer_pos)
