"""Plots of the analysis results: logit lens, causal traces, bridge tracing, stage comparison.

Layers are drawn bottom (embeddings) to top (output), positions left to right, as in the
figures of "Grokked Transformers are Implicit Reasoners" (Wang et al. 2024). Every function
takes an optional ``ax`` where it draws one panel, and returns the matplotlib Figure.
"""

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle


def _axes(ax, figsize=(5, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _heatmap(ax, values, *, xlabels, ylabels, title, cmap="viridis", center=False, fmt=".2f"):
    """A [layer, column] heatmap with layer 0 at the bottom and the values written in."""
    values = torch.as_tensor(values).float()
    kw = {}
    if center:
        lim = float(values.nan_to_num().abs().max()) or 1.0
        kw = dict(vmin=-lim, vmax=lim)
    im = ax.imshow(values.numpy(), origin="lower", aspect="auto", cmap=cmap, **kw)
    ax.set_xticks(range(len(xlabels)), xlabels)
    ax.set_yticks(range(len(ylabels)), ylabels)
    if values.numel() <= 120 and values.shape[1] <= 12:  # write the numbers where they fit
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = float(values[i, j])
                r, g, b, _ = im.cmap(im.norm(v))
                light = 0.299 * r + 0.587 * g + 0.114 * b > 0.5  # dark text on light cells
                ax.text(
                    j,
                    i,
                    format(v, fmt),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if light else "white",
                )
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    return im


def plot_causal_trace(trace, ax=None, *, normalized: bool = False, title=None):
    """Heatmap of a :class:`~grok_circuits.analysis.CausalTrace`: layer x position (or head).

    A ``[layer, pos, head]`` trace is drawn as one row per (layer, head)."""
    scores = trace.normalized if normalized else trace.scores
    fig, ax = _axes(ax)
    if scores.dim() == 3:
        n_layers, _, n_heads = scores.shape
        scores = scores.permute(0, 2, 1).reshape(n_layers * n_heads, -1)
        ylabels = [f"L{li}H{h}" for li in range(n_layers) for h in range(n_heads)]
        xlabels = list(trace.pos_labels)
    else:
        ylabels = [f"L{li}" for li in range(scores.shape[0])]
        xlabels = (
            list(trace.pos_labels)
            if trace.dims[1] == "pos"
            else [f"H{h}" for h in range(scores.shape[1])]
        )
    what = "normalized " if normalized else ""
    _heatmap(
        ax,
        scores,
        xlabels=xlabels,
        ylabels=ylabels,
        title=title or f"{what}{trace.activation} patching ({trace.direction})",
    )
    ax.set_xlabel(trace.dims[-1] if scores.dim() == 2 and trace.dims[1] == "head" else "position")
    ax.set_ylabel("layer")
    fig.tight_layout()
    return fig


def plot_logit_lens(result, ax=None, *, title=None, mark_layer=None):
    """MRR per layer of each column of a :class:`~grok_circuits.analysis.LogitLensResult`."""
    fig, ax = _axes(ax)
    mrr = result.mrr if result.per_position else result.mrr[:, None]
    layers = range(mrr.shape[0])
    for j, name in enumerate(result.names):
        ax.plot(layers, mrr[:, j].tolist(), marker="o", label=name)
    if mark_layer is not None:
        ax.axvline(mark_layer, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(list(layers), list(result.layer_labels), rotation=45, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("residual stream (input of block, then final)")
    ax.set_ylabel("MRR")
    ax.set_title(title or "logit lens", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_reasoning_trace(trace, *, title=None, mark_layer=None):
    """Logit-lens MRR curves (left) and the causal-strength heatmap (right) of a
    :class:`~grok_circuits.analysis.ReasoningTrace` / ``BridgeTrace``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    plot_logit_lens(trace.lens, ax=left, mark_layer=mark_layer, title="logit lens MRR")
    if mark_layer is not None:
        left.text(mark_layer, 0.95, f" bridge layer {mark_layer}", fontsize=8, color="gray")
    plot_causal_trace(trace.strength, ax=right, title=f"causal strength (swap {trace.swap}, noise)")
    step = "" if trace.step is None else f" at step {trace.step}"
    fig.suptitle(title or f"{type(trace).__name__}{step}, {trace.n_examples} examples")
    fig.tight_layout()
    return fig


def plot_bridge_over_time(over_time, *, position: str = "r1", title=None):
    """Step x layer heatmaps of a :class:`~grok_circuits.analysis.BridgeTraceOverTime`: the
    bridge MRR at ``r1`` and the causal strength at ``position``."""
    if position not in over_time.pos_labels:
        raise ValueError(f"position {position!r} is not one of {list(over_time.pos_labels)}")
    j = over_time.pos_labels.index(position)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [str(s) for s in over_time.steps]
    mrr = over_time.bridge_mrr.T  # layer step
    _heatmap(
        left,
        mrr,
        xlabels=steps,
        ylabels=list(over_time.layer_labels),
        title=f"bridge MRR at r1 (bridge layer, first ≥ {over_time.threshold}, outlined)",
    )
    # outline the bridge layer's cell: a line or a legend would hide the numbers in the cells
    for i, b in enumerate(over_time.bridge_layer):
        if b is not None:
            left.add_patch(
                Rectangle((i - 0.5, b - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)
            )
    strength = over_time.strength[:, :, j].T
    _heatmap(
        right,
        strength,
        xlabels=steps,
        ylabels=list(over_time.layer_labels[: strength.shape[0]]),
        title=f"causal strength at {position} (swap {over_time.swap})",
    )
    for ax in (left, right):
        ax.set_xlabel("step")
        ax.set_ylabel("layer")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.suptitle(title or f"bridge over training ({over_time.n_examples} examples)")
    fig.tight_layout()
    return fig


def plot_stage_comparison(comparison, *, title=None):
    """The paper's "change during grokking" figure of a
    :class:`~grok_circuits.analysis.StageComparison`: strength at the memorizing and the
    generalizing checkpoints, their difference, and the lens MRR at both."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    mem, gen = comparison.memorizing, comparison.generalizing
    labels = list(comparison.pos_labels)
    ylabels = [f"L{i}" for i in range(comparison.difference.shape[0])]
    for ax, trace, name in (
        (axes[0], mem, f"memorizing (step {comparison.memorizing_step})"),
        (axes[1], gen, f"generalizing (step {comparison.generalizing_step})"),
    ):
        _heatmap(ax, trace.strength.scores, xlabels=labels, ylabels=ylabels, title=name)
    _heatmap(
        axes[2],
        comparison.difference,
        xlabels=labels,
        ylabels=ylabels,
        title="change during grokking",
        cmap="RdBu_r",
        center=True,
        fmt="+.2f",
    )
    for ax in axes[:3]:
        ax.set_xlabel("position")
        ax.set_ylabel("layer")
    ax = axes[3]
    mem_mrr = mem.lens.mrr if mem.lens.per_position else mem.lens.mrr[:, None]
    gen_mrr = gen.lens.mrr if gen.lens.per_position else gen.lens.mrr[:, None]
    for j, name in enumerate(gen.lens.names):
        (line,) = ax.plot(gen_mrr[:, j].tolist(), marker="o", label=f"{name} (generalizing)")
        ax.plot(
            mem_mrr[:, j].tolist(),
            marker="x",
            linestyle="--",
            color=line.get_color(),
            label=f"{name} (memorizing)",
        )
    ax.set_xticks(
        range(len(gen.lens.layer_labels)), list(gen.lens.layer_labels), rotation=45, fontsize=8
    )
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("MRR")
    ax.set_title("logit lens", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(title or f"causal strength (swap {gen.swap}): memorizing vs generalizing")
    fig.tight_layout()
    return fig


def plot_grouped_accuracy(result, ax=None, *, chance=None, title=None, label=None):
    """Accuracy per group of a :class:`~grok_circuits.analysis.GroupedAccuracy`, with the
    number of examples of each group under its tick. Draw several results on one ``ax`` (each
    with a ``label``) to compare probes or checkpoints."""
    fig, ax = _axes(ax)
    ax.plot(list(result.groups), list(result.accuracy), marker="o", label=label)
    if chance is not None:
        ax.axhline(chance, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(
        list(result.groups), [f"{g}\n(n={n})" for g, n in zip(result.groups, result.counts)]
    )
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(result.by)
    ax.set_ylabel("accuracy")
    ax.set_title(title or f"accuracy by {result.by}", fontsize=10)
    ax.grid(alpha=0.3)
    if label is not None or chance is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
