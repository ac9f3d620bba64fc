"""The model as a graph of edges, and the hook plumbing that reads and edits it.

A node-level circuit (:func:`~grok_circuits.find_circuit`) says *which* heads and MLPs matter;
an edge-level circuit says *which connections between them* carry the answer. The model is read
as a graph (Elhage et al. 2021's residual-stream view): every **source** writes into the residual
stream, every **destination** reads the sum of what all earlier sources wrote,

- sources: the embeddings (token + position), each attention head's output (``z @ W_O``, the
  head's share of ``attn_out``), each MLP's output;
- destinations: each head's query, key and value input (``hook_q_input`` / ``hook_k_input`` /
  ``hook_v_input``), each MLP's input (``hook_mlp_in``) and the logits (the input of the final
  LayerNorm, ``hook_resid_post`` of the last block).

An **edge** is a (source, destination) pair where the source is computed before the destination
reads: everything of an earlier layer, and a layer's heads into the same layer's MLP.

**Positions.** The residual stream is a separate vector at every position, and a source at
position ``p`` writes only into position ``p``; information moves between positions only inside
attention (a head at position ``p`` reads keys and values at positions ``<= p``). So an edge has a
position: the position of the residual stream it runs through. Scores are kept per position,
``[source, destination, pos]``.

**What TransformerLens gives and what is ours.** ``HookedTransformer`` already exposes the
destinations: ``use_split_qkv_input`` gives a copy of the residual stream per head for each of
q, k and v, and ``use_hook_mlp_in`` the MLP's input, so the graph is read and edited through
hooks only; those settings are switched on for the duration of a call and restored afterwards,
on error too (:func:`edge_hooks`). The 4.x bridge has ``hook_mlp_in`` but offers the per-head
q/k/v inputs only for joint-QKV attention; there
:func:`~grok_circuits.backend.split_qkv_hooks` recomputes them from the layer's residual input
and weights, and the scores equal those of 3.x (``tests/backend/test_backend.py``). Each head's
output is read at ``hook_z`` and multiplied by its ``W_O`` here (:func:`head_outputs`) rather than
through ``use_attn_result``, whose ``[batch, pos, head, d_head, d_model]`` intermediate made the
tutorial model's forward pass five times slower.
"""

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis.components import Component
from grok_circuits.backend import Model, edge_hooks


