"""Plots of circuits and of circuit reuse.

- :func:`plot_circuit`: the paper's causal graph (Wang et al. 2024, figure 4 style): residual
  states as nodes at (position, layer), shaded by their causal strength to the output, joined by
  the paths the architecture allows between strong states (the residual stream upward at one
  position, attention from an earlier position to a later one); and a heat map of the component
  scores (heads and the MLP of each layer), with the circuit's components outlined.
- :func:`plot_reuse`: which components each of two circuits holds, their overlap against its
  size-matched random distribution, and the cross-ablation accuracies.

A :class:`~grok_circuits.analysis.circuits.find.Circuit` records its split and its swaps but not the
checkpoint's step: pass ``step`` to put it in the title.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle

from grok_circuits.viz._common import block_labels, cell_fontsize, context, row_labels

CMAP = "Blues"
#: Area (points^2) of a state's node in the causal graph: room for a value such as "0.93".
NODE_AREA = 520


def _position_labels(positions: dict, width: int) -> list[str]:
    names = {i: n for n, i in positions.items()}
    return [names.get(i, str(i)) for i in range(width)]


def _where(circuit, step) -> str:
    swaps = ", ".join(circuit.swaps) or None
    return context(split=circuit.split, step=step, swap=swaps, n_examples=circuit.n_examples)


def plot_causal_graph(
    circuit,
    ax=None,
    *,
    min_strength: float = 0.1,
    title: str | None = None,
    step: int | None = None,
):
    """The causal graph of a :class:`~grok_circuits.analysis.circuits.find.Circuit` with state
    scores (the patching method's).

    Nodes are the ``resid_pre`` states of every (layer, position), shaded by their strength (the
    largest over the perturbed input tokens), plus the output at the answer position. Edges are
    drawn only between states whose strengths are both ``>= min_strength``, with opacity the
    smaller of the two: they show which measured-strong states the architecture connects, not a
    separately measured edge strength.

    Returns:
        The matplotlib Figure.
    """
    if circuit.state_scores is None:
        raise ValueError(
            f"this circuit ({circuit.method}) has no state scores to draw a causal graph from; "
            "find it with find_circuit(..., method='patching')"
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.3 * circuit.state_scores.shape[-1] + 2, 4.5))
    else:
        fig = ax.figure
    strength = circuit.node_strength.numpy()
    n_layers, width = strength.shape
    answer = width - 1
    cmap = plt.get_cmap(CMAP)

    def edge(x0, y0, x1, y1, s):
        ax.plot(
            [x0, x1],
            [y0, y1],
            color="tab:blue",
            alpha=float(min(1.0, max(s, 0.0))),
            linewidth=0.8 + 2.5 * s,
            zorder=1,
        )

    for layer in range(n_layers - 1):
        for p in range(width):
            for q in range(p, width):
                s = min(strength[layer, p], strength[layer + 1, q])
                if s >= min_strength:
                    edge(p, layer, q, layer + 1, s)
    for p in range(width):  # the last block reads every earlier position into the output
        if strength[n_layers - 1, p] >= min_strength:
            edge(p, n_layers - 1, answer, n_layers, strength[n_layers - 1, p])
    xs, ys = np.meshgrid(np.arange(width), np.arange(n_layers))
    sc = ax.scatter(
        xs.ravel(),
        ys.ravel(),
        c=strength.ravel(),
        cmap=cmap,
        vmin=0,
        vmax=1,
        s=NODE_AREA,
        edgecolors="gray",
        linewidths=0.6,
        zorder=2,
    )
    ax.scatter([answer], [n_layers], marker="s", s=NODE_AREA, color="tab:orange", zorder=2)
    fig.colorbar(sc, ax=ax, fraction=0.04, label=circuit.score_label)
    # the value goes inside its node (NODE_AREA pt^2, about 23 pt across), where it fits
    size = cell_fontsize(ax, n_layers + 1, width, 4)
    if size is not None:
        size = min(size, 0.85 * NODE_AREA**0.5 / (0.6 * 4))
        for layer in range(n_layers):
            for p in range(width):
                s = strength[layer, p]
                ax.text(
                    p,
                    layer,
                    f"{s:.2f}",
                    ha="center",
                    va="center",
                    fontsize=size,
                    color="white" if s > 0.6 else "black",
                    zorder=3,
                )
    ax.set_xticks(range(width), _position_labels(circuit.positions, width))
    ax.set_yticks(range(n_layers + 1), [*row_labels(n_layers), "out"])
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-0.6, n_layers + 0.6)
    ax.set_xlabel("position")
    ax.set_ylabel("resid_pre")
    ax.set_title(
        title
        or f"{circuit.task or 'pairs'}: causal strength of each state\n{_where(circuit, step)}",
        fontsize=9,
    )
    return fig


def plot_component_scores(circuit, ax=None, *, title: str | None = None, step: int | None = None):
    """Heat map of every component's score (rows: blocks; columns: heads, then the MLP), the
    circuit's components outlined in red.

    Returns:
        The matplotlib Figure.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.7 * circuit.n_heads + 2.5, 0.5 * circuit.n_layers + 1.8))
    else:
        fig = ax.figure
    grid = np.full((circuit.n_layers, circuit.n_heads + 1), math.nan)
    for c, s in circuit.scores.items():
        grid[c.layer, c.head if c.is_head else circuit.n_heads] = s
    finite = grid[np.isfinite(grid)]
    vmax = max(1e-9, float(np.abs(finite).max())) if finite.size else 1.0
    im = ax.imshow(
        grid,
        cmap=CMAP,
        vmin=min(0.0, float(finite.min()) if finite.size else 0.0),
        vmax=vmax,
        origin="lower",
        aspect="auto",
    )
    fig.colorbar(im, ax=ax, fraction=0.05, label=f"component score ({circuit.score_name})")
    size = cell_fontsize(ax, grid.shape[0], grid.shape[1], 5)
    for (layer, col), s in np.ndenumerate(grid):
        if np.isfinite(s) and size is not None:
            ax.text(
                col,
                layer,
                f"{s:.2f}",
                ha="center",
                va="center",
                fontsize=size,
                color="white" if s > 0.6 * vmax else "black",
            )
    for c in circuit.components:
        col = c.head if c.is_head else circuit.n_heads
        ax.add_patch(
            Rectangle((col - 0.5, c.layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)
        )
    ax.set_xticks(range(circuit.n_heads + 1), [*(f"H{h}" for h in range(circuit.n_heads)), "MLP"])
    ax.set_yticks(range(circuit.n_layers), block_labels(circuit.n_layers))
    rule = f"top {circuit.top_k}" if circuit.top_k is not None else f"≥ {circuit.threshold}"
    ax.set_title(
        title
        or f"{circuit.task or 'pairs'}: component scores ({rule} outlined)\n"
        f"{_where(circuit, step)}",
        fontsize=9,
    )
    return fig


def plot_circuit(
    circuit,
    ax=None,
    *,
    title: str | None = None,
    min_strength: float = 0.1,
    step: int | None = None,
):
    """The causal graph (circuits with state scores, such as patching's) next to the component
    scores; a circuit without state scores draws the component scores alone, on ``ax`` if
    given. Two panels take no ``ax``: draw one of them with :func:`plot_causal_graph` or
    :func:`plot_component_scores`.

    Returns:
        The matplotlib Figure.
    """
    if circuit.state_scores is None:
        return plot_component_scores(circuit, ax, title=title, step=step)
    if ax is not None:
        raise ValueError(
            "this circuit draws two panels (its causal graph and its component scores), so it "
            "takes no ax; draw one on your ax with viz.plot_causal_graph(circuit, ax) or "
            "viz.plot_component_scores(circuit, ax)"
        )
    width = circuit.state_scores.shape[-1]
    fig, (left, right) = plt.subplots(
        1,
        2,
        figsize=(1.1 * width + 1.5 + 0.6 * circuit.n_heads + 2.2, 4.8),
        gridspec_kw={"width_ratios": [width + 1, circuit.n_heads + 2]},
    )
    plot_causal_graph(circuit, left, min_strength=min_strength, title="causal strength of states")
    plot_component_scores(circuit, right, title="component scores (circuit outlined)")
    fig.suptitle(
        title or f"{circuit.task or 'pairs'} circuit: {_where(circuit, step)}", fontsize=10
    )
    fig.tight_layout()
    return fig


def _membership(report, ax):
    """Which components each circuit holds: a blocks x (heads, MLP) grid, one colour per
    combination."""
    a, b = report.tasks
    ca, cb = report.circuits[a], report.circuits[b]
    n_layers, n_heads = ca.n_layers, ca.n_heads
    grid = np.zeros((n_layers, n_heads + 1), dtype=int)
    for code, circuit in ((1, ca), (2, cb)):
        for c in circuit.components:
            grid[c.layer, c.head if c.is_head else n_heads] += code
    colors = ["white", "tab:blue", "tab:orange", "tab:purple"]
    ax.imshow(grid, cmap=ListedColormap(colors), vmin=-0.5, vmax=3.5, origin="lower")
    ax.set_xticks(np.arange(-0.5, n_heads + 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n_layers), minor=True)
    ax.grid(which="minor", color="gray", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    ax.set_xticks(range(n_heads + 1), [*(f"H{h}" for h in range(n_heads)), "MLP"])
    ax.set_yticks(range(n_layers), block_labels(n_layers))
    names = ["neither", f"{a} only", f"{b} only", "both"]
    counts = np.bincount(grid.ravel(), minlength=4)
    ax.legend(
        handles=[
            Patch(facecolor=c, edgecolor="gray", label=f"{n} ({k})")
            for c, n, k in zip(colors, names, counts)
        ],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(0, -0.12),
        ncol=2,
        frameon=False,
    )
    ax.set_title(f"components of each circuit ({_source(report.circuits[a].split)})", fontsize=9)


def _source(split: str | None) -> str:
    """Where a circuit's examples came from: a probe's name, or the pairs given by hand."""
    return "given pairs" if split is None else split


def plot_reuse(report, ax=None, *, title: str | None = None, step: int | None = None):
    """Three panels: which components each circuit holds; the circuits' IoU (red line) over
    the histogram of size-matched random pairs, with the head share and its baseline in the
    legend; and the accuracy on each task after ablating each circuit or size-matched random
    sets (mean, error bar = std over the random sets). ``step``: the checkpoint's step, for the
    title (the report does not record it).

    Returns:
        The matplotlib Figure.
    """
    if ax is not None:
        raise ValueError(
            "the reuse report draws three panels, so it takes no ax; call plot() without one"
        )
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.1, 1.4]})
    _membership(report, axes[0])
    ax = axes[1]
    values = report.random_iou.numpy()
    values = values[np.isfinite(values)]
    if values.size:
        ax.hist(
            values,
            bins=np.linspace(0, 1, 21),
            color="lightgray",
            edgecolor="gray",
            label=f"random pairs, size-matched (n={values.size})",
        )
    if np.isfinite(report.iou):
        ax.axvline(
            report.iou,
            color="red",
            linewidth=2,
            label=f"the circuits: {report.iou:.2f} (P(random ≥) = {report.p_iou:.3f})",
        )
    share = report.random_head_share.numpy()
    share = share[np.isfinite(share)]
    if np.isfinite(report.head_share) and share.size:
        ax.plot(
            [],
            [],
            " ",
            label=f"head share {report.head_share:.2f}, random {share.mean():.2f} ± "
            f"{share.std():.2f} (P = {report.p_head_share:.3f})",
        )
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel("IoU of the two component sets")
    ax.set_ylabel("random pairs")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("overlap vs size-matched random sets", fontsize=9)

    frame = report.to_frame()
    ax = axes[2]
    x = np.arange(len(frame))
    width = 0.8 / len(report.tasks)
    for i, t in enumerate(report.tasks):
        xs = x + (i - (len(report.tasks) - 1) / 2) * width
        ax.bar(xs, frame[t].astype(float), width, label=f"accuracy on {t}")
        std = frame[f"{t} std"].astype(float).to_numpy()
        has = np.isfinite(std)  # only the random rows have a spread
        ax.errorbar(
            xs[has],
            frame[t].astype(float).to_numpy()[has],
            yerr=std[has],
            fmt="none",
            ecolor="black",
            capsize=3,
            linewidth=1,
        )

    def short(row: str) -> str:
        if row.startswith("random, size of "):
            return "random like\n" + row.removeprefix("random, size of ").removesuffix(" circuit")
        return row.replace(" circuit", "\ncircuit")

    ax.set_xticks(
        x,
        [f"{short(i)}\n({int(s)})" for i, s in zip(frame.index, frame["size"], strict=True)],
        fontsize=7,
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"accuracy ({report.eval_split})")
    ax.set_title(f"cross-ablation ({report.ablation} ablation; size in brackets)", fontsize=9)
    ax.legend(fontsize=7)
    where = context(split=_source(report.circuits[report.tasks[0]].split), step=step)
    evaluated = "the given pairs" if report.eval_split == "pairs" else report.eval_split
    fig.suptitle(
        title
        or f"circuit reuse, {' vs '.join(report.tasks)}: circuits from {where}; "
        f"accuracy on {evaluated}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
