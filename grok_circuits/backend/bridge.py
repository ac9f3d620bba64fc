"""The TransformerLens 4.x backend: models are ``TransformerBridge`` around TransformerLens'
native model, built with ``TransformerBridge.boot_native(TransformerBridgeConfig(...))``.

It exposes the same hook points as ``HookedTransformer`` (``blocks.{l}.hook_resid_pre``,
``attn.hook_z``, ``ln_final.hook_scale``, ...), ``run_with_cache``, ``model.hooks`` and ``W_U``,
so the analyses run unchanged on it. What differs from :mod:`~grok_circuits.backend.hooked`,
and is settled here:

- **The config.** :func:`make_config` resolves what ``HookedTransformerConfig`` derives (``d_head``,
  ``attn_scale``, ``initializer_range``, ``d_vocab_out``, ``d_mlp``), so that the stored dict is
  the same on both lines; rotary positions, gated MLPs, grouped-query attention and init modes
  other than ``"gpt2"`` are refused (their weights do not carry over from 3.x exactly).
- **The initial weights.** ``boot_native`` initialises ``W_O`` and the MLP output with
  ``1/sqrt(2 n_layers)`` of the scale that ``HookedTransformer`` uses, and gives the unembedding
  no trainable bias. :func:`build_model` loads :func:`~grok_circuits.backend._base.reference_init`
  instead and gives the bridge a trainable ``b_U``, so a seed starts identical on both.
- **Weights and names.** Read and written in ``HookedTransformer``'s format through
  ``transformer_lens.utilities.tl_checkpoint_conversion``, and named as it names them.
- **Capabilities.** ``forward`` ignores ``past_kv_cache`` (a silently wrong result) and
  ``start_at_layer`` still runs the lower blocks, so there is no ``"midway_start"``; the 4.3
  bridge offers per-head q/k/v inputs and results only for joint-QKV attention, so there is no
  ``"split_qkv_input"`` or ``"attn_result"``, and :func:`split_qkv_hooks` recomputes the q/k/v
  inputs the edge graph needs (``"edge_graph"``) from the layer's residual input and weights.

TransformerLens is imported inside the functions, so this module imports (and registers) on
every TransformerLens line.
"""

import contextlib
import copy
import functools
import io
import math
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from grok_circuits.backend._base import TL3_BUFFERS, TL_VERSION, major, reference_init, tl3_layout

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

NAME = "TransformerBridge"


def handles(tl_version: str) -> bool:
    """TransformerLens 4.0 and later."""
    return major(tl_version) >= 4


def model_class() -> "type[TransformerBridge]":
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge


def config_class() -> type:
    from transformer_lens import TransformerBridgeConfig

    return TransformerBridgeConfig


