"""Edge-level circuits: edge attribution patching (EAP) and its integrated-gradients version.

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

**Edge attribution patching** (Syed, Rager & Conmy 2023, "Attribution Patching Outperforms
Automated Circuit Discovery") estimates, for every edge at once, what happens to a metric when
only that edge carries the corrupt prompt's value instead of the clean one. To first order
(a Taylor expansion around the clean run),

    score(u -> v) = (a_u(clean) - a_u(corrupt)) . d metric / d in_v (clean),

where ``a_u`` is the source's output and ``in_v`` the destination's input: one forward and one
backward pass give the gradients at every destination, one cached forward pass per prompt
gives every source's output, and an outer product gives every edge. **EAP-IG** (Hanna, Pezzelle
& Belinkov 2024, "Have Faith in Faithfulness") replaces the gradient at the clean run with its
average over ``ig_steps`` inputs interpolated between the corrupt and the clean embeddings
(integrated gradients, Sundararajan et al. 2017), which follows the metric's curvature and ranks
edges closer to exact patching. ``ig_steps=1`` is plain EAP.

**Positions.** The residual stream is a separate vector at every position, and a source at
position ``p`` writes only into position ``p``; information moves between positions only inside
attention (a head at position ``p`` reads keys and values at positions ``<= p``). So an edge has a
position: the position of the residual stream it runs through. Scores are kept per position,
``[source, destination, pos]`` (the paper's circuits are drawn at (layer, position), and so is
:meth:`EdgeCircuit.plot`); ``positions=False`` everywhere sums them into one score per
(source, destination), the usual EAP graph.

**Scores.** The metric is the clean-minus-corrupt answer logit difference per example
(:func:`~grok_circuits.analysis.metrics.logit_difference`), or any differentiable function of
the answer logits. A score is the estimated *drop* of the mean metric when the edge is
corrupted; :attr:`EdgeScores.normalized` divides it by the whole effect of the swap (mean clean
minus mean corrupt metric), so 1 is the entire effect (the convention of
:func:`~grok_circuits.find_circuit`'s ``metric="logit_difference"``). Edges are ranked by the
absolute score, as in EAP.

**What TransformerLens gives and what is ours.** ``HookedTransformer`` already exposes the
destinations: ``use_split_qkv_input`` gives a copy of the residual stream per head for each of
q, k and v, and ``use_hook_mlp_in`` the MLP's input, so the graph is read and edited through
hooks only; those settings are switched on for the duration of a call and restored afterwards,
on error too (:func:`edge_hooks`). The 4.x bridge has ``hook_mlp_in`` but offers the per-head
q/k/v inputs only for joint-QKV attention; there
:func:`~grok_circuits.backend.split_qkv_hooks` recomputes them from the layer's residual input
and weights, and the scores equal those of 3.x (``tests/test_backend.py``). Each head's output
is read at ``hook_z`` and multiplied by its ``W_O`` here (:func:`head_outputs`) rather than
through ``use_attn_result``, whose ``[batch, pos, head, d_head, d_model]`` intermediate made the
tutorial model's forward pass five times slower.
TransformerLens 3.x's ``tools.analysis.attribution_patching`` is node-level, targets
``TransformerBridge`` rather than ``HookedTransformer``, and declares edge scores and integrated
gradients unimplemented, and ``transformer_lens.patching`` patches one node per forward pass; so
the edge graph, the gradient bookkeeping, EAP-IG and the edge ablation of
:mod:`grok_circuits.analysis.edges.faithfulness` are written here. The tests check EAP against a
first-order estimate computed by hand, and its node sums against ``transformer_lens.patching``.
"""

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis._inputs import Data, as_pairs, weights_digest
from grok_circuits.analysis.components import Component
from grok_circuits.backend import BRIDGE, TL_VERSION, Model, split_qkv_hooks, supports_edge_graph
from grok_circuits.model import logits_at
from grok_circuits.tasks import PromptPairs

#: The share of the edges an edge circuit keeps when no ``top_k`` or ``threshold`` is given,
#: fixed before looking at any result.
DEFAULT_SHARE = 0.05

