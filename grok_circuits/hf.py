"""Hugging Face GPT-2 checkpoint folders as TransformerLens models, offline.

Most grokking studies, the paper's among them, ship their runs as folders written by
``GPT2LMHeadModel.save_pretrained`` and the tokenizer's ``save_pretrained``: ``config.json``,
``model.safetensors`` (or a ``pytorch_model.bin`` written by an older torch), and the
tokenizer's files. :func:`load_hf_model` builds the installed TransformerLens' model from one
(``HookedTransformer`` on 3.x, ``TransformerBridge`` on 4.x) without touching the network:

- **The shape is the config's**: ``n_embd``, ``n_layer``, ``n_head``, ``n_inner``,
  ``activation_function``, ``layer_norm_epsilon``, ``n_positions`` and tied or untied
  embeddings. LayerNorm is kept as it is (no folding, no centring), so the logit lens reads the
  residual stream through the final LayerNorm and the unembedding, as the paper computes it.
- **The tokenizer in the folder is the truth for token ids.** The caller names the tokens the
  model should speak, in its own order (a task's vocabulary, spelled as in the released data);
  each is looked up in the folder's tokenizer (the slow GPT-2 layout that transformers 4.37
  wrote, ``vocab.json`` + ``added_tokens.json`` + ``tokenizer_config.json``, or today's
  ``tokenizer.json``), and a token it lacks is an error.
- **Only those tokens' rows are kept.** The embedding and unembedding hold the rows of the
  named tokens, in the caller's order, so token ``i`` of the task is id ``i`` of the model. The
  rest of the checkpoint's vocabulary (GPT-2's BPE tokens, which the task never uses, and the
  rows that ``resize_token_embeddings(pad_to_multiple_of=8)`` added past the tokenizer's length)
  is left out, so none of it can win an argmax, and ranks and MRR are over the task's
  vocabulary, the tokens the paper's data is written in. A token may be named as ``None`` (a
  padding id of the caller's): it reads the tokenizer's end-of-text row and its logit is fixed at
  :data:`NEVER` so that it never wins either. On the named tokens, the logits equal the full
  checkpoint's to float32 rounding (``tests/test_hf.py`` checks 1e-4 against ``transformers``).
- **The fork's config keys.** The paper's repository trains with a modified ``modeling_gpt2.py``
  that reads extra config keys, which stock ``transformers`` ignores (silently computing
  something else). ``add_recurrence`` (every block runs a second time, in order, with the same
  weights, then the final LayerNorm: the appendix E.2 model) is loaded as this library's
  ``n_loops=2``, the blocks sharing their parameter objects; ``no_ln`` (no LayerNorm anywhere)
  and ``no_mlp`` (attention-only blocks) are TransformerLens' ``normalization_type=None`` and
  ``attn_only``. ``share_mlp``, ``add_memory`` and ``re_embed`` change the computation in ways
  TransformerLens has no counterpart for and are refused in one line; so are stock options that
  change it (``scale_attn_by_inverse_layer_idx``, cross-attention).
"""

import json
import os
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from grok_circuits import backend, io

if TYPE_CHECKING:  # pragma: no cover
    from grok_circuits.backend import Model, ModelConfig

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
#: The logit of a padding token (never a target): far below any trained logit.
NEVER = -1.0e4

#: ``activation_function`` -> TransformerLens' ``act_fn``.
ACTIVATIONS = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "gelu_fast": "gelu_fast"}
#: The fork's keys, and what each does here.
FORK_KEYS_LOADED = ("add_recurrence", "no_ln", "no_mlp")
FORK_KEYS_REFUSED = ("share_mlp", "add_memory", "re_embed")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be read as a GPT-2 model (one line says why)."""


def read_json(path: Path) -> dict:
    """A checkpoint folder's JSON file; a :class:`CheckpointError` naming it if it is damaged."""
    return io.read_json(path, fix="copy the checkpoint folder again", error=CheckpointError)


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class GPT2Shape:
    """What a checkpoint's ``config.json`` says about the computation."""

    n_layer: int
    n_embd: int
    n_head: int
    n_inner: int
    n_positions: int
    vocab_size: int
    act_fn: str
    eps: float
    tied: bool
    n_loops: int
    layer_norm: bool
    mlp: bool
    scale_attn: bool

    def model_config(self, d_vocab: int) -> "ModelConfig":
        """The installed TransformerLens' config for this shape and a vocabulary of
        ``d_vocab`` tokens (``n_layers`` counts each pass of a looped model)."""
        return backend.make_config(
            n_layers=self.n_layer * self.n_loops,
            d_model=self.n_embd,
            n_heads=self.n_head,
            d_head=self.n_embd // self.n_head,
            d_mlp=None if not self.mlp else self.n_inner,
            attn_only=not self.mlp,
            d_vocab=d_vocab,
            d_vocab_out=d_vocab,
            n_ctx=self.n_positions,
            act_fn=self.act_fn,
            normalization_type="LN" if self.layer_norm else None,
            eps=self.eps,
            use_attn_scale=self.scale_attn,
            positional_embedding_type="standard",
            default_prepend_bos=False,
        )


