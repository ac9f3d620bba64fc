"""Circuit reuse at the level of edges: :func:`edge_reuse`.

The component-level test (:func:`~grok_circuits.analysis.circuits.reuse.circuit_reuse`) cannot
tell reuse from damage in a small model: when a circuit holds 8 of 20 components, ablating *any*
8 components destroys both tasks. Edges are finer: a model of a few layers has hundreds of them,
a task's circuit is a small share, and knocking out a random edge set of its size often leaves a
task intact, so a circuit that hurts the other task more than random edge sets do says
something.

1. **Circuits**: each task's pairs are scored by :func:`~grok_circuits.edge_attribution`
   (all of a task's swaps pooled into one set of pairs); its circuit is its ``top_k`` edges by
   absolute score, *summed over positions*: two tasks with different prompt layouts share no
   positions, but they share the graph's (source, destination) edges.
2. **Overlap**: the IoU of the two edge sets against ``n_random`` pairs of random edge sets of
   the same sizes.
3. **Cross knock-out**: for each circuit and each task, the share of the task's metric (clean
   minus corrupt answer logit difference) that is *kept* when only that circuit's edges are
   ablated, ``(m(full minus C) - m(empty)) / (m(full) - m(empty))`` (one minus the completeness
   drop of
   :mod:`grok_circuits.analysis.edges.faithfulness`), against ``n_random_ablations`` random edge
   sets of the same size. Each task's own circuit's faithfulness is reported beside it.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis._inputs import Data, swap_pairs
from grok_circuits.analysis.edges.attribution import edge_attribution, metric_fn
from grok_circuits.analysis.edges.faithfulness import (
    EdgeAblation,
    ablated_sources,
    metrics_with_edges,
)
from grok_circuits.analysis.edges.graph import EdgeGraph, edge_hooks
from grok_circuits.analysis.edges.scores import DEFAULT_SHARE, EdgeCircuit, EdgeScores
from grok_circuits.analysis.metrics import no_effect_error
from grok_circuits.analysis.stats import iou, share_as_extreme
from grok_circuits.backend import Model
from grok_circuits.tasks import PromptPairs, TaskData
from grok_circuits.tasks.registry import Facts


@dataclass(frozen=True, eq=False)
class EdgeReuseReport:
    """What :func:`edge_reuse` measured.

    Attributes:
        tasks: the two data sets' names.
        scores: each one's :class:`~grok_circuits.analysis.edges.scores.EdgeScores`.
        circuits: each one's edge circuit (``top_k`` edges summed over positions, unpruned).
        iou: the two circuits' IoU; random_iou: ``[n_random]`` that of random edge sets of the
            same sizes.
        kept: ``kept[ablated][task]``, the share of ``task``'s metric kept when the circuit of
            ``ablated`` is knocked out; random_kept: ``[n_random_ablations]`` the same for
            random edge sets of that circuit's size.
        faithfulness: each task's own circuit's faithfulness.
        ablation: how edges were ablated; n_pairs: pairs per task; seed: seeds the draws.
    """

    tasks: tuple[str, str]
    scores: Mapping[str, EdgeScores]
    circuits: Mapping[str, EdgeCircuit]
    iou: float
    random_iou: Float[Tensor, " n_random"]
    kept: Mapping[str, Mapping[str, float]]
    random_kept: Mapping[str, Mapping[str, Float[Tensor, " n_random_ablations"]]]
    faithfulness: Mapping[str, float]
    ablation: str
    n_pairs: Mapping[str, int]
    seed: int

    @property
    def p_iou(self) -> float:
        """Fraction of random pairs whose IoU is at least the circuits'."""
        return share_as_extreme(self.random_iou, self.iou)

    def p_knockout(self, ablated: str, task: str) -> float:
        """Fraction of random edge sets (sized like ``ablated``'s circuit) that left ``task``
        at most as much of its metric as the circuit did."""
        return share_as_extreme(
            self.random_kept[ablated][task], self.kept[ablated][task], at_least=False
        )

    def overlap_frame(self):
        import pandas as pd

        r = self.random_iou.numpy()
        return pd.DataFrame(
            {
                "observed": [self.iou],
                "random mean": [float(r.mean())],
                "random std": [float(r.std())],
                "P(random >= observed)": [self.p_iou],
            },
            index=["edge IoU"],
        )

    def to_frame(self):
        """The cross knock-out table: the share of each task's metric kept (columns) when each
        circuit or random edge sets of its size are knocked out (rows)."""
        import pandas as pd

        rows = {}
        for s in self.tasks:
            rows[f"{s} circuit"] = {
                "edges": len(self.circuits[s]),
                **{t: self.kept[s][t] for t in self.tasks},
            }
            rnd = self.random_kept[s]
            rows[f"random, size of {s} circuit"] = {
                "edges": len(self.circuits[s]),
                **{t: float(rnd[t].mean()) for t in self.tasks},
                **{f"{t} std": float(rnd[t].std(unbiased=False)) for t in self.tasks},
                **{f"{t} P(<= circuit)": self.p_knockout(s, t) for t in self.tasks},
            }
        columns = ["edges", *self.tasks, *(f"{t} std" for t in self.tasks)]
        columns += [f"{t} P(<= circuit)" for t in self.tasks]
        return pd.DataFrame(rows).T[columns]

    def summary(self) -> dict[str, float]:
        """The headline numbers: the circuits' IoU, the random pairs' mean and the share at
        least as large; each task's own circuit's faithfulness; the share of each task's metric
        kept when each circuit is knocked out, and the share of random sets that kept at most
        as much."""
        out = {
            "iou": self.iou,
            "random iou": float(self.random_iou.mean()),
            "P(random iou >= iou)": self.p_iou,
        }
        out |= {f"{t} faithfulness": self.faithfulness[t] for t in self.tasks}
        for s in self.tasks:
            for t in self.tasks:
                out[f"{t} kept without {s} circuit"] = self.kept[s][t]
                out[f"{t} P(random <= circuit) without {s} circuit"] = self.p_knockout(s, t)
        return out

    def plot(self, ax=None, *, title: str | None = None, **options):
        """The overlap against its random baseline and the cross knock-out bars (two panels:
        ``ax`` is refused). See :func:`grok_circuits.viz.plot_edge_reuse`.

        Returns:
            The matplotlib Figure.
        """
        from grok_circuits.viz.edges import plot_edge_reuse

        return plot_edge_reuse(self, ax, title=title, **options)

    def __str__(self) -> str:
        fmt = lambda x: f"{x:.3f}"  # noqa: E731
        lines = [
            f"EdgeReuseReport ({self.ablation} ablation, share of the logit difference kept, "
            f"{len(self.random_iou)} random pairs, seed {self.seed})"
        ]
        for t in self.tasks:
            c = self.circuits[t]
            lines.append(
                f"  {t}: {len(c)} of {c.graph.n_edges} edges, faithfulness "
                f"{self.faithfulness[t]:.3f}, components {', '.join(map(str, c.components))}"
            )
        lines.append(self.overlap_frame().to_string(float_format=fmt))
        lines.append(self.to_frame().to_string(float_format=fmt))
        return "\n".join(lines)

    __repr__ = __str__