EdgeMethod = Literal["eap", "eap-ig"]
EDGE_METHODS: tuple[str, ...] = ("eap", "eap-ig")

#: A differentiable metric of the answer logits: ``metric(answer_logits [batch, d_vocab],
#: pairs) -> [batch]`` (one value per example), or the name ``"logit_difference"``.
EdgeMetric = Literal["logit_difference"] | Callable[[Tensor, PromptPairs], Tensor]


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

    def destination_slices(self) -> list[slice]:
        """For each of :meth:`destination_hooks`, the destinations it holds."""
        out = []
        for layer in range(self.n_layers):
            for which in range(3):
                d0 = self.qkv_destination(layer, which)
                out.append(slice(d0, d0 + self.n_heads))
            if self.has_mlp:
                m = self.mlp_destination(layer)
                out.append(slice(m, m + 1))
        return out + [slice(self.logits_destination, self.logits_destination + 1)]


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
def edge_hooks(model: Model) -> Iterator[None]:
    """Switch on the hook points the edge graph reads (a q/k/v input per head, the MLP input)
    and restore the model's settings afterwards, also on error. Hooks on the q/k/v inputs go
    through :func:`~grok_circuits.backend.split_qkv_hooks`, which emulates them on the 4.x
    bridge."""
    if not supports_edge_graph(model):
        raise NotImplementedError(
            f"the edge graph needs a query, key and value input per head, which TransformerLens "
            f"{TL_VERSION} does not give this model (normalization "
            f"{model.cfg.normalization_type!r}); use TransformerLens 3.x: pip install -e '.[tl3]'"
        )
    cfg = model.cfg
    split = not BRIDGE  # the bridge's per-head inputs are emulated, not switched on
    saved = (getattr(cfg, "use_split_qkv_input", False), cfg.use_hook_mlp_in)
    try:
        if split:
            model.set_use_split_qkv_input(True)
        if not cfg.attn_only:
            model.set_use_hook_mlp_in(True)
        yield
    finally:
        if split:
            cfg.use_split_qkv_input = saved[0]
        if not cfg.attn_only:
            model.set_use_hook_mlp_in(saved[1])


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


def _stack(acts: Sequence[Tensor]) -> Float[Tensor, "batch pos node d_model"]:
    """Hook activations ``[batch, pos, (head,) d_model]`` stacked along one node axis."""
    return torch.cat([a if a.dim() == 4 else a[:, :, None] for a in acts], dim=2)


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


