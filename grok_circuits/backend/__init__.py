"""The model backend: how a model is built, stored, moved and hooked on the installed
TransformerLens.

TransformerLens 3.x builds a model from scratch as a ``HookedTransformer``; 4.0 removed that
path, and the 4.x way is a ``TransformerBridge``. Each line has a backend module,
:mod:`~grok_circuits.backend.hooked` and :mod:`~grok_circuits.backend.bridge`, with the members
:class:`~grok_circuits.backend.protocol.Backend` lists; the two modules are the only places that
know how the lines differ. This package registers them in :data:`BACKENDS`, selects the one
that handles the installed version once, at import, and offers its functions here, so the rest
of the package writes ``backend.build_model(cfg)`` and, where a method needs something not
every backend has, asks for it by name: ``backend.supports("midway_start", model)``
(:data:`~grok_circuits.backend.protocol.CAPABILITIES`). It never asks for a version;
:data:`BACKEND` and :data:`TL_VERSION` are for messages and run metadata.

What every backend shares (the stored config fields, ``HookedTransformer``'s parameter layout
and initial weights, the weight-decay rule) is in :mod:`~grok_circuits.backend._base`: a run's
files hold only that, so a run trained under one line reads under the other.

A new backend is one module with the members of
:class:`~grok_circuits.backend.protocol.Backend`, registered with :func:`register_backend`
(one line below for a built-in one); :func:`use_backend` makes a registered backend the active
one for a block of code.
"""

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from grok_circuits.backend import bridge, hooked
from grok_circuits.backend._base import (
    PORTABLE_FIELDS,
    TL_VERSION,
    block_params,
    config_to_dict,
    decays,
    portable,
    reference_init,
    tl3_layout,
)
from grok_circuits.backend.protocol import (
    CAPABILITIES,
    MEMBERS,
    Backend,
    Capability,
    missing_members,
)

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens import HookedTransformer as Model  # noqa: F401
    from transformer_lens import HookedTransformerConfig as ModelConfig  # noqa: F401

# ----------------------------------------------------------------------------- the registry
#: The registered backends by name, in registration order.
BACKENDS: dict[str, Backend] = {}


def register_backend(candidate: Backend) -> Backend:
    """Register a backend (a module with the members of
    :class:`~grok_circuits.backend.protocol.Backend`) under its ``NAME``, replacing one of the
    same name. Returns it. A TypeError names the members it lacks."""
    missing = missing_members(candidate)
    if missing:
        raise TypeError(
            f"{candidate!r} is not a backend: it lacks {missing}; a backend defines "
            f"{list(MEMBERS)} (see grok_circuits.backend.protocol)"
        )
    BACKENDS[candidate.NAME] = candidate
    return candidate


def select(tl_version: str = TL_VERSION) -> Backend:
    """The registered backend that handles TransformerLens ``tl_version`` (the latest
    registered, where several do)."""
    for candidate in reversed(BACKENDS.values()):
        if candidate.handles(tl_version):
            return candidate
    raise RuntimeError(
        f"no grok_circuits backend handles TransformerLens {tl_version} (registered: "
        f"{list(BACKENDS)}); install transformer-lens 3.x or 4.x"
    )


register_backend(hooked)
register_backend(bridge)
_active: Backend = select()


def active() -> Backend:
    """The backend in use."""
    return _active


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Make the registered backend ``name`` the active one for the duration of the block."""
    global _active
    if name not in BACKENDS:
        raise ValueError(f"no backend {name!r}; registered: {list(BACKENDS)}")
    saved, _active = _active, BACKENDS[name]
    try:
        yield _active
    finally:
        _active = saved


def __getattr__(name: str):
    # ``Model`` / ``ModelConfig`` import TransformerLens (seconds), so only when asked for.
    if name == "Model":
        return _active.model_class()
    if name == "ModelConfig":
        return _active.config_class()
    if name == "BACKEND":  # the active backend's name, in words
        return _active.NAME
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- capabilities
def supports(capability: Capability, model: Any = None) -> bool:
    """Whether the active backend has ``capability`` (one of
    :data:`~grok_circuits.backend.protocol.CAPABILITIES`), for ``model`` if one is given (an
    object that is not a model has none). A ValueError names an unknown capability."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}; one of {list(CAPABILITIES)}")
    if model is not None and not isinstance(model, torch.nn.Module):
        return False
    return _active.supports(capability, model)


