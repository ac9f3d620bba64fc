"""How edge scores change between two stages of one model's training (the edge-level version
of the paper's "change during grokking")."""

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis.edges.graph import Edge
from grok_circuits.analysis.edges.scores import EdgeScores


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

    def summary(self) -> dict[str, float | int]:
        """The headline numbers: edges compared, and the mean and largest absolute change of
        their normalised scores."""
        change = self.change.abs()
        return {
            "edges": len(self.edges),
            "mean |change|": float(change.mean()) if len(change) else math.nan,
            "max |change|": float(change.max()) if len(change) else math.nan,
        }

    def plot(self, ax=None, *, title: str | None = None, **options):
        """Each edge's score at the two stages, side by side. See
        :func:`grok_circuits.viz.plot_edge_change`.

        Returns:
            The matplotlib Figure.
        """
        from grok_circuits.viz.edges import plot_edge_change

        return plot_edge_change(self, ax, title=title, **options)

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
        names=(names[0], names[1]),
        edges=tuple(after.edge(i, positions) for i in order),
        before=a[idx].float(),
        after=b[idx].float(),
        pos_labels=after.pos_labels,
    )


__all__ = ["EdgeChange", "compare_edges"]
