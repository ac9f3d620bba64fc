"""The one place that knows which TransformerLens is installed: 3.x or 4.x.

TransformerLens 3.x builds a model from scratch as a ``HookedTransformer``; 4.0 removed it, and
the 4.x way is ``TransformerBridge.boot_native(TransformerBridgeConfig(...))``. Both expose the
same hook points (``blocks.{l}.hook_resid_pre``, ``attn.hook_z``, ``ln_final.hook_scale``, ...),
``run_with_cache``, ``model.hooks`` and ``W_U``, so the analyses run unchanged on either. What
differs, and is settled here so that nothing else has to ask:

- **The config.** Saved as a JSON dict of :data:`PORTABLE_FIELDS` (the architecture fields both
  versions implement), read back by either; older files holding every ``HookedTransformerConfig``
  field still read.
- **The initial weights.** ``boot_native`` initialises ``W_O`` and the MLP output with
  ``1/sqrt(2 n_layers)`` of the scale that ``HookedTransformer`` uses, and gives the unembedding
  no trainable bias. :func:`build_model` draws every weight as ``HookedTransformer`` does
  (``N(0, initializer_range)`` for each ``W_*`` in its parameter order, biases zero) and gives
  the bridge a trainable ``b_U``, so a seed starts identical on both.
- **The weights on disk.** Always ``HookedTransformer``'s state-dict format (the format of the
  shipped runs): :func:`model_weights` writes it and :func:`load_weights` reads it on either
  version (on 4.x through ``transformer_lens.utilities.tl_checkpoint_conversion``).
- **Parameter names.** :func:`named_parameters` names every parameter as ``HookedTransformer``
  does, in its order, on both; weight decay (:func:`decays`) is decided on that name.
- **Capabilities.** :func:`supports_midway_start`: on the bridge, ``forward`` ignores
  ``past_kv_cache`` (a silently wrong result) and ``start_at_layer`` still runs the lower blocks,
  so causal tracing takes its full-forward path there.
- **Per-head q/k/v inputs.** The edge graph reads and patches each head's query, key and value
  input; the 4.3 bridge offers them only for joint-QKV attention, so :func:`split_qkv_hooks`
  recomputes them there from the layer's residual input and weights.

On 4.x the model is a ``TransformerBridge`` around TransformerLens' native model; rotary
positions, gated MLPs and grouped-query attention are refused there (their weights do not carry
over from 3.x exactly).
"""

import functools
import math
import re
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens import HookedTransformer as Model  # noqa: F401
    from transformer_lens import HookedTransformerConfig as ModelConfig  # noqa: F401

try:
    TL_VERSION: str = version("transformer-lens")
except PackageNotFoundError:  # pragma: no cover - a source checkout of TransformerLens
    import transformer_lens

    TL_VERSION = getattr(transformer_lens, "__version__", "3")
#: The installed TransformerLens' major version.
TL_MAJOR: int = int(TL_VERSION.split(".")[0])
#: True where models are ``TransformerBridge`` (TransformerLens >= 4).
BRIDGE: bool = TL_MAJOR >= 4
#: Which backend is in use, in words.
BACKEND: str = "TransformerBridge" if BRIDGE else "HookedTransformer"

#: The config fields a run stores: what both 3.x's ``HookedTransformerConfig`` and 4.x's
#: ``TransformerBridgeConfig`` (with its native model) implement with the same meaning.
PORTABLE_FIELDS: tuple[str, ...] = (
    "n_layers",
    "d_model",
    "n_heads",
    "d_head",
    "d_mlp",
    "d_vocab",
    "d_vocab_out",
    "n_ctx",
    "act_fn",
    "normalization_type",
    "eps",
    "attn_only",
    "positional_embedding_type",
    "rotary_dim",
    "rotary_base",
    "use_attn_scale",
    "attn_scale",
    "attention_dir",
    "init_mode",
    "initializer_range",
    "default_prepend_bos",
    "final_rms",
    "gated_mlp",
    "n_key_value_heads",
    "dtype",
    "model_name",
)

# Buffers of HookedTransformer's attention that its state dict (so every checkpoint) holds.
_TL3_BUFFERS = ("mask", "IGNORE")


def __getattr__(name: str):
    # ``Model`` / ``ModelConfig`` import TransformerLens (seconds), so only when asked for.
    if name == "Model":
        return model_class()
    if name == "ModelConfig":
        return config_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_class() -> type:
    """``HookedTransformer`` on 3.x, ``TransformerBridge`` on 4.x."""
    if BRIDGE:
        from transformer_lens.model_bridge import TransformerBridge

        return TransformerBridge
    from transformer_lens import HookedTransformer

    return HookedTransformer