# ----------------------------------------------------------------------------- config
def model_class() -> type:
    """The active backend's model class (``HookedTransformer`` on 3.x, ``TransformerBridge``
    on 4.x)."""
    return _active.model_class()


def config_class() -> type:
    """The active backend's config class (``HookedTransformerConfig`` on 3.x,
    ``TransformerBridgeConfig`` on 4.x)."""
    return _active.config_class()


def make_config(**fields: Any) -> "ModelConfig":
    """The active backend's model config from :data:`PORTABLE_FIELDS` values.

    Raises a ValueError naming a field that is not portable (a run made with it could not be
    read by the other TransformerLens line) or that the backend cannot build."""
    return _active.make_config(portable(fields))


def config_from_dict(d: dict) -> "ModelConfig":
    """A config from a stored dict: :func:`config_to_dict`'s, or the older files that hold every
    ``HookedTransformerConfig`` field (the others are derived or left at their defaults)."""
    return make_config(**{k: v for k, v in d.items() if k in PORTABLE_FIELDS})


# ----------------------------------------------------------------------------- models
def build_model(cfg: "ModelConfig", seed: int = 0, device: str | torch.device = "cpu") -> "Model":
    """A freshly initialised model whose weights, for a seed, are the same on every backend
    (``HookedTransformer``'s: :func:`reference_init`).

    The seed is applied inside ``torch.random.fork_rng``, so building a model leaves the
    caller's RNG untouched. The model gets its own copy of ``cfg``: moving a model rewrites
    ``cfg.device``, and two models built from one config (say one on the CPU and one on the
    GPU) must not share it."""
    return _active.build_model(cfg, seed, device)


def to_device(model: "Model", device: str | torch.device) -> "Model":
    """``model`` on ``device`` (silently: both TransformerLens lines print a line otherwise)."""
    return _active.to_device(model, device)


def named_parameters(model: "Model") -> list[tuple[str, torch.nn.Parameter]]:
    """Every parameter under its ``HookedTransformer`` name, in ``HookedTransformer``'s order,
    on every backend; a parameter shared by several blocks appears under each name."""
    return _active.named_parameters(model)


def parameters(model: "Model") -> list[torch.nn.Parameter]:
    """Each parameter once, in ``HookedTransformer``'s order (what the optimizer gets)."""
    seen, out = set(), []
    for _, p in named_parameters(model):
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def model_weights(model: "Model") -> dict[str, Tensor]:
    """The full state dict in ``HookedTransformer``'s format (what a checkpoint stores)."""
    return _active.model_weights(model)


def load_weights(model: "Model", weights: dict[str, Tensor]) -> "Model":
    """Load a state dict in ``HookedTransformer``'s format into ``model`` (strictly; a
    ValueError says what does not fit). Returns ``model``."""
    return _active.load_weights(model, weights)


def set_blocks(model: "Model", blocks: Sequence[torch.nn.Module]) -> None:
    """Make ``model`` run ``blocks`` (block modules of models this backend built; the same
    module may not appear twice) in order, ``cfg.n_layers`` following, every hook point named
    by its block's new position: how :mod:`grok_circuits.recurrence` changes a recurrent
    model's number of iterations."""
    _active.set_blocks(model, blocks)