def read_config(folder: str | os.PathLike) -> GPT2Shape:
    """The :class:`GPT2Shape` of a checkpoint folder's ``config.json``; a
    :class:`CheckpointError` for a model that is not GPT-2 or a key this library cannot honour."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{Path(folder)} has no {CONFIG}: not a Hugging Face checkpoint")
    c = read_json(path)
    if c.get("model_type") != "gpt2":
        raise CheckpointError(
            f"{path}: model_type {c.get('model_type')!r}; only GPT-2 checkpoints "
            "(GPT2LMHeadModel) are read"
        )
    refused = [k for k in FORK_KEYS_REFUSED if c.get(k)]
    if refused:
        raise CheckpointError(
            f"{path} sets {refused}: the paper's fork of modeling_gpt2.py computes something "
            "TransformerLens has no counterpart for with them (shared or memory MLPs, "
            f"re-embedding between passes); only {list(FORK_KEYS_LOADED)} are loaded"
        )
    if c.get("scale_attn_by_inverse_layer_idx") or c.get("add_cross_attention"):
        raise CheckpointError(
            f"{path}: scale_attn_by_inverse_layer_idx or add_cross_attention is set; "
            "TransformerLens' GPT-2 blocks compute neither"
        )
    act = c.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise CheckpointError(
            f"{path}: activation_function {act!r} is not one of {sorted(ACTIVATIONS)}"
        )
    n_embd, n_head = int(c["n_embd"]), int(c["n_head"])
    if n_embd % n_head:
        raise CheckpointError(f"{path}: n_embd={n_embd} is not a multiple of n_head={n_head}")
    return GPT2Shape(
        n_layer=int(c["n_layer"]),
        n_embd=n_embd,
        n_head=n_head,
        n_inner=int(c.get("n_inner") or 4 * n_embd),
        n_positions=int(c.get("n_positions", 1024)),
        vocab_size=int(c["vocab_size"]),
        act_fn=ACTIVATIONS[act],
        eps=float(c.get("layer_norm_epsilon", 1e-5)),
        tied=bool(c.get("tie_word_embeddings", True)),
        n_loops=2 if c.get("add_recurrence") else 1,
        layer_norm=not c.get("no_ln"),
        mlp=not c.get("no_mlp"),
        scale_attn=bool(c.get("scale_attn_weights", True)),
    )


# ----------------------------------------------------------------------------- tokenizer
@dataclass(frozen=True)
class TokenizerIds:
    """A checkpoint tokenizer's ids: ``ids[token]``, its length (ids below it are real tokens;
    rows at or above it are padding), and its end-of-text token."""

    ids: dict[str, int]
    length: int
    eos: str

    def id_of(self, token: str, folder: Path) -> int:
        if token not in self.ids:
            raise CheckpointError(
                f"token {token} of the data is not in the tokenizer of {folder}: the data and "
                "the checkpoint do not belong together (pass the dataset the run was trained on)"
            )
        return self.ids[token]


def read_tokenizer(folder: str | os.PathLike) -> TokenizerIds:
    """The token -> id map of a checkpoint folder's tokenizer, read from its files (the slow
    GPT-2 layout, ``vocab.json`` + ``added_tokens.json`` and ``tokenizer_config.json``'s
    ``added_tokens_decoder``, or a fast ``tokenizer.json``); no ``transformers`` needed."""
    folder = Path(folder)
    ids: dict[str, int] = {}
    fast = folder / "tokenizer.json"
    if fast.is_file():
        data = read_json(fast)
        ids.update(data.get("model", {}).get("vocab", {}) or {})
        ids.update({t["content"]: int(t["id"]) for t in data.get("added_tokens", [])})
    if (folder / "vocab.json").is_file():
        ids.update(read_json(folder / "vocab.json"))
    if (folder / "added_tokens.json").is_file():
        ids.update({k: int(v) for k, v in read_json(folder / "added_tokens.json").items()})
    config = (
        read_json(folder / "tokenizer_config.json")
        if (folder / "tokenizer_config.json").is_file()
        else {}
    )
    for i, t in (config.get("added_tokens_decoder") or {}).items():
        ids.setdefault(t["content"], int(i))
    if not ids:
        raise CheckpointError(
            f"{folder} has no tokenizer (tokenizer.json, or vocab.json with added_tokens.json): "
            "the token ids of a checkpoint are its tokenizer's; save it beside the weights"
        )
    specials = (
        read_json(folder / "special_tokens_map.json")
        if (folder / "special_tokens_map.json").is_file()
        else {}
    )
    eos = specials.get("eos_token", config.get("eos_token", "<|endoftext|>"))
    eos = eos.get("content") if isinstance(eos, dict) else eos  # a saved AddedToken
    if not isinstance(eos, str):
        raise CheckpointError(
            f"the end-of-text token of {folder} is {eos!r}; special_tokens_map.json or "
            "tokenizer_config.json must give eos_token as a string or as {'content': string}"
        )
    return TokenizerIds(ids=ids, length=len(set(ids.values())), eos=eos)


def token_rows(folder: str | os.PathLike, tokens: Sequence[str | None]) -> list[int]:
    """The checkpoint's id of each of ``tokens`` (None: its end-of-text token), by the folder's
    tokenizer; a :class:`CheckpointError` for a token it lacks."""
    tok = read_tokenizer(folder)
    return [tok.id_of(tok.eos if t is None else t, Path(folder)) for t in tokens]


# ----------------------------------------------------------------------------- weights
def weights_file(folder: str | os.PathLike) -> Path:
    """The weights file of a checkpoint folder (safetensors first, as ``transformers`` does)."""
    folder = Path(folder)
    for name in (SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN):
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(
        f"{folder} has no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} or {PYTORCH_BIN})"
    )


def weights_problem(folder: str | os.PathLike) -> str | None:
    """What is wrong with a checkpoint folder's weights file, checked without reading the
    tensors (a safetensors header that promises more bytes than the file has, a
    ``pytorch_model.bin`` whose zip directory is cut off); None if it looks whole."""
    try:
        path = weights_file(folder)
    except CheckpointError as err:
        return str(err)
    try:
        if path.name == PYTORCH_BIN:
            with zipfile.ZipFile(path) as z:
                z.infolist()
            return None
        if path.name == SAFETENSORS_INDEX:
            shards = set(read_json(path).get("weight_map", {}).values())
            return next(
                (p for s in sorted(shards) if (p := _safetensors_problem(path.parent / s))), None
            )
        return _safetensors_problem(path)
    except (OSError, zipfile.BadZipFile, CheckpointError) as err:
        return f"{path} cannot be read ({err}): truncated or corrupt"


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path} is truncated (no header)"
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            return f"{path} is truncated (its header is cut off)"
        try:
            header = json.loads(f.read(n))
        except json.JSONDecodeError:
            return f"{path} has a corrupt header"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        return f"{path} holds {size} bytes where its header promises {8 + n + end}: truncated"
    return None


def read_weights(folder: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict of a checkpoint folder, keys without the ``transformer.`` prefix."""
    from safetensors.torch import load_file

    path = weights_file(folder)
    problem = weights_problem(folder)
    if problem:
        raise CheckpointError(problem)
    try:
        if path.name == PYTORCH_BIN:
            state = torch.load(path, map_location="cpu", weights_only=True)
        elif path.name == SAFETENSORS_INDEX:
            state = {}
            for shard in sorted(set(read_json(path)["weight_map"].values())):
                state.update(load_file(str(path.parent / shard)))
        else:
            state = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - any failure to read is one line for the user
        raise CheckpointError(f"{path} cannot be read: {err}") from None
    return {k.removeprefix("transformer."): v.float() for k, v in state.items()}