def config_class() -> type:
    """``HookedTransformerConfig`` on 3.x, ``TransformerBridgeConfig`` on 4.x."""
    if BRIDGE:
        from transformer_lens import TransformerBridgeConfig

        return TransformerBridgeConfig
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig


# ----------------------------------------------------------------------------- config
def make_config(**fields: Any) -> "ModelConfig":
    """The installed version's model config from :data:`PORTABLE_FIELDS` values.

    Raises a ValueError naming a field that is not portable (a run made with it could not be
    read by the other TransformerLens version) or that the bridge cannot build."""
    unknown = sorted(set(fields) - set(PORTABLE_FIELDS))
    if unknown:
        raise ValueError(
            f"config field(s) {unknown} are not among the fields grok_circuits stores (they "
            "would not carry over between TransformerLens 3.x and 4.x); the fields are "
            f"{sorted(PORTABLE_FIELDS)}"
        )
    if isinstance(fields.get("dtype"), str):
        fields["dtype"] = getattr(torch, fields["dtype"])
    if BRIDGE:
        _check_bridge_can_build(fields)
        fields.setdefault("device", "cpu")
        # Resolve what HookedTransformerConfig derives, so the stored dict is the same on both.
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


def config_to_dict(cfg: "ModelConfig") -> dict:
    """The JSON-safe dict a run stores: the :data:`PORTABLE_FIELDS` of ``cfg``."""
    d = {}
    for key in PORTABLE_FIELDS:
        value = getattr(cfg, key)
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        d[key] = value
    return d


def config_from_dict(d: dict) -> "ModelConfig":
    """A config from a stored dict: :func:`config_to_dict`'s, or the older files that hold every
    ``HookedTransformerConfig`` field (the others are derived or left at their defaults)."""
    return make_config(**{k: v for k, v in d.items() if k in PORTABLE_FIELDS})


