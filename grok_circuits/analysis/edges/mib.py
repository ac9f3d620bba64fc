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
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

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


def area_under(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoid area under ``y(x)`` (MIB's CPR on its grid; NaN with fewer than two points)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return math.nan
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def area_from_one(x: Sequence[float], y: Sequence[float]) -> float:
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


__all__ = [
    "MIB_FRACTIONS",
    "EdgeROC",
    "area_from_one",
    "area_under",
    "edge_auroc",
    "mib_sizes",
]
