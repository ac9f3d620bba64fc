"""Plots of the analysis results: logit lens, causal traces, bridge tracing, stage comparison.

Layers are drawn bottom (embeddings) to top (output), positions left to right, as in the
figures of "Grokked Transformers are Implicit Reasoners" (Wang et al. 2024). Every function
takes an optional ``ax`` where it draws one panel, and returns the matplotlib Figure.
"""

import math

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle

from grok_circuits.viz._common import (
    cell_fontsize,
    context,
    read_table,
    row_labels,
    step_axis,
    text_color,
)


def _axes(ax, figsize=(5, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _heatmap(
    ax,
    values,
    *,
    xlabels,
    ylabels,
    title,
    cbar_label,
    cmap="viridis",
    center=False,
    fmt=".2f",
    vrange=None,
):
    """A [layer, column] heatmap with layer 0 at the bottom, a labelled colorbar, and the values
    written in the cells where they fit at a readable size. ``vrange``: the colour range
    ``(vmin, vmax)``, to share one between panels (default: the values' own)."""
    values = torch.as_tensor(values).float()
    kw = {}
    if center:
        lim = float(values.nan_to_num().abs().max()) or 1.0
        kw = dict(vmin=-lim, vmax=lim)
    if vrange is not None:
        kw = dict(vmin=vrange[0], vmax=vrange[1])
    im = ax.imshow(values.numpy(), origin="lower", aspect="auto", cmap=cmap, **kw)
    ax.set_xticks(range(len(xlabels)), xlabels)
    ax.set_yticks(range(len(ylabels)), ylabels)
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label=cbar_label)
    texts = [[format(float(v), fmt) for v in row] for row in values]
    width = max((len(t) for row in texts for t in row), default=1)
    size = cell_fontsize(ax, values.shape[0], values.shape[1], width)
    if size is not None:  # too small to read: leave the colours to speak
        for i, row in enumerate(texts):
            for j, text in enumerate(row):
                v = float(values[i, j])
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=size,
                    color=text_color(im.cmap, im.norm, v),
                )
    return im


def plot_causal_trace(
    trace, ax=None, *, normalized: bool = False, title=None, split=None, step=None, swap=None
):
    """Heatmap of a :class:`~grok_circuits.analysis.CausalTrace`: layer x position (or head).

    A ``[layer, pos, head]`` trace is drawn as one row per (layer, head). A ``CausalTrace``
    does not record what it was measured on; ``split``, ``step`` and ``swap``, when given, go
    into the default title."""
    scores = trace.normalized if normalized else trace.scores
    # a pair metric's scores are already shares of the swap's effect; normalizing keeps them
    normalized = normalized and trace.metric != "logit_difference"
    fig, ax = _axes(ax)
    rows = row_labels(scores.shape[0], trace.activation)
    if scores.dim() == 3:
        n_layers, _, n_heads = scores.shape
        scores = scores.permute(0, 2, 1).reshape(n_layers * n_heads, -1)
        ylabels = [f"{row} H{h}" for row in rows for h in range(n_heads)]
        xlabels = list(trace.pos_labels)
    else:
        ylabels = rows
        xlabels = (
            list(trace.pos_labels)
            if trace.dims[1] == "pos"
            else [f"H{h}" for h in range(scores.shape[1])]
        )
    what = "normalized " if normalized else ""
    where = context(split=split, step=step, swap=swap)
    _heatmap(
        ax,
        scores,
        xlabels=xlabels,
        ylabels=ylabels,
        title=title
        or f"{what}{trace.activation} patching ({trace.direction})"
        + (f"\n{where}" if where else ""),
        cbar_label=f"{what}{trace.score_label}",
    )
    ax.set_xlabel(trace.dims[-1] if scores.dim() == 2 and trace.dims[1] == "head" else "position")
    ax.set_ylabel(trace.activation)
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