def block_params(cfg: "dict | ModelConfig") -> int:
    """The number of weights in the blocks' attention and MLP matrices (what 3.x's
    ``HookedTransformerConfig.n_params`` counts), from a config or its stored dict."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, default=None: getattr(cfg, k, default)
    n_heads = get("n_heads", -1)
    if n_heads in (None, -1):
        n_heads = get("d_model") // get("d_head")
    n = get("n_layers") * get("d_model") * get("d_head") * n_heads * 4
    if not get("attn_only", False):
        d_mlp = get("d_mlp") or 4 * get("d_model")
        n += get("n_layers") * get("d_model") * d_mlp * (2 + bool(get("gated_mlp", False)))
    return n


# ----------------------------------------------------------------------------- the 3.x layout
def tl3_layout(cfg: "ModelConfig") -> list[tuple[str, tuple[int, ...]]]:
    """``HookedTransformer``'s parameters for ``cfg``, as (name, shape) in its order.

    (It is tested against ``HookedTransformer(cfg).named_parameters()`` on 3.x.)"""
    h, dm, dh = cfg.n_heads, cfg.d_model, cfg.d_head
    d_out = cfg.d_vocab_out if cfg.d_vocab_out > 0 else cfg.d_vocab
    norm = cfg.normalization_type

    def ln(prefix: str) -> list:
        if norm in ("LN",):
            return [(f"{prefix}.w", (dm,)), (f"{prefix}.b", (dm,))]
        if norm in ("RMS",):
            return [(f"{prefix}.w", (dm,))]
        return []

    out = [("embed.W_E", (cfg.d_vocab, dm))]
    if cfg.positional_embedding_type == "standard":
        out.append(("pos_embed.W_pos", (cfg.n_ctx, dm)))
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}"
        out += ln(f"{p}.ln1")
        if not cfg.attn_only:
            out += ln(f"{p}.ln2")
        out += [
            (f"{p}.attn.W_Q", (h, dm, dh)),
            (f"{p}.attn.W_O", (h, dh, dm)),
            (f"{p}.attn.b_Q", (h, dh)),
            (f"{p}.attn.b_O", (dm,)),
            (f"{p}.attn.W_K", (h, dm, dh)),
            (f"{p}.attn.W_V", (h, dm, dh)),
            (f"{p}.attn.b_K", (h, dh)),
            (f"{p}.attn.b_V", (h, dh)),
        ]
        if not cfg.attn_only:
            out += [
                (f"{p}.mlp.W_in", (dm, cfg.d_mlp)),
                (f"{p}.mlp.b_in", (cfg.d_mlp,)),
                (f"{p}.mlp.W_out", (cfg.d_mlp, dm)),
                (f"{p}.mlp.b_out", (dm,)),
            ]
    out += ln("ln_final")
    out += [("unembed.W_U", (dm, d_out)), ("unembed.b_U", (d_out,))]
    return out


def reference_init(cfg: "ModelConfig") -> dict[str, Tensor]:
    """``HookedTransformer``'s initial weights for ``cfg`` from the global torch RNG, in its
    state-dict format: ``N(0, initializer_range)`` for every ``W_*`` in parameter order,
    LayerNorm weights one, biases zero (``init_mode="gpt2"``)."""
    std = cfg.initializer_range
    if not std or std < 0:
        std = 0.8 / math.sqrt(cfg.d_model)
    out = {}
    for name, shape in tl3_layout(cfg):
        leaf = name.rsplit(".", 1)[1]
        if leaf.startswith("W_"):
            out[name] = torch.empty(shape).normal_(std=std)
        elif leaf == "w":
            out[name] = torch.ones(shape)
        else:
            out[name] = torch.zeros(shape)
    return out


# ----------------------------------------------------------------------------- models
def build_model(cfg: "ModelConfig", seed: int = 0, device: str | torch.device = "cpu") -> "Model":
    """A freshly initialised model whose weights, for a seed, are the same on 3.x and 4.x.

    The seed is applied inside ``torch.random.fork_rng``, so building a model leaves the
    caller's RNG untouched. On 4.x the unembedding bias ``b_U`` is made a trainable parameter
    (``boot_native`` leaves it a zero buffer), as it is on ``HookedTransformer``. The model gets
    its own copy of ``cfg``: moving a model rewrites ``cfg.device``, and two models built from
    one config (say one on the CPU and one on the GPU) must not share it."""
    import copy

    cfg = copy.deepcopy(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if not BRIDGE:
            from transformer_lens import HookedTransformer

            model = HookedTransformer(cfg, move_to_device=False)
        else:
            weights = reference_init(cfg)  # first: building the modules draws from the RNG
            model = load_weights(_boot_bridge(cfg), weights)
    return to_device(model, device)


def _boot_bridge(cfg: "ModelConfig") -> "Model":
    import copy

    from transformer_lens.model_bridge import TransformerBridge

    cfg = copy.deepcopy(cfg)  # boot_native must not see init_weights=False on the caller's cfg
    cfg.init_weights = False  # the weights come from reference_init
    cfg.device = "cpu"
    model = TransformerBridge.boot_native(cfg)
    head = model.unembed.original_component
    bias = head._buffers.pop("bias", None)
    if bias is None:
        bias = torch.zeros(head.weight.shape[0])
    head.bias = torch.nn.Parameter(bias.clone())
    return model


def to_device(model: "Model", device: str | torch.device) -> "Model":
    """``model`` on ``device`` (silently: both versions print a line otherwise)."""
    if BRIDGE:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            model = model.to(device)
        model.cfg.device = str(torch.device(device))
        return model
    return model.to(device, print_details=False)


def _bridge_keys(cfg: "ModelConfig") -> dict[str, str]:
    """3.x parameter name -> the bridge's state-dict key, by TransformerLens' own converter."""
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    layout = tl3_layout(cfg)
    dummy = {name: torch.zeros(shape) for name, shape in layout}
    return dict(zip([n for n, _ in layout], convert_tl_checkpoint(dummy, cfg)))


def _from_bridge(name: str, t: Tensor, cfg: "ModelConfig") -> Tensor:
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


def named_parameters(model: "Model") -> list[tuple[str, torch.nn.Parameter]]:
    """Every parameter under its ``HookedTransformer`` name, in ``HookedTransformer``'s order,
    on both versions; a parameter shared by several blocks appears under each name."""
    if not BRIDGE:
        return list(model.named_parameters(remove_duplicate=False))
    live = model.state_dict(keep_vars=True)
    return [(name, live[key]) for name, key in _bridge_keys(model.cfg).items()]


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
    if not BRIDGE:
        return model.state_dict()
    state = model.state_dict()
    out = {}
    for name, key in _bridge_keys(model.cfg).items():
        out[name] = _from_bridge(name, state[key].detach(), model.cfg)
    for layer in range(model.cfg.n_layers):  # the buffers a 3.x model's state dict holds
        out[f"blocks.{layer}.attn.mask"] = torch.empty((0, 0), dtype=torch.bool)
        out[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-torch.inf)
    return out


def load_weights(model: "Model", weights: dict[str, Tensor]) -> "Model":
    """Load a state dict in ``HookedTransformer``'s format into ``model`` (strictly). Returns
    ``model``."""
    if not BRIDGE:
        try:
            model.load_state_dict(weights)
        except RuntimeError as err:
            problem = " ".join(str(err).split("\n")[1:]).strip()
            raise ValueError(f"the weights do not fit this model: {problem}") from None
        return model
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    expected = {n for n, _ in tl3_layout(model.cfg)}
    given = {k for k in weights if k.rsplit(".", 1)[1] not in _TL3_BUFFERS}
    if given != expected:
        raise ValueError(
            f"the weights do not fit this model: missing {sorted(expected - given)[:4]}, "
            f"unexpected {sorted(given - expected)[:4]}"
        )
    device = next(model.parameters()).device
    converted = convert_tl_checkpoint({k: weights[k].to(device) for k in given}, model.cfg)
    model.load_state_dict(converted, strict=True)
    return model


# ----------------------------------------------------------------------------- training
def decays(name: str) -> bool:
    """Whether AdamW's weight decay applies to the parameter called ``name`` (its
    ``HookedTransformer`` name): every matrix and embedding (``W_*``) and the per-head attention
    biases ``b_Q``, ``b_K``, ``b_V``; not LayerNorm, ``b_O``, the MLP biases nor ``b_U``.

    The attention biases decay because on 3.x, where each is a ``[head, d_head]`` matrix, the
    rule "decay what has two or more dimensions" always decayed them: keeping them decayed keeps
    every run trained under 3.x bit-identical, and gives 4.x (where they are flat vectors) the
    same optimizer."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf.startswith("W_") or leaf in ("b_Q", "b_K", "b_V")