# ----------------------------------------------------------------------------- the metric
def metric_fn(metric: EdgeMetric) -> Callable[[Tensor, PromptPairs], Tensor]:
    """The per-example metric of the answer logits that ``metric`` names."""
    if callable(metric):
        return metric
    if metric != "logit_difference":
        raise ValueError(
            f"metric={metric!r}: edge attribution needs a differentiable metric; use "
            "'logit_difference' or a function (answer_logits, pairs) -> [batch]"
        )

    def logit_diff(answer_logits: Tensor, pairs: PromptPairs) -> Tensor:
        if pairs.corrupt_answers is None:
            raise ValueError(
                "metric='logit_difference' needs pairs.corrupt_answers (the corrupt prompts' "
                "answers); build the pairs with them, or pass a metric function"
            )
        rows = torch.arange(answer_logits.shape[0], device=answer_logits.device)
        clean = pairs.answers.to(answer_logits.device)
        corrupt = pairs.corrupt_answers.to(answer_logits.device)
        return answer_logits[rows, clean] - answer_logits[rows, corrupt]

    return logit_diff


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class EdgeScores:
    """Every edge's attribution score (see the module docstring).

    Attributes:
        graph: the model's :class:`EdgeGraph`.
        raw: ``[source, destination, pos]`` the estimated drop of the mean metric when the edge
            (at that position) carries the corrupt value; 0 where no edge exists.
        clean_metric, corrupt_metric: the mean metric on the clean and the corrupt prompts.
        method: ``"eap"`` or ``"eap-ig"``; ig_steps: the gradients averaged.
        n_examples: the pairs scored.
        pos_labels: the name of each position.
        model_digest: :func:`~grok_circuits.analysis.inputs.weights_digest` of the model scored,
            so that :func:`~grok_circuits.faithfulness` can refuse another model (None: not
            recorded, and not checked).
    """

    graph: EdgeGraph
    raw: Float[Tensor, "source destination pos"]
    clean_metric: float
    corrupt_metric: float
    method: str
    ig_steps: int
    n_examples: int
    pos_labels: tuple[str, ...]
    model_digest: str | None = None

    @property
    def effect(self) -> float:
        """The whole effect of the swap on the metric: clean minus corrupt mean."""
        return self.clean_metric - self.corrupt_metric

    @property
    def normalized(self) -> Float[Tensor, "source destination pos"]:
        """Scores as a share of the whole effect (1 = all of it; NaN when the swap has no
        effect to share)."""
        if abs(self.effect) < 1e-9:
            return torch.full_like(self.raw, math.nan)
        return self.raw / self.effect

    def valid(self, positions: bool = True) -> Tensor:
        """``[source, destination, pos]`` (or ``[source, destination]`` with
        ``positions=False``): which entries are edges."""
        v = self.graph.valid
        return v[:, :, None].expand(*v.shape, self.raw.shape[-1]) if positions else v

    def summed(self) -> Float[Tensor, "source destination"]:
        """Normalised scores summed over positions: one per (source, destination)."""
        return self.normalized.sum(-1)

    def scores(self, positions: bool = True) -> Tensor:
        """Normalised scores, per position or summed over them."""
        return self.normalized if positions else self.summed()

    def node_scores(self) -> Float[Tensor, "source pos"]:
        """Each source's score at each position: the sum over the destinations it feeds.

        By the chain rule this is the attribution of the node itself (its output patched into
        every destination at once), comparable with node-level activation patching."""
        return self.normalized.sum(1)

    def ranking(self, positions: bool = True) -> Tensor:
        """Indices of the edges (into the flattened ``valid(positions)`` entries) from the
        largest absolute score down; ties (and NaN) in graph order."""
        s = self.raw if positions else self.raw.sum(-1)
        v = self.valid(positions).flatten()
        key = s.abs().flatten().nan_to_num(nan=-1.0).double()
        idx = torch.nonzero(v).flatten()
        order = torch.argsort(-key[idx], stable=True)
        return idx[order]

    def edge(self, flat: int, positions: bool = True) -> Edge:
        """The :class:`Edge` at a flat index (as :meth:`ranking` returns)."""
        n_pos = self.raw.shape[-1]
        g = self.graph
        if positions:
            s, rest = divmod(flat, g.n_destinations * n_pos)
            d, p = divmod(rest, n_pos)
            return Edge(g.sources[s], g.destinations[d], p)
        s, d = divmod(flat, g.n_destinations)
        return Edge(g.sources[s], g.destinations[d], None)

    def top(self, k: int = 10, positions: bool = True) -> list[tuple[Edge, float]]:
        """The ``k`` edges of largest absolute score, with their normalised scores."""
        flat = self.scores(positions).flatten()
        return [(self.edge(int(i), positions), float(flat[i])) for i in self.ranking(positions)[:k]]

    def circuit(
        self,
        *,
        top_k: int | None = None,
        threshold: float | None = None,
        positions: bool = True,
        prune: bool = True,
    ) -> "EdgeCircuit":
        """The edges of largest absolute score: the ``top_k`` of them, or those whose
        normalised absolute score is ``>= threshold``; with ``prune``, dangling edges are then
        removed (:meth:`EdgeCircuit.pruned`).

        Args:
            top_k, threshold: the selection rule (one of them; default: the top
                :data:`DEFAULT_SHARE` of the edges).
            positions: select position-resolved edges (default) or edges summed over positions.
            prune: drop edges that no path from the embeddings reaches, or that reach no path
                to the logits.
        """
        if top_k is not None and threshold is not None:
            raise ValueError(f"pass top_k or threshold, not both (got {top_k}, {threshold})")
        if top_k is None and threshold is None:
            top_k = max(1, round(DEFAULT_SHARE * int(self.valid(positions).sum())))
        if top_k is not None and top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        valid = self.valid(positions)
        mask = torch.zeros(valid.numel(), dtype=torch.bool)
        if top_k is not None:
            mask[self.ranking(positions)[:top_k]] = True
        else:
            mask = (self.scores(positions).abs() >= threshold).flatten() & valid.flatten()
        circuit = EdgeCircuit(self, mask.view(valid.shape), positions, top_k, threshold)
        return circuit.pruned() if prune else circuit

    def to_frame(self, positions: bool = True):
        """One row per edge: source, destination, position, normalised and raw score;
        sorted by absolute score."""
        import pandas as pd

        norm = self.scores(positions).flatten()
        raw = (self.raw if positions else self.raw.sum(-1)).flatten()
        rows = []
        for i in self.ranking(positions).tolist():
            e = self.edge(i, positions)
            rows.append(
                {
                    "edge": e.label(self.pos_labels),
                    "source": e.source,
                    "destination": e.destination,
                    "pos": None if e.pos is None else self.pos_labels[e.pos],
                    "score": float(norm[i]),
                    "raw": float(raw[i]),
                }
            )
        return pd.DataFrame(rows).set_index("edge")

    def summary(self) -> dict[str, float]:
        """A few numbers per result (the columns :meth:`OverCheckpoints.to_frame` shows)."""
        a = self.normalized.abs()[self.valid()]
        return {
            "clean metric": self.clean_metric,
            "corrupt metric": self.corrupt_metric,
            "top edge": float(a.max()) if a.numel() else math.nan,
            "sum |score|": float(a.sum()),
        }

    def plot(self, top_k: int | None = None, **kw):
        """The ``top_k`` edge circuit (default: the top :data:`DEFAULT_SHARE` of the edges) at
        (layer, position); see :meth:`EdgeCircuit.plot`."""
        return self.circuit(top_k=top_k).plot(**kw)

    def __str__(self) -> str:
        head = (
            f"EdgeScores({self.method}, ig_steps={self.ig_steps}, {self.n_examples} pairs, "
            f"{self.graph.n_edges} edges x {self.raw.shape[-1]} positions; metric clean "
            f"{self.clean_metric:.3f}, corrupt {self.corrupt_metric:.3f})"
        )
        lines = [f"  {s:+.3f}  {e.label(self.pos_labels)}" for e, s in self.top(8)]
        return "\n".join([head, *lines])

    __repr__ = __str__


