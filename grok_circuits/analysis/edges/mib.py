"""MIB's circuit metrics: the edge-fraction grid, CPR and CMD, and the AUROC of a known circuit.

The circuit-localization track of MIB (Mueller, Geiger et al. 2025, "MIB: A Mechanistic
Interpretability Benchmark"; code: https://github.com/hannamw/MIB-circuit-track,
``MIB_circuit_track/evaluation.py``) scores a ranking of edges by the circuits it gives at a fixed
grid of sizes, as fractions of the graph's edges, :data:`MIB_FRACTIONS` (0.1% to 100%; the circuit
of fraction ``f`` holds ``int(f * n_edges)`` edges, rounded down, as MIB counts them).

With ``m`` the mean metric, ``M`` the full model and the empty circuit ``∅`` (every edge
ablated), the faithfulness of circuit ``C`` is ``f(C) = (m(C) - m(∅)) / (m(M) - m(∅))``, and

- **CPR** (higher is better) is the area under ``f`` over the fraction axis, trapezoids between
  the grid's points (``0.001`` to ``1``: the area of a curve that is 1 everywhere is 0.999);
- **CMD** (lower is better) is the area between ``f`` and 1, ``|1 - f|`` integrated the same way.

Both take the nominal fractions as the x axis, not the edge counts they round to, and are not
normalised further (:func:`area_under`, :func:`area_from_one`).
:func:`~grok_circuits.analysis.edges.faithfulness.faithfulness` measures ``f`` on this grid by
default and reports both.

**AUROC against a known circuit** (MIB's InterpBench evaluation, ``evaluate_area_under_roc``):
at each grid fraction the top ``ceil(f * n_edges)`` edges by absolute score are the predicted
circuit (the count of MIB's greedy selection); the true- and false-positive rates against the
known edges give one ROC point per fraction, and the AUROC is the trapezoid area over those
points in grid order, the false-positive axis divided by its last value (MIB's
``print_results.area_under_curve``). MIB selects edges greedily from the logits up, so that
every predicted circuit is connected; :func:`edge_auroc` takes the plain top-``k`` (the ranking
:func:`~grok_circuits.faithfulness` uses), and the two agree when the top edges already form a
connected circuit, as on a planted model.

**Interop: MIB's importances file.** MIB reads a method's edge scores as one JSON file per
task and model (README of MIB-circuit-track, "Submitting to the MIB Leaderboard"; the format is
``Graph.to_json`` / ``Graph.from_json`` of EAP-IG, https://github.com/hannamw/EAP-IG,
``src/eap/graph.py``)::

    {"cfg": {"n_layers": 2, "n_heads": 4, "parallel_attn_mlp": false, "d_model": 128},
     "nodes": {"input": {"in_graph": true}, "a0.h0": {"in_graph": true}, ..., "m1": ...,
               "logits": {"in_graph": true}},
     "edges": {"input->a0.h0<q>": {"score": 0.12, "in_graph": true}, ...,
               "a0.h3->m0": {...}, "m1->logits": {...}}}

An edge is named ``PARENT->CHILD``, with ``<q>``, ``<k>`` or ``<v>`` after a head child. The
names map one to one: ``"embed"`` is ``"input"``, head ``"L0H1"`` is ``"a0.h1"``, ``"MLP0"`` is
``"m0"``, destination ``"L1H0.k"`` is ``"a1.h0<k>"``, ``"logits"`` is ``"logits"``; the two
graphs have the same edges (every earlier source into every later destination, a layer's heads
into its own MLP). What one side has and the other lacks:

- **positions**: MIB's edges have none; :func:`write_mib_importances` writes the raw scores
  summed over positions, and :func:`read_mib_importances` puts each score at the last position
  (so that ranking summed over positions, ``positions=False``, gives MIB's ranking back);
- **attention-only models**: MIB's graph always has MLPs (``m0``, ...); the file of such a model
  holds no edge of theirs (EAP-IG's reader leaves them at score 0, outside the circuit), and a
  file with non-zero scores on them is refused for an attention-only model;
- **parallel attention and MLP**: MIB's graph drops a layer's heads -> its MLP there; this
  package does not score such models;
- **the input node**: MIB's ``input`` is read at ``hook_embed`` (the token embedding), this
  ``embed`` at ``blocks.0.hook_resid_pre`` (token and position): the same edges and the same
  scores under corrupt patching (the positions of a pair cancel), different values under
  zero or mean ablation.
"""

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from grok_circuits.analysis.edges.graph import EdgeGraph
from grok_circuits.analysis.edges.scores import EdgeCircuit, EdgeScores