def plot_reasoning_trace(trace, *, title=None, mark_layer=None, split=None):
    """Logit-lens MRR curves (left) and the heatmap of the causal trace (right) of a
    :class:`~grok_circuits.analysis.ReasoningTrace` / ``BridgeTrace``, labelled with the
    trace's metric (the share of answers changed, or of the logit difference removed).

    Args:
        mark_layer: the logit-lens row to mark (default: a ``BridgeTrace``'s bridge layer).
        split: the probe the examples came from, for the title (a trace does not record it).
    """
    if mark_layer is None:
        mark_layer = getattr(trace, "bridge_layer", None)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    plot_logit_lens(trace.lens, ax=left, mark_layer=mark_layer, title="logit lens MRR")
    if mark_layer is not None:
        left.text(
            mark_layer, 0.95, f" bridge layer: {trace.lens.layer_labels[mark_layer]}", fontsize=8
        )
    _heatmap(
        right,
        trace.strength.scores,
        xlabels=list(trace.strength.pos_labels),
        ylabels=row_labels(trace.strength.scores.shape[0], trace.strength.activation),
        title=f"{trace.strength.score_name} ({trace.strength.direction})",
        cbar_label=trace.strength.score_label,
    )
    right.set_xlabel("position")
    right.set_ylabel(trace.strength.activation)
    where = context(split=split, step=trace.step, swap=trace.swap, n_examples=trace.n_examples)
    fig.suptitle(title or f"{type(trace).__name__}: {where}")
    fig.tight_layout()
    return fig


def plot_bridge_over_time(over_time, *, position: str = "r1", title=None, split=None):
    """Step x layer heatmaps of a :class:`~grok_circuits.analysis.BridgeTraceOverTime`: the
    bridge MRR at ``r1`` and the causal strength at ``position``. ``split``: the probe the
    examples came from, for the title (the result does not record it)."""
    if position not in over_time.pos_labels:
        raise ValueError(f"position {position!r} is not one of {list(over_time.pos_labels)}")
    j = over_time.pos_labels.index(position)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    steps = [str(s) for s in over_time.steps]
    mrr = over_time.bridge_mrr.T  # layer step
    _heatmap(
        left,
        mrr,
        xlabels=steps,
        ylabels=list(over_time.layer_labels),
        title=f"bridge MRR at r1 (bridge layer, first ≥ {over_time.threshold}, outlined)",
        cbar_label="bridge MRR at r1",
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
        title=f"causal strength at {position}",
        cbar_label="causal strength (share of answers changed)",
    )
    for ax in (left, right):
        ax.set_xlabel("step")
        ax.set_ylabel("resid_pre")
        ax.tick_params(axis="x", labelrotation=60 if len(steps) > 8 else 0, labelsize=8)
    where = context(split=split, swap=over_time.swap, n_examples=over_time.n_examples)
    span = f"steps {over_time.steps[0]}-{over_time.steps[-1]}"
    fig.suptitle(title or f"bridge over training, {span}: {where}")
    fig.tight_layout()
    return fig