@dataclass(frozen=True, eq=False)
class EdgeCircuit:
    """A set of edges selected from :class:`EdgeScores`.

    Attributes:
        scores: where the edges come from.
        mask: ``[source, destination, pos]`` (or ``[source, destination]`` when
            ``positions`` is False) the edges in the circuit.
        positions: whether edges are per position.
        top_k, threshold: the selection rule.
    """

    scores: EdgeScores
    mask: Tensor
    positions: bool
    top_k: int | None = None
    threshold: float | None = None

    @property
    def graph(self) -> EdgeGraph:
        return self.scores.graph

    def __len__(self) -> int:
        return int(self.mask.sum())

    def full_mask(self) -> Tensor:
        """``[source, destination, pos]``: the circuit per position (an edge summed over
        positions is in the circuit at every position)."""
        n_pos = self.scores.raw.shape[-1]
        m = self.mask if self.positions else self.mask[:, :, None].expand(*self.mask.shape, n_pos)
        return m & self.scores.valid()

    @property
    def edges(self) -> list[Edge]:
        """The edges, from the largest absolute score down."""
        flat = self.mask.flatten()
        return [
            self.scores.edge(int(i), self.positions)
            for i in self.scores.ranking(self.positions)
            if flat[i]
        ]

    @property
    def components(self) -> tuple[Component, ...]:
        """The heads and MLPs that any edge of the circuit leaves or enters, in computation
        order."""
        g = self.graph
        src, dst = torch.nonzero(self.mask.reshape(g.n_sources, g.n_destinations, -1).any(-1)).T
        comps = {g.source_component(int(s)) for s in src}
        comps |= {g.destination_component(int(d)) for d in dst}
        comps.discard(None)
        return tuple(sorted(comps, key=Component.sort_key))

    def pruned(self) -> "EdgeCircuit":
        """The circuit without dangling edges: an edge stays when its source is reached from the
        embeddings through circuit edges (or is the embeddings) and its destination leads to the
        logits through circuit edges. With positions, a head's output at position ``p`` is
        reached through its query at ``p`` or its keys and values at ``<= p``, and its inputs
        lead on through its outputs at ``p`` (query) or ``>= p`` (keys, values)."""
        g = self.graph
        m = self.full_mask().clone()
        n_pos = m.shape[-1]
        n_src = g.n_sources
        slot = [g.destination_slot(d) for d in range(g.n_destinations)]
        feeds = [g.destination_source(d) for d in range(g.n_destinations)]
        order = sorted(range(g.n_destinations), key=g.destination_layer)

        def reach(inputs: Tensor, d: int) -> Tensor:
            """Positions of the output of ``d``'s node that inputs at ``inputs`` [pos] reach."""
            if slot[d] in ("k", "v"):
                return inputs.cummax(0).values  # a key/value at p is read from p on
            return inputs

        # forward: which (source, pos) carry something from the embeddings
        alive = torch.zeros(n_src, n_pos, dtype=torch.bool)
        alive[0] = True
        for d in order:
            into = (m[:, d] & alive).any(0)  # [pos]
            m[:, d] &= alive  # an edge from a dead source carries nothing
            s = feeds[d]
            if s is not None:
                alive[s] |= reach(into, d)
        # backward: which (source, pos) lead to the logits
        useful = torch.zeros(n_src, n_pos, dtype=torch.bool)
        for d in reversed(order):
            s = feeds[d]
            if s is None:
                target = torch.ones(n_pos, dtype=torch.bool)
            elif slot[d] in ("k", "v"):  # a key/value at p serves the outputs at >= p
                target = useful[s].flip(0).cummax(0).values.flip(0)
            else:
                target = useful[s]
            m[:, d] &= target[None, :]
            useful |= m[:, d]
        m &= useful[:, None, :]
        mask = m if self.positions else (m.any(-1) & self.mask)
        return EdgeCircuit(self.scores, mask, self.positions, self.top_k, self.threshold)

    def to_frame(self):
        """One row per edge of the circuit (as :meth:`EdgeScores.to_frame`)."""
        df = self.scores.to_frame(self.positions)
        labels = [e.label(self.scores.pos_labels) for e in self.edges]
        return df.loc[labels]

    def plot(self, **kw):
        """The circuit drawn at (layer, position): a node per head and MLP output per position,
        an edge per circuit edge, its width the absolute score and its colour the sign. See
        :func:`grok_circuits.viz.plot_edge_circuit`."""
        from grok_circuits.viz.edges import plot_edge_circuit

        return plot_edge_circuit(self, **kw)

    def __str__(self) -> str:
        rule = f"top_k={self.top_k}" if self.top_k is not None else f"threshold={self.threshold}"
        pos = "per position" if self.positions else "summed over positions"
        norm = self.scores.scores(self.positions).flatten()
        head = f"EdgeCircuit({rule}, {pos}): {len(self)} edges, components " + (
            ", ".join(map(str, self.components)) or "-"
        )
        ranked = [i for i in self.scores.ranking(self.positions).tolist() if self.mask.flatten()[i]]
        lines = [
            f"  {float(norm[i]):+.3f}  "
            f"{self.scores.edge(i, self.positions).label(self.scores.pos_labels)}"
            for i in ranked[:12]
        ]
        more = [f"  ... and {len(ranked) - 12} more"] if len(ranked) > 12 else []
        return "\n".join([head, *lines, *more])

    __repr__ = __str__