#: MIB's circuit sizes, as fractions of the graph's edges: 0.1%, 0.2%, 0.5%, 1%, 2%, 5%, 10%,
#: 20%, 50% and 100%.
MIB_FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """``fractions`` sorted, each checked to lie in ``[0, 1]``."""
    out = tuple(sorted(float(f) for f in fractions))
    bad = [f for f in out if not 0.0 <= f <= 1.0]
    if bad or not out:
        raise ValueError(
            f"fractions must be shares of the graph's edges in [0, 1], got {list(fractions)}; "
            f"MIB's grid is {MIB_FRACTIONS}"
        )
    return out


def mib_sizes(n_edges: int, fractions: Sequence[float] = MIB_FRACTIONS) -> list[int]:
    """The circuit size of each fraction, ``int(f * n_edges)`` (rounded down, as MIB does)."""
    return [int(f * n_edges) for f in fractions]


def area_under(x: "Sequence[float] | np.ndarray", y: "Sequence[float] | np.ndarray") -> float:
    """Trapezoid area under ``y(x)`` (MIB's CPR on its grid; NaN with fewer than two points)."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) < 2:
        return math.nan
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


def area_from_one(x: "Sequence[float] | np.ndarray", y: "Sequence[float] | np.ndarray") -> float:
    """Trapezoid area between ``y(x)`` and 1, ``|1 - y|`` integrated (MIB's CMD on its grid)."""
    return area_under(x, np.abs(1.0 - np.asarray(y, dtype=float)))


# ----------------------------------------------------------------------------- AUROC
KnownCircuit = EdgeCircuit | Tensor | Iterable[tuple]


def _known_mask(scores: EdgeScores, known: KnownCircuit) -> tuple[Tensor, bool]:
    """The known circuit as a boolean mask over ``scores.valid(positions)``, and ``positions``."""
    g = scores.graph
    n_pos = scores.raw.shape[-1]
    if isinstance(known, EdgeCircuit):
        return known.mask.clone() & scores.valid(known.positions), known.positions
    if isinstance(known, Tensor):
        if known.dtype != torch.bool or known.dim() not in (2, 3):
            raise ValueError(
                "a known circuit given as a tensor is a boolean mask [source, destination] or "
                f"[source, destination, pos], got {known.dtype} of shape {tuple(known.shape)}"
            )
        positions = known.dim() == 3
        if tuple(known.shape) != tuple(scores.valid(positions).shape):
            raise ValueError(
                f"the known circuit's mask has shape {tuple(known.shape)}; these scores' "
                f"edges are {tuple(scores.valid(positions).shape)}"
            )
        return known & scores.valid(positions), positions
    edges = list(known)
    if not edges:
        raise ValueError("the known circuit holds no edges; pass at least one")
    has_pos = {len(e) == 3 and e[2] is not None for e in edges}
    if len(has_pos) != 1:
        raise ValueError("give every known edge a position, or none of them (summed edges)")
    positions = has_pos.pop()
    mask = torch.zeros_like(scores.valid(positions))
    for e in edges:
        try:
            s, d = g.sources.index(e[0]), g.destinations.index(e[1])
        except ValueError:
            raise ValueError(
                f"known edge {tuple(e)} is not in this model's graph; sources are named like "
                f"{g.sources[:3]}, destinations like {g.destinations[:3]}"
            ) from None
        if positions:
            if not 0 <= e[2] < n_pos:
                raise ValueError(f"known edge {tuple(e)}: position outside 0..{n_pos - 1}")
            mask[s, d, e[2]] = True
        else:
            mask[s, d] = True
    if (mask & ~scores.valid(positions)).any():
        raise ValueError("a known edge runs from a later source to an earlier destination")
    return mask, positions


@dataclass(frozen=True, eq=False)
class EdgeROC:
    """Edge scores against a known circuit, over the fraction grid (see the module docstring).

    Attributes:
        fractions: ``[grid]`` the shares of the graph's edges predicted.
        sizes: ``[grid]`` the edges predicted at each (``ceil(f * n_edges)``).
        tpr, fpr, precision: ``[grid]`` against the known circuit.
        n_edges: edges in the graph; n_known: edges in the known circuit.
        positions: whether edges are per position.
    """

    fractions: tuple[float, ...]
    sizes: tuple[int, ...]
    tpr: tuple[float, ...]
    fpr: tuple[float, ...]
    precision: tuple[float, ...]
    n_edges: int
    n_known: int
    positions: bool

    @property
    def auroc(self) -> float:
        """Trapezoid area under TPR over FPR in grid order, FPR divided by its last value."""
        top = self.fpr[-1]
        if top <= 0:
            return math.nan
        return area_under(np.asarray(self.fpr) / top, self.tpr)

    def summary(self) -> dict[str, float]:
        """The AUROC, the known circuit's size and the graph's."""
        return {"auroc": self.auroc, "known edges": self.n_known, "graph edges": self.n_edges}

    def to_frame(self):
        """One row per grid fraction: edges predicted, TPR, FPR and precision."""
        import pandas as pd

        return pd.DataFrame(
            {
                "fraction": self.fractions,
                "edges": self.sizes,
                "tpr": self.tpr,
                "fpr": self.fpr,
                "precision": self.precision,
            }
        )

    def plot(self, ax=None, *, title: str | None = None, **options):
        """The ROC points over the grid. See :func:`grok_circuits.viz.edges.plot_edge_roc`.

        Returns:
            The matplotlib Figure.
        """
        from grok_circuits.viz.edges import plot_edge_roc

        return plot_edge_roc(self, ax, title=title, **options)

    def __str__(self) -> str:
        unit = "position-resolved edges" if self.positions else "edges"
        head = f"EdgeROC(AUROC {self.auroc:.3f}; {self.n_known} known of {self.n_edges} {unit})"
        return head + "\n" + self.to_frame().to_string(float_format=lambda x: f"{x:.3f}")

    __repr__ = __str__


def edge_auroc(
    scores: EdgeScores,
    known: KnownCircuit,
    *,
    fractions: Sequence[float] = MIB_FRACTIONS,
) -> EdgeROC:
    """How well the edge ranking finds a known circuit: TPR and FPR of the top edges at each
    fraction of the graph, and the AUROC over them (MIB's InterpBench score; see the module
    docstring).

    Args:
        scores: from :func:`~grok_circuits.edge_attribution`.
        known: the true circuit: an :class:`EdgeCircuit`, a boolean mask ``[source,
            destination]`` (edges summed over positions) or ``[source, destination, pos]``, or
            edges ``(source, destination)`` / ``(source, destination, pos)`` by name (as
            :meth:`EdgeScores.top` names them). Whether it has positions decides whether the
            scores are ranked per position or summed over them.
        fractions: the grid (default :data:`MIB_FRACTIONS`).

    Returns:
        :class:`EdgeROC`.
    """
    fractions = check_fractions(fractions)
    mask, positions = _known_mask(scores, known)
    valid = scores.valid(positions).flatten()
    truth = mask.flatten()
    n_edges, n_known = int(valid.sum()), int(truth.sum())
    if n_known == 0 or n_known == n_edges:
        raise ValueError(
            f"the known circuit holds {n_known} of the graph's {n_edges} edges; an ROC needs "
            "edges both in and out of it"
        )
    ranking = scores.ranking(positions)
    in_known = truth[ranking]
    sizes, tpr, fpr, prec = [], [], [], []
    for f in fractions:
        k = min(n_edges, math.ceil(f * n_edges))
        tp = int(in_known[:k].sum())
        fp = k - tp
        sizes.append(k)
        tpr.append(tp / n_known)
        fpr.append(fp / (n_edges - n_known))
        prec.append(tp / k if k else 0.0)
    return EdgeROC(
        fractions=fractions,
        sizes=tuple(sizes),
        tpr=tuple(tpr),
        fpr=tuple(fpr),
        precision=tuple(prec),
        n_edges=n_edges,
        n_known=n_known,
        positions=positions,
    )


# ----------------------------------------------------------------------------- interop
def mib_node_name(name: str) -> str:
    """A source or destination of :class:`EdgeGraph` as MIB names it (``"L0H1.q"`` ->
    ``"a0.h1<q>"``; see the module docstring)."""
    if name in ("logits",):
        return name
    if name == "embed":
        return "input"
    if name.startswith("MLP"):
        return f"m{int(name[3:])}"
    head, _, letter = name.partition(".")
    layer, h = head[1:].split("H")
    return f"a{int(layer)}.h{int(h)}" + (f"<{letter}>" if letter else "")


def mib_edge_name(source: str, destination: str) -> str:
    """An edge as MIB names it: ``"L0H1" -> "MLP0"`` is ``"a0.h1->m0"``."""
    return f"{mib_node_name(source)}->{mib_node_name(destination)}"


def write_mib_importances(
    scores_or_circuit: EdgeScores | EdgeCircuit, path, *, d_model: int | None = None
) -> None:
    """Write edge scores as MIB's importances file (the JSON of EAP-IG's ``Graph.to_json``; see
    the module docstring), so that MIB's own evaluation can score them.

    Args:
        scores_or_circuit: :class:`EdgeScores` (every edge marked in the graph) or an
            :class:`EdgeCircuit` (its edges, at any position, marked in the graph; the scores
            are its scores'). The score written is the raw score summed over positions (the
            estimated drop of the mean metric).
        path: the ``.json`` file to write.
        d_model: the model's width, which MIB's config holds (it matters to MIB only at the
            neuron level; default 0).
    """
    if isinstance(scores_or_circuit, EdgeCircuit):
        scores = scores_or_circuit.scores
        member = scores_or_circuit.full_mask().any(-1)
    elif isinstance(scores_or_circuit, EdgeScores):
        scores = scores_or_circuit
        member = scores.graph.valid
    else:
        raise ValueError(
            f"write_mib_importances takes EdgeScores or an EdgeCircuit, got "
            f"{type(scores_or_circuit).__name__}"
        )
    g = scores.graph
    summed = scores.raw.sum(-1)
    edges = {}
    for s, d in torch.nonzero(g.valid).tolist():
        edges[mib_edge_name(g.sources[s], g.destinations[d])] = {
            "score": float(summed[s, d]),
            "in_graph": bool(member[s, d]),
        }
    used = member.any(1)  # a source is in the graph when an edge leaves it
    nodes = {mib_node_name(n): {"in_graph": bool(used[i])} for i, n in enumerate(g.sources)}
    nodes["logits"] = {"in_graph": True}
    cfg = {
        "n_layers": g.n_layers,
        "n_heads": g.n_heads,
        "parallel_attn_mlp": False,
        "d_model": int(d_model or 0),
    }
    with open(path, "w") as f:
        json.dump({"cfg": cfg, "nodes": nodes, "edges": edges}, f)


def read_mib_importances(
    path,
    *,
    graph: EdgeGraph | None = None,
    pos_labels: Sequence[str] = ("all",),
) -> EdgeScores:
    """Read MIB's importances file (see the module docstring) as :class:`EdgeScores`.

    Args:
        path: the ``.json`` file (MIB's ``.pt`` format is not read).
        graph: the graph to read into (default: the file's, with MLPs); pass
            ``EdgeGraph.of(model)`` to score the model with :func:`~grok_circuits.faithfulness`.
        pos_labels: the positions of the pairs the scores will be used with; each edge's score
            sits at the last of them (use ``positions=False`` to rank or select).

    Returns:
        :class:`EdgeScores` with ``method="mib-file"``; the file holds no metric, so the
        clean and corrupt metrics, and :attr:`EdgeScores.normalized`, are NaN.
    """
    with open(path) as f:
        d = json.load(f)
    missing = [k for k in ("cfg", "edges") if k not in d]
    if missing:
        raise ValueError(f"{path} is not an MIB importances file: it has no {missing} key")
    cfg = d["cfg"]
    if cfg.get("parallel_attn_mlp"):
        raise ValueError(
            f"{path} is a graph with parallel attention and MLP, which edge attribution here "
            "does not model"
        )
    if graph is None:
        graph = EdgeGraph(int(cfg["n_layers"]), int(cfg["n_heads"]), True)
    elif (graph.n_layers, graph.n_heads) != (int(cfg["n_layers"]), int(cfg["n_heads"])):
        raise ValueError(
            f"{path} holds a graph of {cfg['n_layers']} layers x {cfg['n_heads']} heads; the "
            f"graph given has {graph.n_layers} x {graph.n_heads}"
        )
    index = {
        mib_edge_name(graph.sources[s], graph.destinations[t]): (s, t)
        for s, t in torch.nonzero(graph.valid).tolist()
    }
    n_pos = len(pos_labels)
    raw = torch.zeros(graph.n_sources, graph.n_destinations, n_pos)
    foreign = []
    for name, info in d["edges"].items():
        if name in index:
            s, t = index[name]
            raw[s, t, -1] = float(info["score"])
        elif float(info.get("score", 0.0)) != 0.0:
            foreign.append(name)
    if foreign:
        raise ValueError(
            f"{path} scores {len(foreign)} edges this graph lacks, e.g. {foreign[:3]} (an "
            "attention-only model has no MLP nodes m0, ...); read it into the graph it was made "
            "for"
        )
    return EdgeScores(
        graph=graph,
        raw=raw,
        clean_metric=math.nan,
        corrupt_metric=math.nan,
        method="mib-file",
        options={"path": str(path)},
        n_examples=0,
        pos_labels=tuple(pos_labels),
    )


__all__ = [
    "MIB_FRACTIONS",
    "EdgeROC",
    "area_from_one",
    "area_under",
    "edge_auroc",
    "mib_edge_name",
    "mib_node_name",
    "mib_sizes",
    "read_mib_importances",
    "write_mib_importances",
]