# ----------------------------------------------------------------------------- the graph
@dataclass(frozen=True)
class EdgeGraph:
    """The sources and destinations of a model's computational graph, and which pairs are edges.

    Sources, in computation order: ``"embed"``, then per layer its heads ``"L0H0"``, ... and its
    MLP ``"MLP0"``. Destinations, in computation order: per layer each head's ``"L0H0.q"``,
    ``"L0H0.k"``, ``"L0H0.v"`` (all queries, then keys, then values) and the MLP ``"MLP0"``; last
    the ``"logits"``.
    """

    n_layers: int
    n_heads: int
    has_mlp: bool

    @classmethod
    def of(cls, model: Model) -> "EdgeGraph":
        cfg = model.cfg
        unsupported = [
            name
            for name, bad in (
                ("parallel_attn_mlp", cfg.parallel_attn_mlp),
                ("n_key_value_heads (grouped-query attention)", cfg.n_key_value_heads),
                (
                    "positional_embedding_type='shortformer'",
                    cfg.positional_embedding_type == "shortformer",
                ),
            )
            if bad
        ]
        if unsupported:
            raise ValueError(
                f"edge attribution reads a sequential residual stream; this model uses "
                f"{unsupported}, which it does not support (use find_circuit for node scores)"
            )
        return cls(cfg.n_layers, cfg.n_heads, not cfg.attn_only)

    # --- sources
    @property
    def per_layer(self) -> int:
        return self.n_heads + int(self.has_mlp)

    def head_source(self, layer: int, head: int) -> int:
        return 1 + layer * self.per_layer + head

    def mlp_source(self, layer: int) -> int:
        return 1 + layer * self.per_layer + self.n_heads

    @property
    def n_sources(self) -> int:
        return 1 + self.n_layers * self.per_layer

    @property
    def sources(self) -> tuple[str, ...]:
        out = ["embed"]
        for layer in range(self.n_layers):
            out += [f"L{layer}H{h}" for h in range(self.n_heads)]
            out += [f"MLP{layer}"] if self.has_mlp else []
        return tuple(out)

    # --- destinations
    @property
    def dst_per_layer(self) -> int:
        return 3 * self.n_heads + int(self.has_mlp)

    def qkv_destination(self, layer: int, which: int) -> int:
        """The first destination of ``which`` (0 q, 1 k, 2 v) of ``layer``; its heads follow."""
        return layer * self.dst_per_layer + which * self.n_heads

    def mlp_destination(self, layer: int) -> int:
        return layer * self.dst_per_layer + 3 * self.n_heads

    @property
    def logits_destination(self) -> int:
        return self.n_layers * self.dst_per_layer

    @property
    def n_destinations(self) -> int:
        return self.n_layers * self.dst_per_layer + 1

    @property
    def destinations(self) -> tuple[str, ...]:
        out = []
        for layer in range(self.n_layers):
            for letter in "qkv":
                out += [f"L{layer}H{h}.{letter}" for h in range(self.n_heads)]
            out += [f"MLP{layer}"] if self.has_mlp else []
        return tuple(out + ["logits"])

    # --- nodes of the component graph
    def source_layer(self, s: int) -> float:
        """The layer of source ``s`` (-1 for the embeddings; an MLP sits half a layer above its
        layer's heads)."""
        if s == 0:
            return -1.0
        layer, k = divmod(s - 1, self.per_layer)
        return layer + (0.5 if k == self.n_heads else 0.0)

    def destination_layer(self, d: int) -> float:
        if d == self.logits_destination:
            return float(self.n_layers)
        layer, k = divmod(d, self.dst_per_layer)
        return layer + (0.5 if k == 3 * self.n_heads else 0.0)

    def source_component(self, s: int) -> Component | None:
        """The head or MLP that source ``s`` is (None for the embeddings)."""
        if s == 0:
            return None
        layer, k = divmod(s - 1, self.per_layer)
        return Component(layer, None if k == self.n_heads else k)

    def destination_component(self, d: int) -> Component | None:
        """The head or MLP that destination ``d`` feeds (None for the logits)."""
        if d == self.logits_destination:
            return None
        layer, k = divmod(d, self.dst_per_layer)
        return Component(layer, None if k == 3 * self.n_heads else k % self.n_heads)

    def destination_source(self, d: int) -> int | None:
        """The source whose output destination ``d`` feeds (None for the logits)."""
        c = self.destination_component(d)
        if c is None:
            return None
        return self.mlp_source(c.layer) if c.head is None else self.head_source(c.layer, c.head)

    def destination_slot(self, d: int) -> str:
        """``"q"``, ``"k"``, ``"v"``, ``"mlp"`` or ``"logits"``."""
        if d == self.logits_destination:
            return "logits"
        k = d % self.dst_per_layer
        return "mlp" if k == 3 * self.n_heads else "qkv"[k // self.n_heads]

    @property
    def valid(self) -> Tensor:
        """``[source, destination]``: True where the source is computed before the destination
        reads the residual stream (an edge of the graph)."""
        src = torch.tensor([self.source_layer(s) for s in range(self.n_sources)])
        dst = torch.tensor([self.destination_layer(d) for d in range(self.n_destinations)])
        return src[:, None] < dst[None, :]

    @property
    def n_edges(self) -> int:
        """Edges of the graph, positions not counted."""
        return int(self.valid.sum())

    # --- hook points
    def source_hooks(self) -> list[str]:
        """Where each source is read: the embeddings at ``blocks.0.hook_resid_pre``, heads at
        ``hook_z`` (turned into their outputs by :func:`head_outputs`), MLPs at
        ``hook_mlp_out``."""
        names = ["blocks.0.hook_resid_pre"]
        for layer in range(self.n_layers):
            names.append(f"blocks.{layer}.attn.hook_z")
            names += [f"blocks.{layer}.hook_mlp_out"] if self.has_mlp else []
        return names

    def destination_hooks(self) -> list[str]:
        names = []
        for layer in range(self.n_layers):
            names += [f"blocks.{layer}.hook_{x}_input" for x in "qkv"]
            names += [f"blocks.{layer}.hook_mlp_in"] if self.has_mlp else []
        return names + [f"blocks.{self.n_layers - 1}.hook_resid_post"]

    def source_slices(self) -> list[slice]:
        """For each of :meth:`source_hooks`, the sources it holds (its head axis, if any)."""
        out = [slice(0, 1)]
        for layer in range(self.n_layers):
            h0 = self.head_source(layer, 0)
            out.append(slice(h0, h0 + self.n_heads))
            if self.has_mlp:
                m = self.mlp_source(layer)
                out.append(slice(m, m + 1))
        return out


class Edge(NamedTuple):
    """One edge: source and destination names, and the position it runs through (None for an
    edge summed over positions)."""

    source: str
    destination: str
    pos: int | None = None

    def label(self, pos_labels: Sequence[str] | None = None) -> str:
        at = ""
        if self.pos is not None:
            at = f" @{pos_labels[self.pos] if pos_labels else self.pos}"
        return f"{self.source} -> {self.destination}{at}"


# ----------------------------------------------------------------------------- model settings
@contextlib.contextmanager
def _frozen(model: Model) -> Iterator[None]:
    """Parameters without gradients for the duration (the gradients wanted are the
    activations'; the caller's ``requires_grad`` flags and ``.grad`` are left as they were)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def head_outputs(
    model: Model, layer: int, z: Float[Tensor, "batch pos head d_head"]
) -> Float[Tensor, "batch pos head d_model"]:
    """Each head's output in the residual stream, ``z @ W_O`` per head (what ``hook_result``
    holds with ``use_attn_result``, computed without its ``[..., d_head, d_model]``
    intermediate)."""
    return torch.einsum("bphe,hem->bphm", z, model.blocks[layer].attn.W_O)


def source_value(model: Model, name: str, act: Tensor) -> Tensor:
    """A source hook's activation as the source's output ``[batch, pos, node, d_model]``."""
    if name.endswith("attn.hook_z"):
        return head_outputs(model, int(name.split(".")[1]), act)
    return act[:, :, None]


@torch.no_grad()
def source_outputs(
    model: Model, graph: EdgeGraph, tokens: Tensor
) -> Float[Tensor, "batch pos source d_model"]:
    """Every source's output on ``tokens``, in source order."""
    names = graph.source_hooks()
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return torch.cat([source_value(model, n, cache[n]) for n in names], dim=2)


__all__ = [
    "Edge",
    "EdgeGraph",
    "edge_hooks",
    "head_outputs",
    "source_outputs",
    "source_value",
]