def _pooled(model: Model, data, swaps: list[str] | None, **kw) -> PromptPairs:
    """One set of pairs from a task (every swap in ``swaps`` pooled, default all it registers)
    or from given pairs (``kw`` as in :func:`~grok_circuits.analysis._inputs.as_pairs`)."""
    if isinstance(data, TaskData):
        sets = swap_pairs(model, data, swaps=swaps, **kw)
    else:
        if kw["subtask"] is not None:
            raise ValueError(
                "subtask= chooses a part of a task; these are pairs already (build others with "
                "make_pairs)"
            )
        sets = swap_pairs(model, data, swaps=swaps)
    return sets[0] if len(sets) == 1 else PromptPairs.concat(sets)


def edge_reuse(
    model: Model,
    data: Sequence[Data | Sequence[PromptPairs]],
    tasks: tuple[str, str],
    *,
    top_k: int | None = None,
    method: str = "eap-ig",
    method_options: Mapping[str, Any] | None = None,
    ablation: EdgeAblation = "corrupt",
    n_random: int = 1000,
    n_random_ablations: int = 20,
    swap: str | None = None,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> EdgeReuseReport:
    """The edge-level reuse report of two data sets on one model (see the module docstring): the
    edge counterpart of :func:`~grok_circuits.analysis.circuits.reuse.circuit_reuse`.

    Args:
        data: the two data sets, each :class:`~grok_circuits.PromptPairs` (or a list of them,
            pooled) or a registered task, whose pairs are built with ``swap`` (default: every
            swap it registers, pooled), ``subtask``, ``split``, ``n_examples``, ``facts`` and
            ``seed``.
        tasks: their names.
        top_k: edges per circuit, summed over positions (default: :data:`DEFAULT_SHARE` of
            the graph's edges).
        method, method_options: the edge method and its options
            (:func:`~grok_circuits.edge_attribution`).
        ablation: how edges are ablated (:mod:`~grok_circuits.analysis.edges.faithfulness`).
        n_random: random pairs of edge sets for the overlap baseline.
        n_random_ablations: random edge sets knocked out per circuit.
        seed: seeds the pairs and every random draw.

    Returns:
        :class:`EdgeReuseReport`.
    """
    if len(data) != 2 or len(tasks) != 2:
        raise ValueError(
            f"edge_reuse compares two data sets; got {len(data)} data sets and {len(tasks)} names"
        )
    if n_random < 1 or n_random_ablations < 1:
        raise ValueError(
            f"n_random and n_random_ablations must be >= 1, got {n_random}, {n_random_ablations}"
        )
    graph = EdgeGraph.of(model)
    k = round(DEFAULT_SHARE * graph.n_edges) if top_k is None else int(top_k)
    if not 0 < k <= graph.n_edges:
        raise ValueError(f"top_k must lie in 1..{graph.n_edges} (the graph's edges), got {k}")
    swaps = None if swap is None else [swap]
    kw = dict(subtask=subtask, split=split, n_examples=n_examples, facts=facts, seed=seed)
    pairs, scores, circuits = {}, {}, {}
    for t, d in zip(tasks, data):
        pairs[t] = _pooled(model, d, swaps, **kw)
        scores[t] = edge_attribution(model, pairs[t], method=method, **(method_options or {}))
        circuits[t] = scores[t].circuit(top_k=k, positions=False, prune=False)
    valid = graph.valid.flatten()
    candidates = torch.nonzero(valid).flatten()
    rng = np.random.default_rng(seed)

    def random_set(size: int) -> Tensor:
        m = torch.zeros(valid.numel(), dtype=torch.bool)
        m[candidates[rng.choice(len(candidates), size, replace=False)]] = True
        return m

    a, b = (circuits[t].mask.flatten() for t in tasks)
    random_iou = torch.tensor(
        [iou(random_set(int(a.sum())), random_set(int(b.sum()))) for _ in range(n_random)],
        dtype=torch.float64,
    )
    fn = metric_fn("logit_difference")
    kept: dict[str, dict[str, float]] = {}
    random_kept: dict[str, dict[str, Tensor]] = {}
    faith: dict[str, float] = {}
    with edge_hooks(model):
        ablated = {t: ablated_sources(model, graph, pairs[t], ablation, seed=seed) for t in tasks}

        def shares(t: str, keeps: list[Tensor]) -> list[float]:
            """The share of ``t``'s metric each edge set keeps (the first two are the full
            and the empty graph, added here)."""
            keep = torch.stack([valid, torch.zeros_like(valid), *keeps])
            keep = keep.view(-1, *graph.valid.shape, 1).expand(-1, -1, -1, pairs[t].width)
            full, empty, *values = metrics_with_edges(
                model, graph, pairs[t], keep, ablated[t], fn
            ).tolist()
            if abs(full - empty) < 1e-9:
                raise no_effect_error(f"ablating every edge on {t}'s pairs", full)
            return [(v - empty) / (full - empty) for v in values]

        sets = {s: [random_set(len(circuits[s])) for _ in range(n_random_ablations)] for s in tasks}
        for t in tasks:
            own, *knocked = shares(
                t,
                [circuits[t].mask.flatten()] + [valid & ~circuits[s].mask.flatten() for s in tasks],
            )
            faith[t] = own
            for s, v in zip(tasks, knocked):
                kept.setdefault(s, {})[t] = v
                random_kept.setdefault(s, {})[t] = torch.tensor(
                    shares(t, [valid & ~r for r in sets[s]])
                )
    return EdgeReuseReport(
        tasks=tasks,
        scores=scores,
        circuits=circuits,
        iou=iou(a, b),
        random_iou=random_iou,
        kept=kept,
        random_kept=random_kept,
        faithfulness=faith,
        ablation=ablation,
        n_pairs={t: len(p) for t, p in pairs.items()},
        seed=seed,
    )


__all__ = ["EdgeReuseReport", "edge_reuse"]
