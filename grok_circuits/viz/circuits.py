"""Plots of circuits and of circuit reuse.

- :func:`plot_circuit`: the paper's causal graph (Wang et al. 2024, figure 4 style): residual
  states as nodes at (position, layer), shaded by their causal strength to the output, joined by
  the paths the architecture allows between strong states (the residual stream upward at one
  position, attention from an earlier position to a later one); and a heat map of the component
  scores (heads and the MLP of each layer), with the circuit's components outlined.
- :func:`plot_reuse`: the two circuits' overlap against its size-matched random distribution, and
  the cross-ablation accuracies.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

CMAP = "Blues"


def _position_labels(positions: dict, width: int) -> list[str]:
    names = {i: n for n, i in positions.items()}
    return [names.get(i, str(i)) for i in range(width)]


def plot_causal_graph(circuit, ax=None, *, min_strength: float = 0.1, title: str | None = None):
    """The causal graph of a patching :class:`~grok_circuits.analysis.circuits.Circuit`.

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
            "use find_circuit (the patching method)"
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
        s=260,
        edgecolors="gray",
        linewidths=0.6,
        zorder=2,
    )
    ax.scatter([answer], [n_layers], marker="s", s=260, color="tab:orange", zorder=2)
    for layer in range(n_layers):
        for p in range(width):
            s = strength[layer, p]
            ax.text(
                p,
                layer,
                f"{s:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if s > 0.6 else "black",
                zorder=3,
            )
    ax.set_xticks(range(width), _position_labels(circuit.positions, width))
    ax.set_yticks(range(n_layers + 1), [*(f"L{i}" for i in range(n_layers)), "out"])
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-0.6, n_layers + 0.6)
    ax.set_xlabel("position")
    ax.set_ylabel("layer (resid_pre)")
    ax.set_title(
        title
        or f"{circuit.task}: causal strength of each state (swapping {', '.join(circuit.swaps)})",
        fontsize=9,
    )
    fig.colorbar(sc, ax=ax, fraction=0.04, label=circuit.metric)
    return fig


def plot_component_scores(circuit, ax=None, *, title: str | None = None):
    """Heat map of every component's score (rows: layers; columns: heads, then the MLP), the
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
    for (layer, col), s in np.ndenumerate(grid):
        if np.isfinite(s):
            ax.text(
                col,
                layer,
                f"{s:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if s > 0.6 * vmax else "black",
            )
    for c in circuit.components:
        col = c.head if c.is_head else circuit.n_heads
        ax.add_patch(
            Rectangle((col - 0.5, c.layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)
        )
    ax.set_xticks(range(circuit.n_heads + 1), [*(f"H{h}" for h in range(circuit.n_heads)), "MLP"])
    ax.set_yticks(range(circuit.n_layers), [f"L{i}" for i in range(circuit.n_layers)])
    rule = f"top {circuit.top_k}" if circuit.top_k is not None else f"≥ {circuit.threshold}"
    ax.set_title(title or f"{circuit.task}: component scores ({rule} outlined)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05, label=circuit.metric)
    return fig


def plot_circuit(circuit, *, min_strength: float = 0.1):
    """The causal graph (patching circuits only) next to the component scores.

    Returns:
        The matplotlib Figure.
    """
    if circuit.state_scores is None:
        return plot_component_scores(circuit)
    width = circuit.state_scores.shape[-1]
    fig, (left, right) = plt.subplots(
        1,
        2,
        figsize=(1.3 * width + 2 + 0.7 * circuit.n_heads + 2.5, 4.8),
        gridspec_kw={"width_ratios": [width + 1, circuit.n_heads + 2]},
    )
    plot_causal_graph(circuit, left, min_strength=min_strength)
    plot_component_scores(circuit, right)
    fig.tight_layout()
    return fig


def plot_reuse(report):
    """Three panels: the circuits' IoU and head share (red lines) over the histograms of their
    size-matched random baselines, and the accuracy on each task after ablating each circuit
    or size-matched random sets (mean, error bar = std over the random sets).

    Returns:
        The matplotlib Figure.
    """
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, name, obs, rnd in (
        (axes[0], "IoU", report.iou, report.random_iou),
        (axes[1], "head share", report.head_share, report.random_head_share),
    ):
        values = rnd.numpy()
        values = values[np.isfinite(values)]
        if values.size:
            ax.hist(
                values,
                bins=np.linspace(0, 1, 21),
                color="lightgray",
                edgecolor="gray",
                label=f"random, size-matched (n={values.size})",
            )
        if np.isfinite(obs):
            ax.axvline(obs, color="red", linewidth=2, label=f"circuits: {obs:.2f}")
        ax.set_xlim(-0.03, 1.03)
        ax.set_xlabel(name)
        ax.set_ylabel("random pairs")
        ax.legend(fontsize=7)
        ax.set_title(f"{name} of the two circuits", fontsize=9)

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
    fig.tight_layout()
    return fig
