"""Faithfulness and completeness of edge circuits, against random circuits of the same size.

A circuit is *faithful* when the model restricted to it still does the task, and *complete* when
knocking it out removes the task (Wang et al. 2022, "Interpretability in the Wild"; Marks et al.
2024). For an edge circuit both are edge ablations (Hanna et al. 2024; MIB, Mueller et al. 2025):
an ablated edge ``u -> v`` delivers to ``v`` the source's *ablated* output instead of the one it
computes in this run, while every other edge into ``v`` keeps delivering the current value. With
``m`` the mean metric (clean-minus-corrupt answer logit difference),

- **faithfulness** of circuit ``C``: ``(m(C) - m(empty)) / (m(full) - m(empty))``, where
  ``m(C)`` keeps only ``C``'s edges (all others ablated); 1 for the full graph, 0 for the
  empty one by construction;
- **completeness drop**: ``(m(full) - m(full minus C)) / (m(full) - m(empty))``, ablating only
  ``C``'s edges; near 1 when nothing outside ``C`` can do the task.

Both are measured for the top-``k`` edges of :func:`~grok_circuits.edge_attribution` at each
circuit size ``k``, and for ``n_random`` random edge sets of each size (uniform over the graph's
edges) as the baseline that "circuit metrics are not robust" (Miller et al. 2024) asks for: a
circuit is only as good as its margin over random circuits of its size. The sizes are by default
MIB's grid (Mueller et al. 2025): 0.1%, 0.2%, 0.5%, 1%, 2%, 5%, 10%, 20%, 50% and 100% of the
graph's edges, ``int(f * n_edges)`` edges each (:mod:`grok_circuits.analysis.edges.mib`). The
result sums a curve up as **CPR** (the area under the faithfulness curve over the fraction axis)
and **CMD** (the area between it and 1), as MIB computes them, for the circuit and for each
random draw; :attr:`Faithfulness.auc` gives the areas of both curves (the faithfulness one is
CPR) and the share of random draws at least as good. Sizes given in edges (``sizes=``) are
placed at ``k / n_edges`` on the same axis (the grid used before MIB's was
:func:`default_sizes`, still available as ``sizes=default_sizes(n_edges)``).

An ablated source takes one of these values (``ablation=``; MIB's names):

- ``"corrupt"`` (default): its output on the corrupt prompt of the pair, the intervention
  that EAP's scores estimate (counterfactual ablation; MIB's "patching");
- ``"zero"``: zero;
- ``"mean"``: its mean output over the pairs' clean prompts and their positions up to the
  answer, one vector per source;
- ``"mean-positional"``: its mean output over the pairs' clean prompts of the same format, per
  position;
- ``"resample"``: its output on another clean prompt of the same format, drawn with ``seed``.

Under every ablation ``f`` is 0 for the empty circuit and 1 for the full one, by the
normalisation; only under ``"corrupt"`` is the empty circuit the corrupt run itself (every
destination reads the corrupt residual stream), so that ``f`` is also the recovered share of
the clean-minus-corrupt gap. MIB's "optimal" ablation (a learned constant per source) is not
offered. MIB prunes each top-``k`` circuit before evaluating it; this does not (under
``"corrupt"`` pruning does not change the metric: a dangling edge carries the corrupt value or
reaches no logit).

The edge ablation is done with hooks: each source's output is recorded as it is computed, and at
each destination the differences ``current - ablated`` of the sources whose edges are ablated are
subtracted from the destination's input, so one forward pass evaluates one circuit exactly.
"""

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis._inputs import Data, as_pairs, weights_digest
from grok_circuits.analysis.edges.attribution import EdgeMetric, metric_fn
from grok_circuits.analysis.edges.graph import EdgeGraph, edge_hooks, source_outputs, source_value
from grok_circuits.analysis.edges.mib import (
    MIB_FRACTIONS,
    area_from_one,
    area_under,
    check_fractions,
    mib_sizes,
)
from grok_circuits.analysis.edges.scores import EdgeCircuit, EdgeScores
from grok_circuits.analysis.metrics import no_effect_error
from grok_circuits.analysis.patching.ablation import resample_draw
from grok_circuits.analysis.stats import share_as_extreme
from grok_circuits.backend import Model, split_qkv_hooks
from grok_circuits.model import logits_at
from grok_circuits.tasks import PromptPairs
from grok_circuits.tasks.registry import Facts

