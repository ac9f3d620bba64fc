"""Model config presets sized to a task's vocabulary, and model construction (through
:mod:`grok_circuits.backend`, on TransformerLens 3.x or 4.x).

The paper trains a GPT-2-shaped decoder from scratch (8 layers, d_model 768, 12 heads). The
``"tutorial"`` size is the smallest model we found to grok the tutorial tasks quickly on two CPU
cores (see ``benchmarks/README.md`` for what was tried); ``"tiny"`` exists for tests.
"""

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from grok_circuits import backend
from grok_circuits.config import ModelSize
from grok_circuits.recurrence import Recurrence, make_recurrent, nominal
from grok_circuits.tasks import TaskData, task_spec

if TYPE_CHECKING:  # imported where used: TransformerLens takes seconds to import
    from grok_circuits.backend import Model, ModelConfig

#: Shape of each size preset: (n_layers, d_model, n_heads).
SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 32, 2),
    "tutorial": (4, 128, 4),
    "paper": (8, 768, 12),
}


def model_config(task: TaskData, size: ModelSize = "tutorial", **overrides) -> "ModelConfig":
    """The model config for ``task`` (a ``HookedTransformerConfig`` on TransformerLens 3.x, a
    ``TransformerBridgeConfig`` on 4.x): vocabulary and context sized to its tokens.

    Args:
        task: the task the model will be trained on (sets ``d_vocab``, and ``n_ctx`` to its
            widest prompt, which a k-hop composition test may hold; its
            registration may change the size's shape through ``model_overrides``, e.g. a
            1-layer model without LayerNorm for modular arithmetic).
        size: ``"tiny"``, ``"tutorial"`` or ``"paper"``.
        **overrides: any of :data:`grok_circuits.backend.PORTABLE_FIELDS` (e.g.
            ``n_layers=2``), applied last. Where they change ``d_model`` or ``n_heads`` but
            not ``d_head``, ``d_head`` becomes ``d_model / n_heads``, as in every size
            (``d_mlp`` stays the size's unless given).

    Raises a ValueError naming a field whose value no model can have (:func:`check_shape`).
    """
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    known = set(backend.PORTABLE_FIELDS)
    unknown = sorted(set(overrides) - known)
    if unknown:
        close = [m for name in unknown for m in difflib.get_close_matches(name, known, n=1)]
        hint = f"did you mean {close}? " if close else ""
        raise ValueError(
            f"unknown model config field(s) {unknown}; {hint}the fields are {sorted(known)}"
        )
    n_layers, d_model, n_heads = SIZES[size]
    fields: dict[str, Any] = dict(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_mlp=4 * d_model,
        d_vocab=len(task.vocab),
        n_ctx=max(s.tokens.shape[1] for s in task.splits.values()),  # k-hop tests are wider
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        default_prepend_bos=False,
    )
    fields.update(task_spec(task).model_overrides.get(size, {}))
    fields.update(overrides)
    _derive_d_head(fields, overrides)
    check_shape(fields)
    if fields["d_vocab"] < len(task.vocab):
        raise ValueError(
            f"d_vocab={fields['d_vocab']} is smaller than the task's vocabulary ({len(task.vocab)})"
        )
    return backend.make_config(**fields)


def _derive_d_head(fields: dict, overrides: dict) -> None:
    """Make ``d_head`` follow an overridden ``d_model`` or ``n_heads`` (unless it is overridden
    too), so that ``n_heads=4`` means four heads sharing ``d_model``."""
    if "d_head" not in overrides and {"d_model", "n_heads"} & set(overrides):
        _need_count(fields, "d_model")
        _need_count(fields, "n_heads")
        if fields["d_model"] % fields["n_heads"]:
            raise ValueError(
                f"model config n_heads={fields['n_heads']} must divide "
                f"d_model={fields['d_model']} (each head gets d_model / n_heads dimensions); "
                "choose a divisor, or give d_head too"
            )
        fields["d_head"] = fields["d_model"] // fields["n_heads"]


