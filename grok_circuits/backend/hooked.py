"""The TransformerLens 3.x backend: models are ``HookedTransformer``.

``HookedTransformer`` is the reference every other backend matches: its state dict is the
format checkpoints are written in and its parameter names are the names weight decay reads, so
weights, names and configs pass through unchanged here. It has every capability
(:data:`~grok_circuits.backend.protocol.CAPABILITIES`): the per-head q/k/v inputs and results are
its own hook points, and ``forward(start_at_layer=..., past_kv_cache=...)`` starts a pass
mid-way on frozen keys and values.

TransformerLens is imported inside the functions, so this module imports (and registers) on
every TransformerLens line.
"""

import contextlib
import copy
import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from grok_circuits.backend._base import major

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens import HookedTransformer, HookedTransformerConfig

NAME = "HookedTransformer"


def handles(tl_version: str) -> bool:
    """TransformerLens before 4.0 (4.0 removed ``HookedTransformer``'s from-scratch path)."""
    return major(tl_version) < 4


def model_class() -> type:
    from transformer_lens import HookedTransformer

    return HookedTransformer


def config_class() -> type:
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig


def make_config(fields: dict[str, Any]) -> "HookedTransformerConfig":
    """``HookedTransformerConfig(**fields)``: it derives what the fields leave out."""
    return config_class()(**fields)


def build_model(
    cfg: "HookedTransformerConfig", seed: int, device: str | torch.device
) -> "HookedTransformer":
    """``HookedTransformer(cfg)`` initialised from ``seed``, on ``device``."""
    cfg = copy.deepcopy(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class()(cfg, move_to_device=False)
    return to_device(model, device)


def to_device(model: "HookedTransformer", device: str | torch.device) -> "HookedTransformer":
    return model.to(device, print_details=False)


def named_parameters(model: "HookedTransformer") -> list[tuple[str, torch.nn.Parameter]]:
    return list(model.named_parameters(remove_duplicate=False))


def model_weights(model: "HookedTransformer") -> dict[str, Tensor]:
    return model.state_dict()


def load_weights(model: "HookedTransformer", weights: dict[str, Tensor]) -> "HookedTransformer":
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        problem = " ".join(str(err).split("\n")[1:]).strip()
        raise ValueError(f"the weights do not fit this model: {problem}") from None
    return model


def set_blocks(model: "HookedTransformer", blocks: Sequence[torch.nn.Module]) -> None:
    """Make ``model`` run ``blocks`` in order (``cfg.n_layers`` follows), every hook point
    renamed by its block's new position (``HookedRootModule.setup``)."""
    del model.blocks[:]
    model.blocks.extend(blocks)
    model.cfg.n_layers = len(blocks)
    model.setup()


def supports(capability: str, model: Any = None) -> bool:
    """Every capability, on every model."""
    return True


def split_qkv_hooks(model: "HookedTransformer", fwd_hooks: list) -> list:
    """``fwd_hooks`` as they are: ``blocks.{l}.hook_{q,k,v}_input`` are the model's own hook
    points (under :func:`edge_hooks`)."""
    return list(fwd_hooks)


@contextlib.contextmanager
def edge_hooks(model: "HookedTransformer") -> Iterator[None]:
    """``use_split_qkv_input`` and ``use_hook_mlp_in`` switched on for the duration, and
    restored afterwards, also on error."""
    cfg = model.cfg
    saved = (getattr(cfg, "use_split_qkv_input", False), cfg.use_hook_mlp_in)
    try:
        model.set_use_split_qkv_input(True)
        if not cfg.attn_only:
            model.set_use_hook_mlp_in(True)
        yield
    finally:
        cfg.use_split_qkv_input = saved[0]
        if not cfg.attn_only:
            model.set_use_hook_mlp_in(saved[1])


def _fused(ln: Any, x: Tensor) -> Tensor:
    """TransformerLens' ``LayerNorm.forward`` (centre, divide by sqrt(mean square + eps), scale
    and shift), as one fused kernel."""
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), ln.w, ln.b, ln.eps)


@contextlib.contextmanager
def fused_layer_norm(model: "HookedTransformer") -> Iterator[None]:
    """Each of ``model``'s ``LayerNorm`` modules (float32 or float64, with no hook on its
    ``hook_scale`` or ``hook_normalized``) computed by ``F.layer_norm`` for the duration: its
    ``forward`` replaced on the instance, and the class's restored afterwards, also on error.
    A LayerNorm with a hook attached keeps its hook points and TransformerLens' arithmetic."""
    from transformer_lens.components import LayerNorm

    patched = []
    try:
        for module in model.modules():
            if type(module) is not LayerNorm or module.cfg.dtype not in (
                torch.float32,
                torch.float64,
            ):
                continue
            points = (module.hook_scale, module.hook_normalized)
            if any(p._forward_hooks or p._forward_pre_hooks or p._backward_hooks for p in points):
                continue  # its hooks must fire
            module.forward = functools.partial(_fused, module)  # type: ignore[method-assign]
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward


def _kv_cache_classes() -> tuple[type, type]:
    """TransformerLens' key-value cache and its per-block entry."""
    try:  # the names since 3.x; older 3.x releases called them HookedTransformerKeyValue*
        from transformer_lens import TransformerLensKeyValueCache as Cache
        from transformer_lens import TransformerLensKeyValueCacheEntry as Entry
    except ImportError:  # pragma: no cover - depends on the installed TransformerLens
        from transformer_lens.past_key_value_caching import (  # type: ignore[no-redef]
            HookedTransformerKeyValueCache as Cache,
        )
        from transformer_lens.past_key_value_caching import (  # type: ignore[no-redef]
            HookedTransformerKeyValueCacheEntry as Entry,
        )
    return Cache, Entry


def forward_midway(
    model: "HookedTransformer",
    resid: Tensor,
    layer: int,
    past: Sequence[tuple[Tensor, Tensor]] | None,
) -> Tensor:
    """``model(resid, start_at_layer=layer, past_kv_cache=...)`` with a frozen (read-only)
    cache holding ``past``'s keys and values for blocks ``layer`` on."""
    kv = None
    if past is not None:
        Cache, Entry = _kv_cache_classes()
        entries = [None] * layer + [
            Entry(past_keys=keys, past_values=values, frozen=True) for keys, values in past
        ]
        n_past = past[0][0].shape[1]
        kv = Cache(
            entries=entries,
            previous_attention_mask=torch.ones(
                resid.shape[0], n_past, dtype=torch.int, device=resid.device
            ),
            frozen=True,
        )
    return model(resid, start_at_layer=layer, past_kv_cache=kv)