def tl_weights(
    shape: GPT2Shape, hf: dict[str, Tensor], rows: Sequence[int], never: Sequence[int] = ()
) -> dict[str, Tensor]:
    """A GPT-2 state dict in ``HookedTransformer``'s format (the unique blocks only), keeping
    the embedding and unembedding rows ``rows`` in that order; the positions ``never`` (the
    caller's padding) get a zero unembedding and a bias of :data:`NEVER`."""
    h, d = shape.n_head, shape.n_embd
    dh = d // h
    used: set[str] = set()

    def take(key: str) -> Tensor:
        if key not in hf:
            raise CheckpointError(f"the weights have no {key!r}: not a GPT-2 state dict")
        used.add(key)
        return hf[key]

    index = torch.tensor(list(rows), dtype=torch.long)
    wte = take("wte.weight")
    if index.numel() and int(index.max()) >= wte.shape[0]:
        raise CheckpointError(
            f"token id {int(index.max())} is past the {wte.shape[0]} rows of the embedding"
        )
    if shape.tied:  # an lm_head.weight saved beside wte (older .bin files) is the same tensor
        unembed = wte
        used.add("lm_head.weight")
    else:
        if "lm_head.weight" not in hf:
            raise CheckpointError("tie_word_embeddings is false but there is no lm_head.weight")
        unembed = hf["lm_head.weight"]
        used.add("lm_head.weight")
    out = {"embed.W_E": wte[index].clone(), "pos_embed.W_pos": take("wpe.weight").clone()}
    for layer in range(shape.n_layer):
        p, q = f"h.{layer}", f"blocks.{layer}"
        if shape.layer_norm:
            out[f"{q}.ln1.w"], out[f"{q}.ln1.b"] = take(f"{p}.ln_1.weight"), take(f"{p}.ln_1.bias")
        w, b = take(f"{p}.attn.c_attn.weight"), take(f"{p}.attn.c_attn.bias")
        for i, x in enumerate("QKV"):
            out[f"{q}.attn.W_{x}"] = w[:, i * d : (i + 1) * d].reshape(d, h, dh).permute(1, 0, 2)
            out[f"{q}.attn.b_{x}"] = b[i * d : (i + 1) * d].reshape(h, dh)
        out[f"{q}.attn.W_O"] = take(f"{p}.attn.c_proj.weight").reshape(h, dh, d)
        out[f"{q}.attn.b_O"] = take(f"{p}.attn.c_proj.bias")
        if shape.mlp:
            if shape.layer_norm:
                out[f"{q}.ln2.w"] = take(f"{p}.ln_2.weight")
                out[f"{q}.ln2.b"] = take(f"{p}.ln_2.bias")
            out[f"{q}.mlp.W_in"] = take(f"{p}.mlp.c_fc.weight")
            out[f"{q}.mlp.b_in"] = take(f"{p}.mlp.c_fc.bias")
            out[f"{q}.mlp.W_out"] = take(f"{p}.mlp.c_proj.weight")
            out[f"{q}.mlp.b_out"] = take(f"{p}.mlp.c_proj.bias")
        elif shape.layer_norm:  # the fork keeps ln_2 without an MLP: it feeds nothing
            used.update(k for k in (f"{p}.ln_2.weight", f"{p}.ln_2.bias") if k in hf)
    if shape.layer_norm:
        out["ln_final.w"], out["ln_final.b"] = take("ln_f.weight"), take("ln_f.bias")
    w_u = unembed[index].T.clone()
    b_u = torch.zeros(len(index))
    for i in never:
        w_u[:, i], b_u[i] = 0.0, NEVER
    out["unembed.W_U"], out["unembed.b_U"] = w_u.contiguous(), b_u
    # Buffers old ``transformers`` saved (the causal mask) carry nothing; anything else does.
    left = sorted(k for k in set(hf) - used if not k.endswith((".attn.bias", ".attn.masked_bias")))
    if left:
        raise CheckpointError(
            f"the weights hold {left[:3]}{' ...' if len(left) > 3 else ''}, which a GPT-2 of "
            "this config does not have: the model computes something else (a fork's module?)"
        )
    return {k: v.contiguous() for k, v in out.items()}