# ----------------------------------------------------------------------------- the method
def _gradients(
    model: Model,
    graph: EdgeGraph,
    pairs: PromptPairs,
    metric: Callable[[Tensor, PromptPairs], Tensor],
    clean_embed: Tensor,
    corrupt_embed: Tensor,
    alpha: float,
) -> tuple[Float[Tensor, "batch pos destination d_model"], Tensor]:
    """d metric / d input of every destination, on the input ``corrupt + alpha (clean -
    corrupt)`` (interpolated at the embeddings), and the metric per example there."""
    names = graph.destination_hooks()
    grads: dict[str, Tensor] = {}

    def interpolate(act: Tensor, hook) -> Tensor:
        x = corrupt_embed + alpha * (clean_embed - corrupt_embed)
        return x.detach().requires_grad_(True)

    def keep_grad(act: Tensor, hook, *, name: str) -> Tensor:
        # A copy, so that the gradient is the destination's alone: the bridge's hook_mlp_in
        # passes the residual stream itself, whose gradient also holds the skip connection.
        # The name is the one registered: the bridge calls an alias by its own name.
        act = act.clone()
        act.register_hook(lambda g: grads.__setitem__(name, g.detach()))
        return act

    hooks = [("blocks.0.hook_resid_pre", interpolate)]
    hooks += [(n, functools.partial(keep_grad, name=n)) for n in names]
    with torch.enable_grad(), model.hooks(fwd_hooks=split_qkv_hooks(model, hooks)):
        logits = model(pairs.clean.to(model.cfg.device), return_type="logits")
        values = metric(logits_at(logits, pairs.answer_pos), pairs)
        values.sum().backward()
    return _stack([grads[n] for n in names]), values.detach()