def _need_count(fields: "Mapping", name: str, hint: str = "") -> None:
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"model config {name} must be an integer >= 1{hint}, got {value!r}")


def check_shape(cfg: "ModelConfig | Mapping") -> None:
    """A ValueError naming the first shape field of a model config (or its dict) that no model
    can have: ``n_layers``, ``d_model``, ``n_heads``, ``d_head``, ``d_vocab``, ``n_ctx`` and,
    unless ``attn_only``, ``d_mlp`` must be integers >= 1. (TransformerLens accepts
    ``n_layers=0``, and trains a model with no blocks that every analysis then fails on.)"""
    fields = cfg if isinstance(cfg, Mapping) else backend.config_to_dict(cfg)
    for name in ("n_layers", "d_model", "n_heads", "d_head", "d_vocab", "n_ctx"):
        _need_count(fields, name)
    if not fields.get("attn_only"):
        _need_count(fields, "d_mlp", " (or attn_only=true for a model without MLPs)")


def build_model(
    cfg: "ModelConfig",
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_loops: int = 1,
    recurrence: Recurrence | None = None,
) -> "Model":
    """A freshly initialised model (``HookedTransformer`` on TransformerLens 3.x,
    ``TransformerBridge`` on 4.x); the same seed gives the same weights on both.

    The seed is applied inside ``torch.random.fork_rng`` so that building a model leaves the
    caller's global RNG untouched. ``n_loops > 1`` shares the blocks' parameters across
    ``n_loops`` passes (:func:`share_blocks`); ``recurrence`` makes it the recurrent-depth
    model it describes (:func:`grok_circuits.recurrence.make_recurrent`; ``cfg.n_layers`` must
    be its nominal depth); with neither, the usual model.
    """
    check_loops(cfg.n_layers, n_loops)
    if recurrence is not None and n_loops > 1:
        raise ValueError("give n_loops or recurrence, not both (n_loops is one recurrence)")
    model = backend.build_model(cfg, seed=seed, device=device)
    if recurrence is not None:
        return make_recurrent(model, recurrence)
    return share_blocks(model, n_loops) if n_loops > 1 else model


# ----------------------------------------------------------------------------- shared layers
# Appendix E.2 of Wang et al. (2024): sharing the parameters of the lower and the upper half of
# the network ("in the spirit of the Universal Transformer": 4 layers run twice) lets OOD
# composition generalize, slowly, because the upper half then holds every atomic fact the lower
# half learned as a first hop. Here the model stays one model with ``n_layers``
# blocks, and block ``i`` holds the *same parameter objects* as block ``i % n_unique_layers``:
# every hook point, cache entry and per-block analysis still exists per block (per pass), while
# the optimizer, the weight norm and the checkpoints see each shared parameter once.


def check_loops(n_layers: int, n_loops: int) -> int:
    """The number of unique blocks, ``n_layers // n_loops``; a ValueError unless ``n_loops``
    divides ``n_layers``."""
    if not isinstance(n_loops, int) or n_loops < 1 or n_layers % n_loops:
        raise ValueError(
            f"n_loops={n_loops!r} must be an integer >= 1 that divides n_layers={n_layers} "
            f"(the model runs n_layers / n_loops unique blocks n_loops times); use one of "
            f"{[k for k in range(1, n_layers + 1) if n_layers % k == 0]}"
        )
    return n_layers // n_loops


def share_blocks(model: "Model", n_loops: int) -> "Model":
    """Make ``model`` run ``n_layers / n_loops`` unique blocks ``n_loops`` times, in place.

    Block ``i`` takes the parameter objects of block ``i % n_unique_layers`` (its own initial
    values are dropped), so a gradient step on one moves all its copies, and the model remains
    a plain model whose hooks name every block. It is the recurrent-depth model
    ``Recurrence.from_loops(n_layers, n_loops)`` (:mod:`grok_circuits.recurrence`), so
    :func:`~grok_circuits.recurrence.set_iterations` runs it any number of passes. Returns
    ``model``.
    """
    check_loops(model.cfg.n_layers, n_loops)
    return make_recurrent(model, Recurrence.from_loops(model.cfg.n_layers, n_loops))