EdgeAblation = Literal["corrupt", "zero", "mean", "mean-positional", "resample"]
#: How the edges outside a circuit are removed (``ablation=`` of :func:`faithfulness`).
EDGE_ABLATIONS: tuple[str, ...] = ("corrupt", "zero", "mean", "mean-positional", "resample")


# ----------------------------------------------------------------------------- edge ablation
@torch.no_grad()
def ablated_sources(
    model: Model,
    graph: EdgeGraph,
    pairs: PromptPairs,
    ablation: EdgeAblation = "corrupt",
    *,
    seed: int = 0,
    batch_size: int = 256,
) -> Float[Tensor, "batch pos source d_model"]:
    """Every source's ablated output for each pair (settings already switched on)."""
    if ablation not in EDGE_ABLATIONS:
        raise ValueError(f"ablation={ablation!r}; choose one of {EDGE_ABLATIONS}")
    device = model.cfg.device

    def outputs(tokens: Tensor) -> Tensor:
        return torch.cat(
            [
                source_outputs(model, graph, tokens[i : i + batch_size].to(device))
                for i in range(0, len(tokens), batch_size)
            ]
        )

    if ablation == "corrupt":
        return outputs(pairs.corrupt)
    clean = pairs.clean_split()
    if ablation == "resample":
        return outputs(clean.tokens[resample_draw(clean, clean, seed)])
    acts = outputs(pairs.clean)
    if ablation == "zero":
        return torch.zeros_like(acts)
    if ablation == "mean":  # one vector per source: over prompts and positions up to the answer
        pos = torch.arange(pairs.width, device=acts.device)
        w = (pos[None, :] <= pairs.answer_pos.to(acts.device)[:, None]).to(acts.dtype)
        mean = torch.einsum("bp,bpsm->sm", w, acts) / w.sum()
        return mean.expand_as(acts).clone()
    out = torch.empty_like(acts)
    for pos in torch.unique(pairs.answer_pos).tolist():  # one mean per prompt format
        rows = torch.nonzero(pairs.answer_pos == pos).flatten().to(acts.device)
        out[rows] = acts[rows].mean(0, keepdim=True)
    return out


class _EdgePatcher:
    """The hooks of one forward pass that ablates edges, for ``k`` edge sets at once: the batch
    is ``k`` copies of ``n`` examples (edge set major).

    Source hooks record ``delta = current - ablated`` output of each source, laid out
    ``[k, pos, source, n, d_model]`` so that a destination's correction is one batched matrix
    product over the sources it can read: ``drop [k, pos, dst, source] @ delta``. The q, k and v
    inputs of a layer read the same sources, so their corrections are computed together, once
    per layer, when the layer's q input is reached.
    """

    def __init__(self, model, graph: EdgeGraph, drop: Tensor, ablated: Tensor):
        # drop: [k, source, destination, pos]; ablated: [n, pos, source, d_model]
        self.model, self.graph = model, graph
        self.k = drop.shape[0]
        self.n, n_pos, n_src, d_model = ablated.shape
        self.drop = drop.permute(0, 3, 2, 1)  # [k, pos, destination, source]
        self.ablated = ablated.permute(1, 2, 0, 3)  # [pos, source, n, d_model]
        self.delta = ablated.new_zeros(self.k, n_pos, n_src, self.n, d_model)
        self.qkv: Tensor | None = None

    def hooks(self) -> list:
        g = self.graph
        out = [
            (name, functools.partial(self.record, sl=sl, name=name))
            for name, sl in zip(g.source_hooks(), g.source_slices())
        ]
        for layer in range(g.n_layers):
            for which, x in enumerate("qkv"):
                out.append(
                    (
                        f"blocks.{layer}.hook_{x}_input",
                        functools.partial(self.attn, layer=layer, which=which),
                    )
                )
            if g.has_mlp:
                d = g.mlp_destination(layer)
                out.append(
                    (
                        f"blocks.{layer}.hook_mlp_in",
                        functools.partial(self.single, d=d, upto=g.mlp_source(layer)),
                    )
                )
        out.append(
            (
                f"blocks.{g.n_layers - 1}.hook_resid_post",
                functools.partial(self.single, d=g.logits_destination, upto=g.n_sources),
            )
        )
        return out

    def record(self, act: Tensor, hook, *, sl: slice, name: str) -> Tensor:
        v = source_value(self.model, name, act)  # [k n, pos, node, d_model]
        v = v.view(self.k, self.n, *v.shape[1:]).permute(0, 2, 3, 1, 4)
        self.delta[:, :, sl] = v - self.ablated[None, :, sl]
        return act

    def _correction(self, dsts: slice, upto: int) -> Tensor:
        """``[k, pos, len(dsts), n, d_model]``: what the ablated edges into ``dsts`` from the
        sources before ``upto`` would not have delivered."""
        k, n_pos, _, n, d_model = self.delta.shape
        delta = self.delta[:, :, :upto].reshape(k, n_pos, upto, n * d_model)
        out = torch.matmul(self.drop[:, :, dsts, :upto], delta)
        return out.view(k, n_pos, -1, n, d_model)

    def attn(self, act: Tensor, hook, *, layer: int, which: int) -> Tensor:
        g = self.graph
        if which == 0:  # the layer's q input comes first: correct q, k and v together
            first = g.qkv_destination(layer, 0)
            dsts = slice(first, first + 3 * g.n_heads)
            self.qkv = self._correction(dsts, g.head_source(layer, 0))
        if self.qkv is None:
            raise RuntimeError("the k and v inputs of a layer are patched after its q input")
        c = self.qkv[:, :, which * g.n_heads : (which + 1) * g.n_heads]  # [k, pos, head, n, dm]
        return act - c.permute(0, 3, 1, 2, 4).reshape(act.shape)

    def single(self, act: Tensor, hook, *, d: int, upto: int) -> Tensor:
        c = self._correction(slice(d, d + 1), upto)[:, :, 0]  # [k, pos, n, d_model]
        return act - c.permute(0, 2, 1, 3).reshape(act.shape)


