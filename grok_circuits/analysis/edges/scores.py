"""Edge scores and the edge circuits selected from them.

**Scores.** A score is the estimated *drop* of the mean metric (by default the clean-minus-corrupt
answer logit difference) when the edge carries the corrupt prompt's value instead of the clean
one. :attr:`EdgeScores.normalized` divides it by the whole effect of the swap (mean clean minus
mean corrupt metric), so 1 is the entire effect (the convention of
:func:`~grok_circuits.find_circuit`'s ``metric="logit_difference"``). Edges are ranked by the
absolute score, as in EAP. Scores are kept per position, ``[source, destination, pos]`` (the
paper's circuits are drawn at (layer, position), and so is :meth:`EdgeCircuit.plot`);
``positions=False`` everywhere sums them into one score per (source, destination), the usual EAP
graph.

**Circuits.** :meth:`EdgeScores.circuit` keeps the edges of largest absolute score and
:meth:`EdgeCircuit.pruned` removes the dangling ones: edges that no path from the embeddings
reaches, or that lead to no path to the logits.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis.components import Component
from grok_circuits.analysis.edges.graph import Edge, EdgeGraph

#: The share of the edges an edge circuit keeps when no ``top_k`` or ``threshold`` is given,
#: fixed before looking at any result.
DEFAULT_SHARE = 0.05


@dataclass(frozen=True, eq=False)
class EdgeScores:
    """Every edge's attribution score (see the module docstring).

    Attributes:
        graph: the model's :class:`EdgeGraph`.
        raw: ``[source, destination, pos]`` the estimated drop of the mean metric when the edge
            (at that position) carries the corrupt value; 0 where no edge exists.
        clean_metric, corrupt_metric: the mean metric on the clean and the corrupt prompts.
        method: the edge method's name (``"eap"``, ``"eap-ig"``, ...); options: its options
            (e.g. ``{"ig_steps": 5}`` for ``"eap-ig"``).
        n_examples: the pairs scored.
        pos_labels: the name of each position.
        model_digest: :func:`~grok_circuits.analysis._inputs.weights_digest` of the model scored,
            so that :func:`~grok_circuits.faithfulness` can refuse another model (None: not
            recorded, and not checked).
    """

    graph: EdgeGraph
    raw: Float[Tensor, "source destination pos"]
    clean_metric: float
    corrupt_metric: float
    method: str
    options: Mapping[str, Any]
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
        elif threshold is not None:
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
        """The headline numbers: the clean and corrupt mean metric, the largest absolute
        normalised score and their sum (the columns :meth:`OverCheckpoints.to_frame` shows)."""
        a = self.normalized.abs()[self.valid()]
        return {
            "clean metric": self.clean_metric,
            "corrupt metric": self.corrupt_metric,
            "top edge": float(a.max()) if a.numel() else math.nan,
            "sum |score|": float(a.sum()),
        }

    def plot(self, ax=None, *, title: str | None = None, top_k: int | None = None, **options):
        """The ``top_k`` edge circuit (default: the top :data:`DEFAULT_SHARE` of the edges),
        pruned, at (layer, position); see :meth:`EdgeCircuit.plot`.

        Returns:
            The matplotlib Figure.
        """
        return self.circuit(top_k=top_k).plot(ax, title=title, **options)

    def __str__(self) -> str:
        how = ", ".join([self.method, *(f"{k}={v}" for k, v in self.options.items())])
        head = (
            f"EdgeScores({how}, {self.n_examples} pairs, "
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
        found = {g.source_component(int(s)) for s in src}
        found |= {g.destination_component(int(d)) for d in dst}
        comps = {c for c in found if c is not None}  # the embeddings and logits are no component
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

    def summary(self) -> dict[str, float | int | bool]:
        """The headline numbers: edges in the circuit and in the graph (the same unit: per
        position or summed), components it touches, and the sum of its edges' normalised
        scores (the share of the swap's effect they carry to first order)."""
        norm = self.scores.scores(self.positions)
        return {
            "edges": len(self),
            "graph edges": int(self.scores.valid(self.positions).sum()),
            "components": len(self.components),
            "positions": self.positions,
            "sum of scores": float(norm[self.mask & self.scores.valid(self.positions)].sum()),
        }

    def plot(self, ax=None, *, title: str | None = None, **options):
        """The circuit drawn at (layer, position): a node per head and MLP output per position,
        an edge per circuit edge, its width the absolute score and its colour the sign.
        ``options``: ``step`` (named in the title); see
        :func:`grok_circuits.viz.plot_edge_circuit`.

        Returns:
            The matplotlib Figure.
        """
        from grok_circuits.viz.edges import plot_edge_circuit

        return plot_edge_circuit(self, ax, title=title, **options)

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


__all__ = ["DEFAULT_SHARE", "EdgeCircuit", "EdgeScores"]
