"""What every backend shares: the config fields a run stores and the ``HookedTransformer``
parameter layout that every checkpoint is written in, whichever TransformerLens line is
installed.

A run must read back under either line, so its files never hold a backend's own format:

- **The config.** Saved as a JSON dict of :data:`PORTABLE_FIELDS` (the architecture fields both
  lines implement), read back by either; older files holding every ``HookedTransformerConfig``
  field still read.
- **The weights.** Always ``HookedTransformer``'s state-dict format (the format of the shipped
  runs), laid out by :func:`tl3_layout`; :func:`reference_init` draws a fresh model's weights
  exactly as ``HookedTransformer`` does, so that a seed starts identical on every backend.
- **Weight decay.** Decided on the ``HookedTransformer`` name of a parameter (:func:`decays`).

Nothing here imports TransformerLens.
"""

import math
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens import HookedTransformerConfig, TransformerBridgeConfig

    #: What the functions here read: the config of either line.
    ModelConfig = HookedTransformerConfig | TransformerBridgeConfig

try:
    #: The installed TransformerLens version (for messages and run metadata, never for a choice).
    TL_VERSION: str = version("transformer-lens")
except PackageNotFoundError:  # pragma: no cover - a source checkout of TransformerLens
    import transformer_lens

    TL_VERSION = getattr(transformer_lens, "__version__", "3")


def major(tl_version: str) -> int:
    """The major version of a TransformerLens version string (``"4.3.0"`` -> 4)."""
    return int(tl_version.split(".")[0])


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

#: Buffers of HookedTransformer's attention that its state dict (so every checkpoint) holds.
TL3_BUFFERS = ("mask", "IGNORE")


# ----------------------------------------------------------------------------- config
def portable(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` checked to be :data:`PORTABLE_FIELDS`, with a ``dtype`` given by name made a
    ``torch.dtype``. Raises a ValueError naming a field that is not portable (a run made with
    it could not be read by the other TransformerLens line)."""
    unknown = sorted(set(fields) - set(PORTABLE_FIELDS))
    if unknown:
        raise ValueError(
            f"config field(s) {unknown} are not among the fields grok_circuits stores (they "
            "would not carry over between TransformerLens 3.x and 4.x); the fields are "
            f"{sorted(PORTABLE_FIELDS)}"
        )
    fields = dict(fields)
    if isinstance(fields.get("dtype"), str):
        fields["dtype"] = getattr(torch, fields["dtype"])
    return fields


def config_to_dict(cfg: "ModelConfig") -> dict:
    """The JSON-safe dict a run stores: the :data:`PORTABLE_FIELDS` of ``cfg``."""
    d = {}
    for key in PORTABLE_FIELDS:
        value = getattr(cfg, key)
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        d[key] = value
    return d


def block_params(cfg: "dict | ModelConfig") -> int:
    """The number of weights in the blocks' attention and MLP matrices (what 3.x's
    ``HookedTransformerConfig.n_params`` counts), from a config or its stored dict."""

    def get(key: str, default: Any = None) -> Any:
        return cfg.get(key, default) if isinstance(cfg, dict) else getattr(cfg, key, default)

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

    def ln(prefix: str) -> list[tuple[str, tuple[int, ...]]]:
        if norm in ("LN",):
            return [(f"{prefix}.w", (dm,)), (f"{prefix}.b", (dm,))]
        if norm in ("RMS",):
            return [(f"{prefix}.w", (dm,))]
        return []

    out: list[tuple[str, tuple[int, ...]]] = [("embed.W_E", (cfg.d_vocab, dm))]
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
            d_mlp = cfg.d_mlp
            assert d_mlp is not None  # both lines' configs set 4 * d_model when it is not given
            out += [
                (f"{p}.mlp.W_in", (dm, d_mlp)),
                (f"{p}.mlp.b_in", (d_mlp,)),
                (f"{p}.mlp.W_out", (d_mlp, dm)),
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