@torch.no_grad()
def metrics_with_edges(
    model: Model,
    graph: EdgeGraph,
    pairs: PromptPairs,
    keep: Tensor,
    ablated: Tensor,
    metric,
    *,
    batch_size: int = 256,
    max_rows: int = 2048,
) -> Float[Tensor, " mask"]:
    """The mean metric on ``pairs`` for each of several edge sets ``keep``
    (``[mask, source, destination, pos]``): only the kept edges deliver their current value, every
    other edge its ``ablated`` source output (settings already switched on by
    :func:`edge_hooks`). Several edge sets run in one forward pass (the examples repeated once
    per set, at most ``max_rows`` rows), which is what makes many random circuits cheap."""
    device = model.cfg.device
    drop_all = (~keep & graph.valid[None, :, :, None]).to(ablated.dtype).to(device)
    n_masks = drop_all.shape[0]
    totals = torch.zeros(n_masks, dtype=torch.float64)
    for i in range(0, len(pairs), batch_size):
        b = pairs[i : i + batch_size]
        n = len(b)
        per = max(1, max_rows // n)
        abl = ablated[i : i + batch_size].to(device)
        for k0 in range(0, n_masks, per):
            patcher = _EdgePatcher(model, graph, drop_all[k0 : k0 + per], abl)
            k = patcher.k
            with model.hooks(fwd_hooks=split_qkv_hooks(model, patcher.hooks())):
                logits = model(b.clean.to(device).repeat(k, 1), return_type="logits")
            answer = logits_at(logits, b.answer_pos.repeat(k)).view(k, n, -1)
            for j in range(k):
                totals[k0 + j] += float(metric(answer[j], b).sum())
    return (totals / len(pairs)).float()


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class Faithfulness:
    """Faithfulness and completeness curves of an edge circuit against random circuits.

    Attributes:
        sizes: ``[size]`` edges kept (position-resolved edges, or edges summed over positions).
        n_edges: edges in the whole graph (the same unit).
        faithfulness, completeness: ``[size]`` the circuit's recovered fraction and the drop
            when only it is knocked out (see the module docstring).
        random_faithfulness, random_completeness: ``[size, n_random]`` the same for random
            edge sets of each size.
        full_metric, empty_metric: the mean metric of the full graph and of the empty one.
        ablation: how edges were ablated; seed: seeds the random circuits (and resampling).
        grid: the fraction of the graph's edges each size was made from (MIB's grid by
            default), or None when the sizes were given in edges.
    """

    sizes: Tensor
    n_edges: int
    faithfulness: Float[Tensor, " size"]
    completeness: Float[Tensor, " size"]
    random_faithfulness: Float[Tensor, "size n_random"]
    random_completeness: Float[Tensor, "size n_random"]
    full_metric: float
    empty_metric: float
    ablation: str
    positions: bool
    seed: int
    grid: tuple[float, ...] | None = None

    @property
    def fractions(self) -> np.ndarray:
        """``[size]`` the x axis of every curve and area: the grid's fractions, or ``sizes /
        n_edges`` when the sizes were given in edges."""
        if self.grid is not None:
            return np.asarray(self.grid, dtype=float)
        return self.sizes.double().numpy() / self.n_edges

    def _areas(self, area, curve: Tensor, draws: Tensor) -> tuple[float, np.ndarray]:
        x = self.fractions
        mine = area(x, curve.double().numpy())
        rnd = [area(x, draws[:, j].double().numpy()) for j in range(draws.shape[1])]
        return mine, np.array(rnd)

    @property
    def cpr(self) -> float:
        """MIB's CPR: the area under the faithfulness curve over :attr:`fractions` (higher is
        better; 0.999 for a curve at 1 over MIB's grid)."""
        return self._areas(area_under, self.faithfulness, self.random_faithfulness)[0]

    @property
    def cmd(self) -> float:
        """MIB's CMD: the area between the faithfulness curve and 1 (lower is better)."""
        return self._areas(area_from_one, self.faithfulness, self.random_faithfulness)[0]

    @property
    def random_cpr(self) -> np.ndarray:
        """``[n_random]`` CPR of each random draw (one random edge set per size)."""
        return self._areas(area_under, self.faithfulness, self.random_faithfulness)[1]

    @property
    def random_cmd(self) -> np.ndarray:
        """``[n_random]`` CMD of each random draw."""
        return self._areas(area_from_one, self.faithfulness, self.random_faithfulness)[1]

    @property
    def auc(self) -> dict[str, float]:
        """Area under each curve over the fraction of edges kept: the circuit's, the random
        circuits' mean and std, and the share of random draws whose area is at least the
        circuit's (faithfulness) or whose drop area is at least the circuit's (completeness)."""
        out = {}
        for name, c, r in (
            ("faithfulness", self.faithfulness, self.random_faithfulness),
            ("completeness", self.completeness, self.random_completeness),
        ):
            mine, rnd = self._areas(area_under, c, r)
            out[name] = mine
            out[f"random {name}"] = float(rnd.mean()) if len(rnd) else math.nan
            out[f"random {name} std"] = float(rnd.std()) if len(rnd) else math.nan
            out[f"P(random >= {name})"] = share_as_extreme(torch.from_numpy(rnd), mine)
        return out

    def to_frame(self):
        """One row per size: the fraction of edges, the circuit's faithfulness and completeness
        drop, and the random circuits' mean and std of each."""
        import pandas as pd

        rf, rc = self.random_faithfulness, self.random_completeness
        return pd.DataFrame(
            {
                "fraction": self.fractions,
                "faithfulness": self.faithfulness.tolist(),
                "random faithfulness": rf.mean(1).tolist(),
                "random faithfulness std": rf.std(1, unbiased=False).tolist(),
                "completeness": self.completeness.tolist(),
                "random completeness": rc.mean(1).tolist(),
                "random completeness std": rc.std(1, unbiased=False).tolist(),
            },
            index=pd.Index(self.sizes.tolist(), name="edges"),
        )

    def summary(self) -> dict[str, float]:
        """The headline numbers: the full and the empty graph's mean metric, :attr:`auc` (the
        areas of the circuit's and the random circuits' curves), and MIB's CPR and CMD of the
        circuit and of the random draws (mean and std)."""
        rcpr, rcmd = self.random_cpr, self.random_cmd
        return {
            "full metric": self.full_metric,
            "empty metric": self.empty_metric,
            **self.auc,
            "cpr": self.cpr,
            "cmd": self.cmd,
            "random cpr": float(rcpr.mean()),
            "random cpr std": float(rcpr.std()),
            "random cmd": float(rcmd.mean()),
            "random cmd std": float(rcmd.std()),
        }

    def plot(self, ax=None, *, title: str | None = None, **options):
        """Both curves over the circuit size, the random circuits' band beside them (two
        panels; one, which ``ax`` may hold, without completeness). See
        :func:`grok_circuits.viz.plot_faithfulness`.

        Returns:
            The matplotlib Figure.
        """
        from grok_circuits.viz.edges import plot_faithfulness

        return plot_faithfulness(self, ax, title=title, **options)

    def __str__(self) -> str:
        unit = "position-resolved edges" if self.positions else "edges"
        a = self.auc
        head = (
            f"Faithfulness({self.ablation} ablation, {self.n_edges} {unit}, "
            f"{self.random_faithfulness.shape[1]} random circuits per size, seed {self.seed}; "
            f"metric full {self.full_metric:.3f}, empty {self.empty_metric:.3f})\n"
            f"  AUC faithfulness {a['faithfulness']:.3f} vs random {a['random faithfulness']:.3f}"
            f" +- {a['random faithfulness std']:.3f}; completeness {a['completeness']:.3f} vs "
            f"random {a['random completeness']:.3f} +- {a['random completeness std']:.3f}\n"
            f"  CPR {self.cpr:.3f} vs random {self.random_cpr.mean():.3f}; CMD {self.cmd:.3f} "
            f"vs random {self.random_cmd.mean():.3f}"
        )
        return head + "\n" + self.to_frame().to_string(float_format=lambda x: f"{x:.3f}")

    __repr__ = __str__


def default_sizes(n_edges: int) -> list[int]:
    """0, about 0.2% ... 50% of the edges on a log scale, and all of them (the default grid
    before MIB's, :data:`~grok_circuits.analysis.edges.mib.MIB_FRACTIONS`)."""
    fractions = [0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    return sorted({min(n_edges, round(f * n_edges)) for f in fractions} | {1})


def faithfulness(
    model: Model,
    data: Data,
    circuit_or_scores: EdgeCircuit | EdgeScores,
    *,
    sizes: Sequence[int] | None = None,
    fractions: Sequence[float] | None = None,
    ablation: EdgeAblation = "corrupt",
    n_random: int = 20,
    positions: bool = True,
    metric: EdgeMetric = "logit_difference",
    completeness: bool = True,
    swap: str | None = None,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> Faithfulness:
    """Faithfulness and completeness of edge circuits of several sizes, against random ones.

    Args:
        model: the model the scores were computed on (another one is refused: its weights
            must be the ones scored).
        data: :class:`~grok_circuits.PromptPairs`, or a registered task (pairs are then built
            with ``swap``, ``subtask``, ``split``, ``n_examples``, ``facts``, ``seed``, as in
            :func:`~grok_circuits.edge_attribution`); use the pairs the scores came from, or
            held-out pairs of the same kind.
        circuit_or_scores: :class:`EdgeScores` (the top-``k`` edges are the circuit of size
            ``k``) or one :class:`EdgeCircuit` (then the only size is its own).
        sizes: circuit sizes in edges, placed at ``k / n_edges`` (or ``fractions``, not both).
        fractions: circuit sizes as fractions of the graph's edges, ``int(f * n_edges)`` edges
            each (default: MIB's grid, :data:`~grok_circuits.analysis.edges.mib.MIB_FRACTIONS`).
        ablation: ``"corrupt"``, ``"zero"``, ``"mean"``, ``"mean-positional"`` or
            ``"resample"`` (see the module docstring).
        n_random: random edge sets per size (at least 1; 20 or more for a baseline).
        positions: count edges per position (default) or summed over positions (an edge is
            then kept or ablated at every position at once); ignored for an EdgeCircuit.
        metric: as in :func:`~grok_circuits.edge_attribution`.
        completeness: also measure the completeness drops (half the forward passes; NaN
            when False).
        seed: seeds the pairs drawn from a task, the random circuits and the resample draw.
        progress: a progress bar over the sizes.

    Returns:
        :class:`Faithfulness`.
    """
    if n_random < 1:
        raise ValueError(f"n_random must be >= 1, got {n_random}")
    if isinstance(circuit_or_scores, EdgeCircuit):
        scores, fixed = circuit_or_scores.scores, circuit_or_scores
        positions = fixed.positions
    elif isinstance(circuit_or_scores, EdgeScores):
        scores, fixed = circuit_or_scores, None
    else:
        raise ValueError(
            f"circuit_or_scores must be EdgeScores or an EdgeCircuit, got "
            f"{type(circuit_or_scores).__name__}; compute them with edge_attribution"
        )
    pairs = as_pairs(
        model,
        data,
        swap=swap,
        subtask=subtask,
        split=split,
        n_examples=n_examples,
        facts=facts,
        seed=seed,
    )
    graph = EdgeGraph.of(model)
    if graph != scores.graph or pairs.width != scores.raw.shape[-1]:
        raise ValueError(
            "the scores were computed on another model or prompt width than these; score this "
            "model on pairs of this width"
        )
    if scores.model_digest is not None and scores.model_digest != weights_digest(model):
        raise ValueError(
            "the scores were computed on another model than this one (other weights: another "
            "checkpoint or run); pass the model they came from, or score this one with "
            "edge_attribution(model, pairs)"
        )
    fn = metric_fn(metric)
    valid = scores.valid(positions)
    n_edges = int(valid.sum())
    if ablation not in EDGE_ABLATIONS:
        raise ValueError(f"ablation={ablation!r}; choose one of {EDGE_ABLATIONS}")
    grid = None
    if fixed is not None:
        if sizes is not None or fractions is not None:
            raise ValueError(
                "sizes= and fractions= apply to EdgeScores; an EdgeCircuit has its own size"
            )
        sizes = [len(fixed)]
    elif sizes is not None:
        if fractions is not None:
            raise ValueError("pass sizes (in edges) or fractions (of the graph), not both")
        sizes = sorted({int(k) for k in sizes})
    else:
        grid = check_fractions(MIB_FRACTIONS if fractions is None else fractions)
        sizes = mib_sizes(n_edges, grid)
    bad = [k for k in sizes if not 0 <= k <= n_edges]
    if bad:
        raise ValueError(f"sizes {bad} are outside 0..{n_edges} (the graph's edges)")
    ranking = scores.ranking(positions)
    candidates = torch.nonzero(valid.flatten()).flatten()
    rng = np.random.default_rng(seed)
    n_pos = pairs.width

    def full(mask_flat: Tensor) -> Tensor:
        m = mask_flat.view(valid.shape)
        return m if positions else m[:, :, None].expand(*m.shape, n_pos)

    def mask_of(indices: Tensor) -> Tensor:
        m = torch.zeros(valid.numel(), dtype=torch.bool)
        m[indices] = True
        return m

    all_edges = mask_of(candidates)
    from tqdm.auto import tqdm

    with edge_hooks(model):
        ablated = ablated_sources(model, graph, pairs, ablation, seed=seed, batch_size=batch_size)

        def ms(keep_flat: list[Tensor]) -> list[float]:
            keep = torch.stack([full(k) for k in keep_flat])
            values = metrics_with_edges(
                model, graph, pairs, keep, ablated, fn, batch_size=batch_size
            )
            return values.tolist()

        m_full, m_empty = ms([all_edges, torch.zeros_like(all_edges)])
        span = m_full - m_empty
        if abs(span) < 1e-9:
            raise no_effect_error("ablating every edge", m_full)
        faith, comp, rfaith, rcomp = [], [], [], []
        for k in tqdm(sizes, desc="sizes", disable=not progress):
            if fixed is not None:
                chosen = fixed.mask.flatten() & valid.flatten()
            else:
                chosen = mask_of(ranking[:k])
            draws = 0 if k in (0, n_edges) else n_random  # at 0 and all, any draw is the circuit
            picks = [
                mask_of(candidates[rng.choice(len(candidates), k, replace=False)])
                for _ in range(draws)
            ]
            kept = ms([chosen, *picks])
            dropped = ms([all_edges & ~x for x in (chosen, *picks)]) if completeness else None
            f_all = [(x - m_empty) / span for x in kept]
            c_all = (
                [(m_full - x) / span for x in dropped]
                if dropped is not None
                else [math.nan] * len(kept)
            )
            faith.append(f_all[0])
            comp.append(c_all[0])
            rfaith.append(f_all[1:] if draws else [f_all[0]] * n_random)
            rcomp.append(c_all[1:] if draws else [c_all[0]] * n_random)
    return Faithfulness(
        sizes=torch.tensor(sizes),
        n_edges=n_edges,
        faithfulness=torch.tensor(faith),
        completeness=torch.tensor(comp),
        random_faithfulness=torch.tensor(rfaith),
        random_completeness=torch.tensor(rcomp),
        full_metric=m_full,
        empty_metric=m_empty,
        ablation=ablation,
        positions=positions,
        seed=seed,
        grid=grid,
    )


__all__ = [
    "EDGE_ABLATIONS",
    "EdgeAblation",
    "Faithfulness",
    "ablated_sources",
    "default_sizes",
    "faithfulness",
    "metrics_with_edges",
]