def count_loops(model: "Model") -> int:
    """How many times ``model`` runs its unique blocks (1 for a model without shared blocks)."""
    params = dict(backend.named_parameters(model))
    first = params["blocks.0.attn.W_Q"]
    n_unique = next(
        (i for i in range(1, model.cfg.n_layers) if params[f"blocks.{i}.attn.W_Q"] is first),
        model.cfg.n_layers,
    )
    return model.cfg.n_layers // n_unique


def _aliases(model: "Model") -> dict[str, str]:
    """Parameter name -> the name of the first parameter it is the same object as, for every
    parameter that repeats one before it (empty without shared blocks)."""
    first: dict[int, str] = {}
    out = {}
    for name, param in backend.named_parameters(model):
        if id(param) in first:
            out[name] = first[id(param)]
        else:
            first[id(param)] = name
    return out


def model_weights(model: "Model") -> dict[str, Tensor]:
    """The state dict in ``HookedTransformer``'s format (on either TransformerLens version) with
    every shared parameter once (under its first block's name): what a checkpoint stores."""
    with nominal(model):  # a recurrent model's weights are named in its nominal layout
        aliases = _aliases(model)
        return {k: v for k, v in backend.model_weights(model).items() if k not in aliases}


def load_weights(model: "Model", weights: dict[str, Tensor]) -> "Model":
    """Load weights saved by :func:`model_weights` (or a full state dict in
    ``HookedTransformer``'s format) into ``model``, keeping its shared blocks shared. Returns
    ``model``.

    Raises a ValueError if the weights do not fit the model's sharing: weights of a model with
    shared blocks into one without (its repeated blocks are missing), or weights whose copies of
    a shared parameter differ. A recurrent model takes them in its nominal layout, whatever
    count it runs now.
    """
    with nominal(model):
        return _load_weights(model, weights)


def _load_weights(model: "Model", weights: dict[str, Tensor]) -> "Model":
    aliases = _aliases(model)
    full = dict(weights)
    for name, source in aliases.items():
        if name not in full:
            if source in full:
                full[name] = full[source]
        elif source in full and not torch.equal(full[name], full[source]):
            raise ValueError(
                f"the weights hold different values for {name} and {source}, which this model "
                "shares (n_loops > 1); load them into a model built with the n_loops they were "
                "trained with"
            )
    missing = sorted(set(backend.model_weights(model)) - set(full))
    if missing:
        raise ValueError(
            f"the weights lack {missing[:4]}{' ...' if len(missing) > 4 else ''}: they come "
            "from a model with shared blocks; build this one with the same n_loops "
            "(TrainConfig.n_loops)"
        )
    return backend.load_weights(model, full)


config_to_dict = backend.config_to_dict
config_from_dict = backend.config_from_dict


def save_config(cfg: "ModelConfig", path: str | os.PathLike) -> None:
    """Write ``cfg``'s portable fields to ``path`` as JSON, atomically (a run's
    ``model_config.json``)."""
    from grok_circuits.io import atomic_write_json

    atomic_write_json(Path(path), config_to_dict(cfg))


def resolve_device(device: str | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU. Raises a ValueError for a device this
    torch cannot use (not a device name, or CUDA asked for where there is none)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:  # its message lists every device type torch knows: twenty of them
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
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
    model: "Model", tokens: Int[Tensor, "batch pos"], answer_pos: Int[Tensor, " batch"]
) -> Float[Tensor, "batch d_vocab"]:
    """Run ``model`` on ``tokens`` and keep the logits at each example's answer position."""
    return logits_at(model(tokens, return_type="logits"), answer_pos)