def edge_attribution(
    model: Model,
    pairs: Data,
    *,
    method: EdgeMethod = "eap-ig",
    ig_steps: int = 5,
    metric: EdgeMetric = "logit_difference",
    swap: str | None = None,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> EdgeScores:
    """Score every edge of the model's graph by edge attribution patching (see the module
    docstring).

    Args:
        model: any ``Model`` with a sequential residual stream (not modified: its
            hook settings are restored and its parameters' gradients untouched).
        pairs: :class:`~grok_circuits.PromptPairs`, or a registered task (pairs are then built
            with ``swap``, ``subtask``, ``split``, ``n_examples``, ``seed``, as everywhere).
        method: ``"eap"`` (gradients at the clean run; Syed et al. 2023) or ``"eap-ig"``
            (gradients averaged over ``ig_steps`` inputs between corrupt and clean; Hanna et al.
            2024).
        ig_steps: interpolation steps of EAP-IG (the paper: 5); one forward and backward pass
            each per batch.
        metric: ``"logit_difference"`` (clean minus corrupt answer logit, per example) or a
            function ``(answer_logits [batch, d_vocab], pairs) -> [batch]``.
        batch_size: pairs per forward pass.
        progress: a progress bar over the batches.

    Returns:
        :class:`EdgeScores`, ``[source, destination, pos]``.
    """
    if method not in EDGE_METHODS:
        raise ValueError(f"method={method!r}; choose one of {EDGE_METHODS}")
    if method == "eap-ig" and ig_steps < 1:
        raise ValueError(f"ig_steps must be >= 1, got {ig_steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pairs = as_pairs(
        model, pairs, swap=swap, subtask=subtask, split=split, n_examples=n_examples, seed=seed
    )
    if len(pairs) == 0:
        raise ValueError("no pairs to score; pass at least one")
    fn = metric_fn(metric)
    graph = EdgeGraph.of(model)
    steps = ig_steps if method == "eap-ig" else 1
    n_pos = pairs.width
    raw = torch.zeros(graph.n_sources, graph.n_destinations, n_pos, dtype=torch.float64)
    clean_sum = corrupt_sum = 0.0
    device = model.cfg.device
    from tqdm.auto import tqdm

    with edge_hooks(model), _frozen(model):
        for i in tqdm(range(0, len(pairs), batch_size), desc="edges", disable=not progress):
            b = pairs[i : i + batch_size]
            clean = source_outputs(model, graph, b.clean.to(device))
            corrupt = source_outputs(model, graph, b.corrupt.to(device))
            with torch.no_grad():
                corrupt_logits = model(b.corrupt.to(device), return_type="logits")
                corrupt_sum += float(fn(logits_at(corrupt_logits, b.answer_pos), b).sum())
            grad = torch.zeros(*clean.shape[:2], graph.n_destinations, clean.shape[-1])
            grad = grad.to(clean)
            for k in range(1, steps + 1):
                g, values = _gradients(
                    model, graph, b, fn, clean[:, :, 0], corrupt[:, :, 0], k / steps
                )
                grad += g / steps
                if k == steps:  # alpha = 1: the clean run
                    clean_sum += float(values.sum())
            diff = clean - corrupt
            raw += torch.einsum("bpsm,bpdm->sdp", diff, grad).double().cpu()
    raw = (raw / len(pairs)).float() * graph.valid[:, :, None]
    return EdgeScores(
        graph=graph,
        raw=raw,
        clean_metric=clean_sum / len(pairs),
        corrupt_metric=corrupt_sum / len(pairs),
        method=method,
        ig_steps=steps,
        n_examples=len(pairs),
        pos_labels=pairs.pos_labels,
        model_digest=weights_digest(model),
    )


# ----------------------------------------------------------------------------- over training
@dataclass(frozen=True, eq=False)
class EdgeChange:
    """How the top edges' scores change between two stages (e.g. the memorizing and the
    generalizing checkpoint): the edge-level version of the paper's "change during grokking".

    Attributes:
        names: the two stages' names.
        edges: the edges compared (the ``top_k`` of either stage by absolute score).
        before, after: ``[edge]`` normalised scores at the two stages.
        pos_labels: the name of each position.
    """

    names: tuple[str, str]
    edges: tuple[Edge, ...]
    before: Float[Tensor, " edge"]
    after: Float[Tensor, " edge"]
    pos_labels: tuple[str, ...]

    @property
    def change(self) -> Float[Tensor, " edge"]:
        return self.after - self.before

    def to_frame(self):
        """One row per edge: the score at each stage and the change, largest change first."""
        import pandas as pd

        a, b = self.names
        df = pd.DataFrame(
            {
                a: self.before.tolist(),
                b: self.after.tolist(),
                "change": self.change.tolist(),
            },
            index=pd.Index([e.label(self.pos_labels) for e in self.edges], name="edge"),
        )
        return df.sort_values("change", key=abs, ascending=False, kind="stable")

    def plot(self, **kw):
        """Each edge's score at the two stages, side by side. See
        :func:`grok_circuits.viz.plot_edge_change`."""
        from grok_circuits.viz.edges import plot_edge_change

        return plot_edge_change(self, **kw)

    def __str__(self) -> str:
        a, b = self.names
        return f"EdgeChange({a} -> {b}, {len(self.edges)} edges)\n" + self.to_frame().to_string(
            float_format=lambda x: f"{x:+.3f}"
        )

    __repr__ = __str__


def compare_edges(
    before: EdgeScores,
    after: EdgeScores,
    *,
    top_k: int = 10,
    positions: bool = True,
    names: tuple[str, str] = ("memorizing", "generalizing"),
) -> EdgeChange:
    """The scores of the top edges at two stages of one model's training (the union of each
    stage's ``top_k`` edges by absolute score, ordered by their largest absolute score).

    ``before`` and ``after`` come from :func:`edge_attribution` on the same pairs, e.g. from
    ``over_checkpoints(run, lambda m: edge_attribution(m, pairs))[step]``."""
    if before.raw.shape != after.raw.shape or before.graph != after.graph:
        raise ValueError(
            "the two EdgeScores come from different graphs or prompt widths; score checkpoints "
            "of one run on the same pairs"
        )
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    a = before.scores(positions).flatten()
    b = after.scores(positions).flatten()
    chosen = set(before.ranking(positions)[:top_k].tolist())
    chosen |= set(after.ranking(positions)[:top_k].tolist())
    order = sorted(chosen, key=lambda i: (-max(abs(float(a[i])), abs(float(b[i]))), i))
    idx = torch.tensor(order, dtype=torch.long)
    return EdgeChange(
        names=tuple(names),
        edges=tuple(after.edge(i, positions) for i in order),
        before=a[idx].float(),
        after=b[idx].float(),
        pos_labels=after.pos_labels,
    )


__all__ = [
    "DEFAULT_SHARE",
    "EDGE_METHODS",
    "Edge",
    "EdgeChange",
    "EdgeCircuit",
    "EdgeGraph",
    "EdgeMethod",
    "EdgeMetric",
    "EdgeScores",
    "compare_edges",
    "edge_attribution",
    "edge_hooks",
    "metric_fn",
    "head_outputs",
    "source_outputs",
    "source_value",
]