def param_groups(model: "Model") -> tuple[list, list]:
    """(decayed, not decayed) parameters, each once, in ``HookedTransformer``'s order."""
    decay, no_decay, seen = [], [], set()
    for name, p in named_parameters(model):
        if id(p) in seen:
            continue
        seen.add(id(p))
        (decay if decays(name) else no_decay).append(p)
    return decay, no_decay


# ----------------------------------------------------------------------------- capabilities
def supports_edge_graph(model: "Model") -> bool:
    """Whether edge attribution and faithfulness can read and patch this model's edge graph:
    a query, key and value input per head (:func:`split_qkv_hooks`) and an MLP input. Both
    backends give it for the models :func:`build_model` makes (on 4.x through
    :func:`split_qkv_hooks`' recomputation, for the normalizations it knows)."""
    if not isinstance(model, torch.nn.Module):
        return False
    return not BRIDGE or model.cfg.normalization_type in _NORMS


def supports_midway_start(model: "Model") -> bool:
    """Whether a forward pass can start at block L with earlier positions' keys and values
    given (``start_at_layer`` + a frozen ``past_kv_cache``). Only ``HookedTransformer`` does:
    the 4.x bridge ignores ``past_kv_cache`` without an error, and still runs every block."""
    return isinstance(model, torch.nn.Module) and not BRIDGE


# ----------------------------------------------------------------------------- split q/k/v input
#: The normalizations :func:`split_qkv_hooks` recomputes on the bridge, as TransformerLens
#: defines them (``LN``: centre, divide by the root mean square plus ``eps``, then ``w``, ``b``).
_NORMS = ("LN", "LNPre", "RMS", "RMSPre", None)
_QKV_INPUT = re.compile(r"blocks\.(\d+)\.hook_([qkv])_input")


class _Point(NamedTuple):
    """What a hook function receives as ``hook`` at an emulated hook point (its ``name``)."""

    name: str


def _normalize(model: "Model", layer: int, x: Tensor) -> Tensor:
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

    def __init__(self, model: "Model", user: dict[tuple[int, str], list]):
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


def split_qkv_hooks(model: "Model", fwd_hooks: list) -> list:
    """``fwd_hooks`` (``(name, fn)`` pairs for ``model.hooks``) that may use
    ``HookedTransformer``'s per-head query, key and value inputs,
    ``blocks.{l}.hook_{q,k,v}_input`` (``[batch, pos, head, d_model]``: the residual stream
    before ``ln1``, one copy per head, as ``use_split_qkv_input`` gives them), in a form this
    model runs.

    On 3.x they are the model's own hook points (switched on by the caller) and the list comes
    back as it is. The 4.3 bridge offers them only for joint-QKV attention, so here they are
    emulated (:class:`_SplitQKV`): the functions see the same tensors, and what they return
    (a patched input, one whose gradient they record) is normalized and projected by the
    layer's own weights, the layer's own q, k and v being replaced. With functions that return
    their input unchanged, the logits equal the plain forward pass to float32 rounding
    (``tests/test_backend.py``)."""
    if not BRIDGE:
        return list(fwd_hooks)
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
    if not supports_edge_graph(model):
        raise NotImplementedError(
            f"per-head q/k/v inputs on TransformerLens {TL_VERSION}'s bridge are recomputed for "
            f"normalizations {_NORMS[:-1]} or none, not {model.cfg.normalization_type!r}; use "
            "TransformerLens 3.x: pip install -e '.[tl3]'"
        )
    return _SplitQKV(model, user).hooks() + rest