# ----------------------------------------------------------------------------- config
def make_config(fields: dict[str, Any]) -> "TransformerBridgeConfig":
    """A ``TransformerBridgeConfig`` with what ``HookedTransformerConfig`` would derive filled
    in; a ValueError naming a field the bridge cannot build as ``HookedTransformer`` does."""
    fields = dict(fields)
    _check_bridge_can_build(fields)
    fields.setdefault("device", "cpu")
    fields.setdefault("d_head", fields["d_model"] // fields.get("n_heads", 1))
    if fields.get("use_attn_scale", True) and fields.get("attn_scale", -1.0) == -1.0:
        fields["attn_scale"] = math.sqrt(fields["d_head"])
    if fields.get("initializer_range", -1.0) < 0:
        fields["initializer_range"] = 0.8 / math.sqrt(fields["d_model"])
    if fields.get("d_vocab_out", -1) <= 0:
        fields["d_vocab_out"] = fields["d_vocab"]
    if not fields.get("attn_only") and fields.get("d_mlp") is None:
        fields["d_mlp"] = 4 * fields["d_model"]
    return config_class()(**fields)


def _check_bridge_can_build(fields: dict) -> None:
    refused = {
        "positional_embedding_type": fields.get("positional_embedding_type", "standard")
        not in ("standard",),
        "gated_mlp": bool(fields.get("gated_mlp")),
        "n_key_value_heads": fields.get("n_key_value_heads") not in (None, fields.get("n_heads")),
        "init_mode": fields.get("init_mode", "gpt2") != "gpt2",
    }
    bad = [k for k, v in refused.items() if v]
    if bad:
        raise ValueError(
            f"{bad} = {[fields.get(k) for k in bad]}: TransformerLens {TL_VERSION}'s "
            "TransformerBridge cannot start or load such a model exactly as HookedTransformer "
            "does; use standard positions, no gated MLP or grouped-query attention and "
            "init_mode 'gpt2', or install transformer-lens<4"
        )


# ----------------------------------------------------------------------------- models
def build_model(
    cfg: "TransformerBridgeConfig", seed: int, device: str | torch.device
) -> "TransformerBridge":
    """A bridge holding :func:`~grok_circuits.backend._base.reference_init`'s weights for
    ``seed``, with a trainable ``b_U``, on ``device``."""
    cfg = copy.deepcopy(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        weights = reference_init(cfg)  # first: building the modules draws from the RNG
        model = load_weights(_boot_bridge(cfg), weights)
    return to_device(model, device)


def _boot_bridge(cfg: "TransformerBridgeConfig") -> "TransformerBridge":
    cfg = copy.deepcopy(cfg)  # boot_native must not see init_weights=False on the caller's cfg
    cfg.init_weights = False  # the weights come from reference_init
    cfg.device = "cpu"
    model = model_class().boot_native(cfg)
    head = model.unembed.original_component
    bias = head._buffers.pop("bias", None)
    if bias is None:
        bias = torch.zeros(head.weight.shape[0])
    head.bias = torch.nn.Parameter(bias.clone())
    return model


def to_device(model: "TransformerBridge", device: str | torch.device) -> "TransformerBridge":
    with contextlib.redirect_stdout(io.StringIO()):
        model = model.to(device)
    model.cfg.device = str(torch.device(device))
    return model


# ----------------------------------------------------------------------------- weights
def _bridge_keys(cfg: "TransformerBridgeConfig") -> dict[str, str]:
    """3.x parameter name -> the bridge's state-dict key, by TransformerLens' own converter."""
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    layout = tl3_layout(cfg)
    dummy = {name: torch.zeros(shape) for name, shape in layout}
    return dict(zip([n for n, _ in layout], convert_tl_checkpoint(dummy, cfg)))


def _from_bridge(name: str, t: Tensor, cfg: "TransformerBridgeConfig") -> Tensor:
    """A bridge tensor in 3.x's shape (the inverse of ``convert_tl_checkpoint``)."""
    leaf = name.rsplit(".", 1)[1]
    h = cfg.n_heads
    if leaf in ("W_Q", "W_K", "W_V"):
        return t.reshape(h, cfg.d_head, cfg.d_model).transpose(1, 2).contiguous()
    if leaf == "W_O":
        return t.T.reshape(h, cfg.d_head, cfg.d_model).contiguous()
    if leaf in ("b_Q", "b_K", "b_V"):
        return t.reshape(h, cfg.d_head).contiguous()
    if leaf in ("W_in", "W_out", "W_U"):
        return t.T.contiguous()
    return t


def named_parameters(model: "TransformerBridge") -> list[tuple[str, torch.nn.Parameter]]:
    live = model.state_dict(keep_vars=True)
    return [(name, live[key]) for name, key in _bridge_keys(model.cfg).items()]


def model_weights(model: "TransformerBridge") -> dict[str, Tensor]:
    state = model.state_dict()
    out = {}
    for name, key in _bridge_keys(model.cfg).items():
        out[name] = _from_bridge(name, state[key].detach(), model.cfg)
    for layer in range(model.cfg.n_layers):  # the buffers a 3.x model's state dict holds
        out[f"blocks.{layer}.attn.mask"] = torch.empty((0, 0), dtype=torch.bool)
        out[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-torch.inf)
    return out


def load_weights(model: "TransformerBridge", weights: dict[str, Tensor]) -> "TransformerBridge":
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    expected = {n for n, _ in tl3_layout(model.cfg)}
    given = {k for k in weights if k.rsplit(".", 1)[1] not in TL3_BUFFERS}
    if given != expected:
        raise ValueError(
            f"the weights do not fit this model: missing {sorted(expected - given)[:4]}, "
            f"unexpected {sorted(given - expected)[:4]}"
        )
    device = next(model.parameters()).device
    converted = convert_tl_checkpoint({k: weights[k].to(device) for k in given}, model.cfg)
    model.load_state_dict(converted, strict=True)
    return model


def set_blocks(model: "TransformerBridge", blocks: Sequence[torch.nn.Module]) -> None:
    """Make ``model`` run ``blocks`` in order (``cfg.n_layers`` follows): the bridge's
    ``blocks`` is its native model's layer list, changed in place, and the hook registry is
    rebuilt, so every hook point is named by its block's new position."""
    del model.blocks[:]
    model.blocks.extend(blocks)
    model.cfg.n_layers = len(blocks)
    model.clear_hook_registry()
    model._initialize_hook_registry()


# ----------------------------------------------------------------------------- capabilities
def supports(capability: str, model: Any = None) -> bool:
    """Only ``"edge_graph"``, for the normalizations :func:`split_qkv_hooks` recomputes (all of
    those TransformerLens defines)."""
    if capability == "edge_graph":
        return model is None or model.cfg.normalization_type in _NORMS
    return False


@contextlib.contextmanager
def edge_hooks(model: "TransformerBridge") -> Iterator[None]:
    """``use_hook_mlp_in`` switched on for the duration, restored afterwards, also on error
    (the q/k/v inputs are emulated by :func:`split_qkv_hooks`, not switched on)."""
    cfg = model.cfg
    saved = cfg.use_hook_mlp_in
    try:
        if not cfg.attn_only:
            model.set_use_hook_mlp_in(True)
        yield
    finally:
        if not cfg.attn_only:
            model.set_use_hook_mlp_in(saved)


@contextlib.contextmanager
def fused_layer_norm(model: "TransformerBridge") -> Iterator[None]:
    """Each of the bridge's normalizations with no hook on its ``hook_scale`` or
    ``hook_normalized`` set to TransformerLens' own ``use_native_layernorm_autograd`` for the
    duration (the wrapped ``torch.nn.LayerNorm`` computes it), and restored afterwards, also on
    error. The others keep the bridge's arithmetic, so their hooks fire."""
    from transformer_lens.model_bridge.generalized_components.normalization import (
        NormalizationBridge,
    )

    saved = []
    try:
        for module in model.modules():
            if not isinstance(module, NormalizationBridge) or not hasattr(
                module, "use_native_layernorm_autograd"
            ):
                continue
            hooks = (module.hook_scale, module.hook_normalized)
            if any(h.fwd_hooks or h.bwd_hooks for h in hooks):
                continue
            saved.append((module, module.use_native_layernorm_autograd))
            module.use_native_layernorm_autograd = True
        yield
    finally:
        for module, value in saved:
            module.use_native_layernorm_autograd = value


def forward_midway(
    model: "TransformerBridge",
    resid: Tensor,
    layer: int,
    past: Sequence[tuple[Tensor, Tensor]] | None,
) -> Tensor:
    raise NotImplementedError(
        f"TransformerLens {TL_VERSION}'s TransformerBridge ignores past_kv_cache and runs every "
        "block, so a pass cannot start mid-way; ask backend.supports('midway_start', model) "
        "first and run the full forward pass"
    )


# ----------------------------------------------------------------------------- split q/k/v input
#: The normalizations :func:`split_qkv_hooks` recomputes, as TransformerLens defines them
#: (``LN``: centre, divide by the root mean square plus ``eps``, then ``w``, ``b``).
_NORMS = ("LN", "LNPre", "RMS", "RMSPre", None)
_QKV_INPUT = re.compile(r"blocks\.(\d+)\.hook_([qkv])_input")


class _Point(NamedTuple):
    """What a hook function receives as ``hook`` at an emulated hook point (its ``name``)."""

    name: str


def _normalize(model: "TransformerBridge", layer: int, x: Tensor) -> Tensor:
    """Block ``layer``'s ``ln1`` applied to ``x [..., d_model]`` with the model's weights."""
    norm, ln = model.cfg.normalization_type, model.blocks[layer].ln1
    if norm is None:
        return x
    if norm.startswith("LN"):
        x = x - x.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    if norm == "LN":
        return x * ln.w + ln.b
    return x * ln.w if norm == "RMS" else x


class _SplitQKV:
    """The bridge's stand-in for ``use_split_qkv_input``: ``blocks.{l}.ln1.hook_in`` records the
    residual stream the layer's attention reads; at the first of ``attn.hook_q/k/v`` the
    hooked inputs are built (one copy per head), passed through the caller's functions in the
    order q, k, v, and projected as the layer would (``ln1``, then ``W_Q``/``W_K``/``W_V`` per
    head plus bias); each of ``hook_q/k/v`` then returns its projection in place of the
    layer's own."""

    def __init__(self, model: "TransformerBridge", user: dict[tuple[int, str], list]):
        self.model, self.user = model, user
        self.resid: dict[int, Tensor] = {}
        self.out: dict[tuple[int, str], Tensor] = {}

    def hooks(self) -> list:
        out = []
        for layer in sorted({layer for layer, _ in self.user}):
            out.append((f"blocks.{layer}.ln1.hook_in", functools.partial(self.keep, layer=layer)))
            for x in "qkv":
                if (layer, x) in self.user:
                    name = f"blocks.{layer}.attn.hook_{x}"
                    out.append((name, functools.partial(self.project, layer=layer, which=x)))
        return out

    def keep(self, act: Tensor, hook, *, layer: int) -> Tensor:
        self.resid[layer] = act
        for x in "qkv":
            self.out.pop((layer, x), None)
        return act

    def project(self, act: Tensor, hook, *, layer: int, which: str) -> Tensor:
        if (layer, which) not in self.out:
            attn, resid = self.model.blocks[layer].attn, self.resid[layer]
            for x in "qkv":
                if (layer, x) not in self.user:
                    continue
                inp = resid[:, :, None].repeat(1, 1, self.model.cfg.n_heads, 1)
                point = _Point(f"blocks.{layer}.hook_{x}_input")
                for fn in self.user[(layer, x)]:
                    result = fn(inp, hook=point)
                    inp = inp if result is None else result
                w, b = getattr(attn, f"W_{x.upper()}"), getattr(attn, f"b_{x.upper()}")
                normed = _normalize(self.model, layer, inp)
                self.out[(layer, x)] = torch.einsum("bphm,hme->bphe", normed, w) + b
        return self.out[(layer, which)].to(act.dtype)


def split_qkv_hooks(model: "TransformerBridge", fwd_hooks: list) -> list:
    """``fwd_hooks`` with those on ``HookedTransformer``'s per-head query, key and value inputs,
    ``blocks.{l}.hook_{q,k,v}_input`` (``[batch, pos, head, d_model]``: the residual stream
    before ``ln1``, one copy per head, as ``use_split_qkv_input`` gives them), emulated
    (:class:`_SplitQKV`): the functions see the same tensors, and what they return (a patched
    input, one whose gradient they record) is normalized and projected by the layer's own
    weights, the layer's own q, k and v being replaced. With functions that return their input
    unchanged, the logits equal the plain forward pass to float32 rounding
    (``tests/backend/test_backend.py``)."""
    user: dict[tuple[int, str], list] = {}
    rest = []
    for name, fn in fwd_hooks:
        m = _QKV_INPUT.fullmatch(name)
        if m is None:
            rest.append((name, fn))
        else:
            user.setdefault((int(m[1]), m[2]), []).append(fn)
    if not user:
        return rest
    if not supports("edge_graph", model):
        raise NotImplementedError(
            f"per-head q/k/v inputs on TransformerLens {TL_VERSION}'s bridge are recomputed for "
            f"normalizations {_NORMS[:-1]} or none, not {model.cfg.normalization_type!r}; use "
            "TransformerLens 3.x: pip install -e '.[tl3]'"
        )
    return _SplitQKV(model, user).hooks() + rest