def load_hf_model(
    folder: str | os.PathLike,
    tokens: Sequence[str | None],
    device: str | torch.device = "cpu",
) -> "Model":
    """The TransformerLens model of one Hugging Face GPT-2 checkpoint folder, speaking
    ``tokens`` (see the module docstring), in eval mode.

    Args:
        folder: a ``save_pretrained`` folder with the tokenizer's files beside the weights.
        tokens: the model's vocabulary, in order: token ``i`` becomes id ``i``. Each is a token
            string of the checkpoint's tokenizer (as the data spells it), or None for a padding
            id (read from the end-of-text row; its logit is fixed at :data:`NEVER`).
        device: where the model goes.

    Raises:
        CheckpointError: (a ValueError) in one line, for a folder that is not a GPT-2
            checkpoint, lacks its tokenizer or a token, holds a damaged weights file, or sets a
            config key this library cannot honour.
    """
    from grok_circuits.model import build_model, load_weights, model_weights

    folder = Path(folder)
    shape = read_config(folder)
    rows = token_rows(folder, tokens)
    never = [i for i, t in enumerate(tokens) if t is None]
    weights = tl_weights(shape, read_weights(folder), rows, never)
    cfg = shape.model_config(len(rows))
    model = build_model(cfg, device="cpu", n_loops=shape.n_loops)
    # The model's own buffers (3.x's attention masks) under the checkpoint's weights.
    buffers = {k: v for k, v in model_weights(model).items() if k.endswith((".mask", ".IGNORE"))}
    return backend.to_device(load_weights(model, {**buffers, **weights}), device).eval()


__all__ = [
    "CheckpointError",
    "GPT2Shape",
    "NEVER",
    "TokenizerIds",
    "load_hf_model",
    "read_config",
    "read_tokenizer",
    "read_weights",
    "tl_weights",
    "token_rows",
    "weights_problem",
]
