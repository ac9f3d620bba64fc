"""What a backend is: the functions through which the package builds, stores, moves and hooks a
model, and the named capabilities the analyses ask about instead of asking for a version.

A backend is a module (any object will do) with the members of :class:`Backend`.
:mod:`grok_circuits.backend` registers one per TransformerLens line
(:mod:`~grok_circuits.backend.hooked` for 3.x, :mod:`~grok_circuits.backend.bridge` for 4.x),
picks the one whose :meth:`~Backend.handles` accepts the installed version, and re-exports its
functions. Code elsewhere calls ``backend.build_model(...)`` or asks
``backend.supports("midway_start", model)``; it never asks which backend or version it is on.
"""

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

#: What an analysis may ask a backend (or one of its models) for, by name.
Capability = Literal[
    "edge_graph", "midway_start", "split_qkv_input", "attn_result", "all_architectures"
]

#: Each capability, in words.
CAPABILITIES: dict[str, str] = {
    "edge_graph": (
        "a query, key and value input per head (blocks.{l}.hook_{q,k,v}_input, through "
        "split_qkv_hooks) and an MLP input (blocks.{l}.hook_mlp_in) under edge_hooks: what edge "
        "attribution and faithfulness read and patch"
    ),
    "midway_start": (
        "a forward pass can start at block L with the earlier positions' keys and values given "
        "(start_at_layer and a frozen past_kv_cache, honoured): forward_midway"
    ),
    "split_qkv_input": (
        "the per-head q/k/v inputs are the model's own hook points (use_split_qkv_input), not "
        "recomputed by split_qkv_hooks"
    ),
    "attn_result": "each head's output has its own hook point, attn.hook_result (use_attn_result)",
    "all_architectures": (
        "every architecture the stored config fields describe can be built: rotary positions, "
        "gated MLPs, grouped-query attention, every init_mode"
    ),
}


@runtime_checkable
class Backend(Protocol):
    """The members a backend provides. ``Model`` and ``ModelConfig`` below are the backend's
    :meth:`model_class` and :meth:`config_class`; weights always travel in
    ``HookedTransformer``'s state-dict format and parameters under its names, whatever the
    backend holds inside, so that a run reads back on every backend."""

    #: The backend's name, in words (run metadata and messages).
    NAME: str

    def handles(self, tl_version: str) -> bool:
        """Whether this backend runs on TransformerLens ``tl_version``."""

    def model_class(self) -> type:
        """The class of the models this backend builds."""

    def config_class(self) -> type:
        """The class of their configs."""

    def make_config(self, fields: dict[str, Any]) -> Any:
        """A config from portable fields (already checked, dtype resolved); a ValueError
        naming a field this backend cannot build."""

    def build_model(self, cfg: Any, seed: int, device: "str | torch.device") -> Any:
        """A fresh model whose weights, for a seed, are :func:`~._base.reference_init`'s."""

    def to_device(self, model: Any, device: "str | torch.device") -> Any:
        """``model`` on ``device``, silently."""

    def named_parameters(self, model: Any) -> list[tuple[str, torch.nn.Parameter]]:
        """Every parameter under its ``HookedTransformer`` name, in its order; a parameter
        shared by several blocks under each name."""

    def model_weights(self, model: Any) -> dict[str, Tensor]:
        """The full state dict in ``HookedTransformer``'s format."""

    def load_weights(self, model: Any, weights: dict[str, Tensor]) -> Any:
        """Load a state dict in ``HookedTransformer``'s format, strictly (a ValueError naming
        what does not fit). Returns ``model``."""

    def set_blocks(self, model: Any, blocks: Sequence[torch.nn.Module]) -> None:
        """Make ``model`` run ``blocks`` (block modules of models this backend built) in
        order, ``cfg.n_layers`` following, each hook point named by its block's position."""

    def supports(self, capability: str, model: Any = None) -> bool:
        """Whether this backend (and ``model``, if given: an ``nn.Module`` it built) has
        ``capability``, one of :data:`CAPABILITIES`."""

    def split_qkv_hooks(self, model: Any, fwd_hooks: list) -> list:
        """``(name, fn)`` hooks that may name ``blocks.{l}.hook_{q,k,v}_input``, in a form the
        model runs under :meth:`edge_hooks`."""

    def edge_hooks(self, model: Any) -> AbstractContextManager[None]:
        """The hook points the edge graph reads switched on for the duration, the model's
        settings restored afterwards, also on error."""

    def fused_layer_norm(self, model: Any) -> AbstractContextManager[None]:
        """For the duration, the model's LayerNorms without hooks attached computed by torch's
        fused kernel (the same function, rounded differently); restored afterwards, also on
        error. See :func:`grok_circuits.backend.fused_layer_norm`."""

    def forward_midway(
        self,
        model: Any,
        resid: Tensor,
        layer: int,
        past: Sequence[tuple[Tensor, Tensor]] | None,
    ) -> Tensor:
        """Logits from block ``layer`` on (``"midway_start"``), see
        :func:`grok_circuits.backend.forward_midway`."""


#: The members every backend must have.
MEMBERS: tuple[str, ...] = ("NAME",) + tuple(
    name for name, value in vars(Backend).items() if callable(value) and not name.startswith("_")
)


def missing_members(candidate: object) -> list[str]:
    """The members of :class:`Backend` that ``candidate`` lacks (a function that is not
    callable counts as missing)."""
    out = []
    for name in MEMBERS:
        value = getattr(candidate, name, None)
        ok = isinstance(value, str) if name == "NAME" else callable(value)
        if not ok:
            out.append(name)
    return out