def param_groups(model: "Model") -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(decayed, not decayed) parameters, each once, in ``HookedTransformer``'s order
    (:func:`decays`)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    seen: set[int] = set()
    for name, p in named_parameters(model):
        if id(p) in seen:
            continue
        seen.add(id(p))
        (decay if decays(name) else no_decay).append(p)
    return decay, no_decay


# ----------------------------------------------------------------------------- hooks
def split_qkv_hooks(model: "Model", fwd_hooks: list) -> list:
    """``fwd_hooks`` (``(name, fn)`` pairs for ``model.hooks``) that may use
    ``HookedTransformer``'s per-head query, key and value inputs,
    ``blocks.{l}.hook_{q,k,v}_input`` (``[batch, pos, head, d_model]``: the residual stream
    before ``ln1``, one copy per head, as ``use_split_qkv_input`` gives them), in a form this
    model runs under :func:`edge_hooks`: as they are where they are the model's own hook points
    (``"split_qkv_input"``), emulated otherwise (on the 4.x bridge, recomputed from the layer's
    residual input and weights)."""
    return _active.split_qkv_hooks(model, fwd_hooks)


@contextlib.contextmanager
def edge_hooks(model: "Model") -> Iterator[None]:
    """Switch on the hook points the edge graph reads (a q/k/v input per head, the MLP input)
    and restore the model's settings afterwards, also on error. Hooks on the q/k/v inputs go
    through :func:`split_qkv_hooks`. A NotImplementedError where the model has no
    ``"edge_graph"``."""
    if not supports("edge_graph", model):
        raise NotImplementedError(
            f"the edge graph needs a query, key and value input per head, which TransformerLens "
            f"{TL_VERSION} does not give this model (normalization "
            f"{model.cfg.normalization_type!r}); use TransformerLens 3.x: pip install -e '.[tl3]'"
        )
    with _active.edge_hooks(model):
        yield


@contextlib.contextmanager
def fused_layer_norm(model: "Model") -> Iterator[None]:
    """For the duration, ``model``'s LayerNorms computed by torch's fused kernel
    (``F.layer_norm``): the same function as TransformerLens' step-by-step arithmetic, rounded
    differently (logits within about 1e-5), and for small models much faster on the CPU, where
    the step-by-step version is a quarter of a training step. A LayerNorm with a hook on its
    ``hook_scale`` or ``hook_normalized`` is left as it is, so hooks always fire; restored
    afterwards, also on error. The training loop uses it under
    ``TrainConfig(fused_layer_norm=True)``; analyses never do."""
    with _active.fused_layer_norm(model):
        yield


def forward_midway(
    model: "Model",
    resid: Tensor,
    layer: int,
    past: Sequence[tuple[Tensor, Tensor]] | None = None,
) -> Tensor:
    """Logits of a forward pass that starts at block ``layer`` (``"midway_start"``).

    Args:
        resid: ``[batch, pos, d_model]``, the residual stream entering block ``layer`` at the
            positions computed (those after the ``past`` ones).
        past: for each block from ``layer`` on, the earlier positions' keys and values
            (``[batch, past_pos, head, d_head]`` each), which the computed positions attend to
            and which are not changed; None when no earlier position is kept.

    Returns:
        ``[batch, pos, d_vocab]``: the logits at the computed positions.
    """
    return _active.forward_midway(model, resid, layer, past)


__all__ = [
    "BACKENDS",
    "CAPABILITIES",
    "PORTABLE_FIELDS",
    "TL_VERSION",
    "Backend",
    "Capability",
    "active",
    "block_params",
    "build_model",
    "config_class",
    "config_from_dict",
    "config_to_dict",
    "decays",
    "edge_hooks",
    "forward_midway",
    "fused_layer_norm",
    "load_weights",
    "make_config",
    "model_class",
    "model_weights",
    "named_parameters",
    "param_groups",
    "parameters",
    "reference_init",
    "register_backend",
    "select",
    "set_blocks",
    "split_qkv_hooks",
    "supports",
    "tl3_layout",
    "to_device",
    "use_backend",
]