def plot_stage_comparison(comparison, *, title=None, split=None):
    """The paper's "change during grokking" figure of a
    :class:`~grok_circuits.analysis.StageComparison`: the trace's score at the memorizing and
    the generalizing checkpoints (on one shared colour range, so that equal colours are equal
    values), their difference, and the lens MRR at both. The labels follow the traces' metric.
    ``split``: the probe the examples came from, for the title (the result does not record
    it)."""
    fig, grid = plt.subplots(2, 2, figsize=(10.5, 8))
    axes = grid.ravel()
    mem, gen = comparison.memorizing, comparison.generalizing
    labels = list(comparison.pos_labels)
    ylabels = row_labels(comparison.difference.shape[0], gen.strength.activation)
    both = torch.stack([mem.strength.scores, gen.strength.scores]).float().nan_to_num()
    low, high = float(both.min()), float(both.max())
    if gen.strength.metric is not None:  # a share: 0 is no effect, 1 the whole effect
        low, high = min(low, 0.0), max(high, 1.0)
    for ax, trace, name in (
        (axes[0], mem, f"memorizing (step {comparison.memorizing_step})"),
        (axes[1], gen, f"generalizing (step {comparison.generalizing_step})"),
    ):
        _heatmap(
            ax,
            trace.strength.scores,
            xlabels=labels,
            ylabels=ylabels,
            title=f"{gen.strength.score_name}, {name}",
            cbar_label=gen.strength.score_label,
            vrange=(low, high),
        )
    _heatmap(
        axes[2],
        comparison.difference,
        xlabels=labels,
        ylabels=ylabels,
        title="change during grokking (red: stronger after)",
        cbar_label=f"{gen.strength.score_name}: generalizing - memorizing",
        cmap="RdBu_r",
        center=True,
        fmt="+.2f",
    )
    for ax in axes[:3]:
        ax.set_xlabel("position")
        ax.set_ylabel(gen.strength.activation)
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
    ax.set_title("logit lens (dashed: memorizing)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    steps = f"steps {comparison.memorizing_step} vs {comparison.generalizing_step}"
    where = context(split=split, swap=gen.swap, n_examples=gen.n_examples)
    fig.suptitle(title or f"memorizing vs generalizing, {steps}: {where}")
    fig.tight_layout()
    return fig


def plot_grouped_accuracy(
    result, ax=None, *, chance=None, title=None, label=None, split=None, step=None
):
    """Accuracy per group of a :class:`~grok_circuits.analysis.GroupedAccuracy`, with the
    number of examples of each group under its tick. Draw several results on one ``ax`` (each
    with a ``label``) to compare probes or checkpoints. The result does not record its split
    or step; ``split`` and ``step``, when given, go into the default title."""
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
    where = context(split=split, step=step)
    ax.set_title(title or f"accuracy by {result.by}" + (f", {where}" if where else ""), fontsize=10)
    ax.grid(alpha=0.3)
    if label is not None or chance is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def paper_layer(n_layers: int) -> int:
    """The residual-stream layer at the paper's relative depth: its Fig. 5 reads ``S[5, r1]``
    in an 8-layer model, the input of block 5 (row ``"5_pre"``), so ``5 / 8`` of the depth."""
    return max(1, min(n_layers - 1, math.floor(5 * n_layers / 8 + 0.5)))


def plot_paper_figure(
    over_time,
    *,
    run=None,
    layer: int | None = None,
    start: int | None = None,
    end: int | None = None,
    title=None,
):
    """The paper's Fig. 5-style panels: the MRR of the bridge at ``S[layer, r1]`` and of ``r2``
    at ``S[layer, r2]`` over the checkpoints (with the run's training and ID accuracy beside
    them), the causal strength of every state at ``end``, and its change from ``start`` to
    ``end``: the change during grokking, as the paper draws it. By default ``start`` is the
    traced checkpoint nearest the run's memorizing stage (``run.saturation_step``; the first
    traced one where the run has none or is not given) and ``end`` the last traced one.

    Args:
        over_time: a :class:`~grok_circuits.analysis.BridgeTraceOverTime`, from
            ``trace_bridge_over_time(run)`` (a released series included).
        run: the run it came from, for the accuracy curves (optional).
        layer: the residual-stream row read; default :func:`paper_layer`, the paper's
            ``S[5, ...]`` at its relative depth.
        start, end: traced steps whose strengths are compared.
        title: the figure's title.
    """
    if not hasattr(over_time, "bridge_mrr"):
        raise TypeError(
            f"plot_paper_figure draws a BridgeTraceOverTime, got {type(over_time).__name__}; "
            "trace a run first: plot_paper_figure(trace_bridge_over_time(run), run=run)"
        )
    steps = list(over_time.steps)
    n_layers = over_time.strength.shape[1]
    layer = paper_layer(n_layers) if layer is None else layer
    if not 0 <= layer < over_time.bridge_mrr.shape[1]:
        raise ValueError(f"layer={layer} is not a row of the trace (0..{n_layers})")
    if start is None:
        memorizing = run.saturation_step if run is not None else None
        start = steps[0] if memorizing is None else min(steps, key=lambda s: abs(s - memorizing))
    end = steps[-1] if end is None else end
    missing = [s for s in (start, end) if s not in steps]
    if missing:
        raise ValueError(f"steps {missing} were not traced; traced: {steps}")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    ax = axes[0]
    x, drawn = list(steps), list(steps)
    label = over_time.layer_labels[layer]
    ax.plot(
        x, over_time.bridge_mrr[:, layer], "o-", color="tab:red", label=f"bridge at r1, {label}"
    )
    ax.plot(x, over_time.r2_mrr[:, layer], "s--", color="tab:blue", label=f"r2 at r2, {label}")
    if run is not None:
        at = [r["step"] for r in run.metrics]
        drawn += at
        for role, style in (("train", ":"), ("id", "-.")):
            probe = run.key_probes.get(role)
            if probe is not None:
                values = [r.get(f"{probe}_acc") for r in run.metrics]
                ax.plot(at, values, style, color="gray", label=f"{probe} accuracy")
    step_axis(ax, drawn)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("MRR (logit lens), accuracy")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("over training", fontsize=10)
    positions = list(over_time.pos_labels)
    rows = list(over_time.layer_labels[:n_layers])
    i, j = steps.index(start), steps.index(end)
    _heatmap(
        axes[1],
        over_time.strength[j],
        xlabels=positions,
        ylabels=rows,
        title=f"causal strength at step {end}",
        cbar_label="share of answers changed",
    )
    _heatmap(
        axes[2],
        over_time.strength[j] - over_time.strength[i],
        xlabels=positions,
        ylabels=rows,
        title=f"change in strength, step {start} to {end}",
        cbar_label="change in share of answers changed",
        cmap="RdBu_r",
        center=True,
    )
    for axis in axes[1:]:
        axis.set_ylabel("resid_pre")
    where = context(swap=over_time.swap, n_examples=over_time.n_examples)
    fig.suptitle(title or f"the bridge entity over training ({where})")
    fig.tight_layout()
    return fig


def plot_hop_trace(trace, ax=None, *, title=None, drift: bool = False):
    """Heatmap of a :class:`~grok_circuits.analysis.HopTrace`: the logit-lens MRR of each hop's
    entity after each iteration (iteration 1 at the bottom), or with ``drift=True`` the share of
    queries whose top decoded token is the answer, each intermediate entity, or another token."""
    fig, ax = _axes(ax)
    values = trace.drift if drift else trace.mrr
    columns = trace.drift_labels if drift else trace.hop_labels
    what = "top decoded token" if drift else "logit-lens MRR"
    _heatmap(
        ax,
        values,
        xlabels=list(columns),
        ylabels=list(trace.row_labels),
        title=title
        or f"{what} per {'iteration' if trace.recurrent else 'block'} "
        f"({trace.n_examples} queries, read at the {trace.position} position)",
        cbar_label="share of queries" if drift else "MRR",
        vrange=(0.0, 1.0),
    )
    ax.set_xlabel("top token is" if drift else "entity after hop")
    ax.set_ylabel("residual stream after")
    fig.tight_layout()
    return fig


def plot_halting(halting, ax=None, *, title=None):
    """Adaptive halting against fixed counts (:class:`~grok_circuits.analysis.Halting`): the
    accuracy with every query run ``n`` iterations (the overthinking curve), the adaptive
    rule's accuracy drawn at its mean count, and, as bars on a second axis, the share of queries
    that halt at each count."""
    fig, ax = _axes(ax, figsize=(6, 4))
    counts = list(range(1, halting.max_iterations + 1))
    bars = ax.twinx()
    bars.bar(counts, halting.halt_share.tolist(), color="0.85", width=0.6, zorder=0)
    bars.set_ylim(0, 1)
    bars.set_ylabel("share of queries halting here", color="0.45")
    bars.tick_params(axis="y", colors="0.45")
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(counts, halting.fixed_accuracy.tolist(), "o-", color="C0", label="fixed count")
    ax.plot(
        [halting.mean_iterations],
        [halting.accuracy],
        "*",
        color="C3",
        markersize=14,
        label=f"adaptive (KL < {halting.kl_threshold:g}), at its mean count",
    )
    ax.set_xticks(counts)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("iterations at inference")
    ax.set_ylabel("top-1 accuracy")
    ax.legend(loc="best", fontsize="small")
    ax.set_title(title or f"halting when the answer settles ({halting.n_examples} queries)")
    fig.tight_layout()
    return fig


def plot_depth_extrapolation(
    table,
    *,
    k_train: int | None = None,
    trained_iterations: tuple[int, int] | None = None,
    title: str | None = None,
):
    """Depth extrapolation of a recurrent-depth model: accuracy per hop count (columns) and
    inference count (rows, 1 at the bottom), ID and OOD, the mean over seeds, and beside them
    the overthinking curves: ID accuracy of each hop count against the inference count, a thin
    line per seed and a thick one for their mean.

    Args:
        table: a DataFrame (or CSV path) with columns ``seed``, ``iterations``, ``hops``,
            ``kind`` (``"id"`` / ``"ood"``) and ``acc``, e.g. ``depth.csv`` of
            ``benchmarks/recurrent_depth.py`` (``data/recurrent_depth/depth.csv``).
        k_train: the most hops trained on; larger hop counts are labelled "(new)".
        trained_iterations: the ``(lo, hi)`` range of iterations drawn in training, shaded on
            the curves and outlined on the heatmaps.
        title: the figure's title.

    Returns:
        The matplotlib Figure.
    """
    t = read_table(
        table,
        {"seed", "iterations", "hops", "kind", "acc"},
        "plot_depth_extrapolation",
        "benchmarks/recurrent_depth.py",
    )
    kinds = [k for k in ("id", "ood") if (t["kind"] == k).any()]
    if not kinds:
        raise ValueError("plot_depth_extrapolation: the table has no rows of kind 'id' or 'ood'")
    counts = sorted(int(n) for n in t["iterations"].unique())
    seeds = sorted(int(s) for s in t["seed"].unique())
    seeds_word = "seed" if len(seeds) == 1 else "seeds"
    fig, axes = plt.subplots(
        1, len(kinds) + 1, figsize=(4.2 * (len(kinds) + 1), 4.2), layout="constrained"
    )
    for ax, kind in zip(axes, kinds):
        grid = t[t["kind"] == kind].pivot_table(
            index="iterations", columns="hops", values="acc", aggfunc="mean"
        )
        grid = grid.reindex(counts)
        hops = [int(h) for h in grid.columns]
        labels = [f"{h}" + (" (new)" if k_train is not None and h > k_train else "") for h in hops]
        _heatmap(
            ax,
            torch.tensor(grid.to_numpy(dtype=float)),
            xlabels=labels,
            ylabels=[str(n) for n in counts],
            title=f"{kind.upper()} accuracy (mean of {len(seeds)} {seeds_word})",
            cbar_label="accuracy",
            vrange=(0.0, 1.0),
        )
        ax.set_xlabel("hops in the query")
        ax.set_ylabel("iterations at inference")
        if trained_iterations is not None:
            lo, hi = (counts.index(n) if n in counts else None for n in trained_iterations)
            if lo is not None and hi is not None:
                ax.add_patch(
                    Rectangle(
                        (-0.5, lo - 0.5),
                        len(hops),
                        hi - lo + 1,
                        fill=False,
                        edgecolor="white",
                        linestyle="--",
                        linewidth=1.2,
                    )
                )
    curves = axes[-1]
    ident = t[t["kind"] == kinds[0]]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (h, rows) in enumerate(ident.groupby("hops")):
        color = colors[i % len(colors)]
        for _, one in rows.groupby("seed"):
            one = one.sort_values("iterations")
            curves.plot(one["iterations"], one["acc"], color=color, alpha=0.35, linewidth=0.8)
        mean = rows.groupby("iterations")["acc"].mean()
        new = " (new)" if k_train is not None and int(h) > k_train else ""
        curves.plot(mean.index, mean.values, color=color, linewidth=2.2, label=f"{h} hops{new}")
    if trained_iterations is not None:
        curves.axvspan(*trained_iterations, color="grey", alpha=0.15, label="trained counts")
    curves.set_xlabel("iterations at inference")
    curves.set_ylabel(f"{kinds[0].upper()} accuracy")
    curves.set_ylim(-0.02, 1.02)
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8)
    curves.set_title("overthinking: accuracy against iterations", fontsize=10)
    fig.suptitle(title or "depth extrapolation", fontsize=11)
    return fig
