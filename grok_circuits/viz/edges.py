"""Plots of edge circuits, their faithfulness curves and their change over training.

- :func:`plot_edge_circuit`: an :class:`~grok_circuits.analysis.edges.scores.EdgeCircuit` at
  (layer, position), as the paper draws its circuits: a column per position, a row per layer
  (the heads side by side, the MLP half a layer above them), the embeddings below and the logits
  above; each edge runs at its own position, its width the absolute score, blue where it
  supports the clean answer and red where it opposes it; a grey arc shows a head moving
  information from the position where its keys and values are read to a later one.
- :func:`plot_faithfulness`: faithfulness and completeness against the fraction of edges kept,
  the random circuits' mean and spread beside the circuit's curve; several results overlay.
- :func:`plot_edge_change`: each top edge's score at two stages (memorizing, generalizing);
- :func:`plot_edge_roc`: the ROC points of edge scores against a known circuit;
- :func:`plot_faithfulness_over_checkpoints`: the faithfulness surface (step x fraction of
  edges) of each set of pairs, and MIB's CPR over the steps beside the run's accuracy curves;
- :func:`plot_mib_ablations`, :func:`plot_faithfulness_surface`, :func:`plot_das_over_checkpoints`:
  views drawn from the tables the benchmarks ship (``data/mib_over_checkpoints.csv``,
  ``data/mib_surface.csv``, ``data/das_bridge.csv``), so a notebook shows them without the runs.
"""

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch

from grok_circuits.viz._common import read_table

POSITIVE, NEGATIVE = "tab:blue", "tab:red"
STYLE = {"q": "-", "k": "--", "v": ":", "mlp": "-", "logits": "-"}


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], **style) -> None:
    """An arrow from ``start`` to ``end`` between two graph nodes (``style``: arrowprops)."""
    props = dict(arrowstyle="-|>", shrinkA=4, shrinkB=4, **style)
    ax.annotate("", xy=end, xytext=start, arrowprops=props, zorder=2)


def _node_xy(graph, kind: str, index: int, pos: int) -> tuple[float, float]:
    """Where a source (``kind="src"``) or the node a destination feeds is drawn."""
    width = 0.7
    if kind == "dst" and index == graph.logits_destination:
        return float(pos), graph.n_layers + 0.3
    s = index if kind == "src" else graph.destination_source(index)
    if s == 0:
        return float(pos), -1.0
    comp = graph.source_component(s)
    if comp.head is None:
        return float(pos), comp.layer + 0.5
    offset = (comp.head - (graph.n_heads - 1) / 2) * width / max(graph.n_heads, 1)
    return pos + offset, float(comp.layer)


def plot_edge_circuit(circuit, ax=None, *, title: str | None = None, step: int | None = None):
    """Draw an edge circuit at (layer, position) (see the module docstring).

    Returns:
        The matplotlib Figure.
    """
    scores = circuit.scores
    graph = scores.graph
    mask = circuit.full_mask()
    norm = scores.normalized
    n_pos = mask.shape[-1]
    labels = scores.pos_labels
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(11.0, 1.9 * n_pos + 2.5), 1.1 * graph.n_layers + 2.5))
    else:
        fig = ax.figure
    # every node faintly, for orientation
    for p in range(n_pos):
        for s in range(graph.n_sources):
            x, y = _node_xy(graph, "src", s, p)
            ax.scatter(x, y, s=10, color="0.85", zorder=1)
    idx = torch.nonzero(mask)
    weights = norm[mask].abs()
    top = float(weights.max()) if len(weights) and float(weights.max()) > 0 else 1.0
    used: set[tuple[int, int]] = set()  # (source, pos) drawn as circuit nodes
    for (s, d, p), w in zip(idx.tolist(), weights.tolist()):
        x0, y0 = _node_xy(graph, "src", s, p)
        x1, y1 = _node_xy(graph, "dst", d, p)
        value = float(norm[s, d, p])
        _arrow(
            ax,
            (x0, y0),
            (x1, y1),
            color=POSITIVE if value >= 0 else NEGATIVE,
            lw=0.6 + 3.5 * w / top,
            alpha=0.35 + 0.65 * w / top,
            linestyle=STYLE[graph.destination_slot(d)],
        )
        used.add((s, p))
        fed = graph.destination_source(d)
        if fed is not None:
            used.add((fed, p))
    # a head that reads keys/values at p and whose output at a later p' is used
    for s in range(1, graph.n_sources):
        comp = graph.source_component(s)
        if comp.head is None:
            continue
        kv = [graph.qkv_destination(comp.layer, w) + comp.head for w in (1, 2)]
        read = mask[:, kv].any(0).any(0)  # [pos]
        for p in torch.nonzero(read).flatten().tolist():
            for q in range(p + 1, n_pos):
                if mask[s, :, q].any():
                    x0, y0 = _node_xy(graph, "src", s, p)
                    x1, y1 = _node_xy(graph, "src", s, q)
                    _arrow(
                        ax,
                        (x0, y0),
                        (x1, y1),
                        color="0.55",
                        lw=1.0,
                        connectionstyle="arc3,rad=-0.35",
                    )
                    used.add((s, q))
    for s, p in sorted(used):
        x, y = _node_xy(graph, "src", s, p)
        ax.scatter(x, y, s=60, color="white", edgecolor="0.2", zorder=3)
        ax.annotate(
            graph.sources[s],
            (x, y),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
            zorder=4,
        )
    logits = {p for s, d, p in idx.tolist() if d == graph.logits_destination}
    for p in logits:
        x, y = _node_xy(graph, "dst", graph.logits_destination, p)
        ax.scatter(x, y, s=90, marker="s", color="0.2", zorder=3)
        ax.annotate(
            "logits", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8
        )
    ax.set_xticks(range(n_pos), labels)
    ax.set_yticks(
        [-1.0, *range(graph.n_layers)],
        ["embed", *(f"layer {i}" for i in range(graph.n_layers))],
    )
    ax.set_xlim(-0.6, n_pos - 0.4)
    ax.set_ylim(-1.5, graph.n_layers + 0.8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    rule = f"top {circuit.top_k}" if circuit.top_k is not None else f">= {circuit.threshold}"
    where = f", step {step}" if step is not None else ""
    ax.set_title(
        title
        or f"Edge circuit ({scores.method}, {rule}, {len(circuit)} edges after pruning{where})\n"
        "width |score|; blue helps, red hurts; line q solid, k dashed, v dotted",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def plot_faithfulness(results, ax=None, *, title: str | None = None):
    """Faithfulness and completeness drop against the fraction of edges kept, for one
    :class:`~grok_circuits.analysis.edges.faithfulness.Faithfulness` or a ``{name: result}`` dict;
    the random circuits' mean +- std is drawn as a band in the same colour. Two panels, or one
    (faithfulness alone, which ``ax`` may hold) when no result measured completeness.

    Returns:
        The matplotlib Figure.
    """
    if not isinstance(results, Mapping):
        results = {"circuit": results}
    show_comp = any(not np.isnan(r.completeness.numpy()).all() for r in results.values())
    if ax is not None and show_comp:
        raise ValueError(
            "plot_faithfulness draws two panels (faithfulness and completeness); call it "
            "without ax, or on results measured with completeness=False"
        )
    given = ax
    if given is None:
        fig, axes = plt.subplots(1, 2 if show_comp else 1, figsize=(10 if show_comp else 5.5, 3.8))
    else:
        fig, axes = ax.figure, ax
    axes = np.atleast_1d(axes)
    panels = [("faithfulness", "recovered fraction of the metric")]
    if show_comp:
        panels.append(("completeness", "drop when only the circuit is ablated"))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (attr, ylabel), panel in zip(panels, axes):
        for k, (name, r) in enumerate(results.items()):
            x = r.fractions
            c = colors[k % len(colors)]
            mine = getattr(r, attr).numpy()
            rnd = getattr(r, f"random_{attr}").numpy()
            a = r.auc
            panel.plot(x, mine, "-o", color=c, ms=3, label=f"{name} (AUC {a[attr]:.2f})")
            mean, std = rnd.mean(1), rnd.std(1)
            panel.plot(
                x,
                mean,
                "--",
                color=c,
                lw=1,
                label=f"{name}: {rnd.shape[1]} random (AUC {a['random ' + attr]:.2f})",
            )
            panel.fill_between(x, mean - std, mean + std, color=c, alpha=0.15, lw=0)
        panel.set_xscale("symlog", linthresh=0.01)
        panel.set_xlim(0, 1)
        panel.set_xlabel("fraction of edges in the circuit")
        panel.set_ylabel(ylabel)
        panel.axhline(0, color="0.8", lw=0.8, zorder=0)
        panel.axhline(1, color="0.8", lw=0.8, zorder=0)
        panel.legend(fontsize=7, loc="best")
        panel.set_title(attr, fontsize=10)
    first = next(iter(results.values()))
    title = (
        title or f"Edge circuits vs random circuits of the same size ({first.ablation} ablation)"
    )
    if given is None:
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
    else:  # one panel in the caller's figure: the title is the panel's
        given.set_title(title, fontsize=9)
    return fig


def plot_edge_change(change, ax=None, *, title: str | None = None):
    """Each edge's normalised score at the two stages of an
    :class:`~grok_circuits.analysis.edges.change.EdgeChange`, joined by a line.

    Returns:
        The matplotlib Figure.
    """
    n = len(change.edges)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 0.3 * n + 1.6))
    else:
        fig = ax.figure
    y = np.arange(n)[::-1]
    a, b = change.before.numpy(), change.after.numpy()
    for yi, ai, bi in zip(y, a, b):
        ax.plot([ai, bi], [yi, yi], color="0.7", lw=1.5, zorder=1)
    ax.scatter(a, y, color="0.5", label=change.names[0], zorder=2)
    ax.scatter(b, y, color=POSITIVE, label=change.names[1], zorder=3)
    ax.set_yticks(y, [e.label(change.pos_labels) for e in change.edges], fontsize=8)
    ax.axvline(0, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("edge score (share of the swap's effect)")
    ax.legend(fontsize=8)
    ax.set_title(title or f"Top edges: {change.names[0]} -> {change.names[1]}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_edge_reuse(report, ax=None, *, title: str | None = None):
    """Two panels of an :class:`~grok_circuits.analysis.edges.reuse.EdgeReuseReport`: the
    circuits' edge IoU (red line) over the histogram of random edge sets of the same sizes;
    the share of each task's metric kept after knocking out each circuit (dark bars) or random
    edge sets of its size (light bars, error bar = std). Being two panels, it takes no ``ax``.

    Returns:
        The matplotlib Figure.
    """
    if ax is not None:
        raise ValueError(
            "plot_edge_reuse draws two panels (the overlap and the knock-out); call it without ax"
        )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    ax = axes[0]
    values = report.random_iou.numpy()
    values = values[np.isfinite(values)]
    ax.hist(
        values,
        bins=20,
        color="lightgray",
        edgecolor="gray",
        label=f"random edge sets (n={values.size})",
    )
    ax.axvline(
        report.iou,
        color="red",
        lw=2,
        label=f"the circuits: {report.iou:.2f} (P = {report.p_iou:.3f})",
    )
    ax.set_xlabel("edge IoU of the two circuits")
    ax.legend(fontsize=7)
    ax = axes[1]
    tasks = report.tasks
    width = 0.2
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, s in enumerate(tasks):
        for i, t in enumerate(tasks):
            x = i + (j - 0.5) * 2 * width
            rnd = report.random_kept[s][t].numpy()
            ax.bar(
                x - width / 2,
                report.kept[s][t],
                width,
                color=colors[j],
                label=f"{s} circuit knocked out" if i == 0 else None,
            )
            ax.bar(
                x + width / 2,
                rnd.mean(),
                width,
                yerr=rnd.std(),
                color=colors[j],
                alpha=0.35,
                label=f"random, size of {s} circuit" if i == 0 else None,
            )
    ax.set_xticks(range(len(tasks)), [f"on {t}" for t in tasks])
    ax.set_ylabel("share of the logit difference kept")
    ax.axhline(1, color="0.8", lw=0.8, zorder=0)
    ax.axhline(0, color="0.8", lw=0.8, zorder=0)
    ax.legend(fontsize=7)
    fig.suptitle(title or f"Edge-level circuit reuse ({report.ablation} ablation)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_edge_roc(roc, ax=None, *, title: str | None = None):
    """True- against false-positive rate of the top edges at each grid fraction, for an
    :class:`~grok_circuits.analysis.edges.mib.EdgeROC`, the diagonal of chance beside it.

    Returns:
        The matplotlib Figure.
    """
    fig, ax = plt.subplots(figsize=(4.2, 4)) if ax is None else (ax.figure, ax)
    ax.plot([0, 1], [0, 1], color="0.8", lw=0.8, zorder=0)
    ax.plot(roc.fpr, roc.tpr, "-o", ms=3, label=f"AUROC {roc.auroc:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or f"edge scores against {roc.n_known} known edges", fontsize=10)
    return fig


#: The grey of each accuracy curve drawn beside CPR, in drawing order.
_CPR_ACCURACY_GREYS = {"train": "0.2", "id": "0.45", "ood": "0.7"}


def _draw_cpr_over_training(panel, curves, accuracy) -> None:
    """CPR and the random sets' CPR of each ``(name, steps, cpr, random_cpr)`` curve, with the
    ``{role: (steps, accuracy)}`` curves in grey, on one panel."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, steps, cpr, random_cpr) in enumerate(curves):
        c = colors[k % len(colors)]
        panel.plot(steps, cpr, "o-", color=c, ms=4, lw=1.5, label=f"CPR, {name}")
        panel.plot(steps, random_cpr, "--", color=c, lw=1, label=f"random CPR, {name}")
    for role, (xs, ys) in accuracy.items():
        grey = _CPR_ACCURACY_GREYS.get(role, "0.5")
        panel.plot(xs, ys, "-", color=grey, lw=0.9, label=f"{role} accuracy")
    panel.axhline(0, color="0.85", lw=0.8, zorder=0)
    panel.axhline(1, color="0.85", lw=0.8, zorder=0)
    panel.set_xlabel("step", fontsize=8)
    panel.set_ylabel("CPR / accuracy", fontsize=8)
    panel.set_title("CPR over training", fontsize=9)
    panel.legend(fontsize=6, loc="best")


def plot_faithfulness_over_checkpoints(over, *, title: str | None = None):
    """One heatmap per set of pairs of a
    :class:`~grok_circuits.analysis.edges.over_checkpoints.FaithfulnessOverCheckpoints` (rows:
    the checkpoints, columns: the fraction of edges in the circuit, colour: faithfulness, 0 to
    1), and a last panel with each set's CPR over the steps (markers; the random draws' mean
    dashed) and the run's train, ID and OOD accuracy curves (thin lines) on the same 0-1 axis.

    Returns:
        The matplotlib Figure.
    """
    names = list(over.names)
    n = len(names)
    fig, axes = plt.subplots(
        1,
        n + 1,
        figsize=(3.6 * n + 5.2, 3.9),
        gridspec_kw={"width_ratios": [1] * n + [1.3]},
        layout="constrained",
    )
    steps, fractions = list(over.steps), over.fractions
    image = None
    for ax, name in zip(axes[:n], names):
        image = ax.imshow(
            over.surface(name), aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1
        )
        ax.set_xticks(range(len(fractions)))
        ax.set_xticklabels([f"{100 * f:g}" for f in fractions], fontsize=7, rotation=90)
        ax.set_yticks(range(len(steps)))
        ax.set_yticklabels([str(s) for s in steps], fontsize=7)
        ax.set_xlabel("edges in the circuit (% of the graph)", fontsize=8)
        ax.set_ylabel("step", fontsize=8)
        ax.set_title(f"faithfulness, {name} pairs", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes[n - 1], extend="both", label="faithfulness")
    curves = [(name, steps, over.cpr[name], over.random_cpr[name]) for name in names]
    _draw_cpr_over_training(axes[n], curves, over.accuracy)
    fig.suptitle(
        title
        or f"MIB faithfulness over checkpoints ({over.method} circuit at each checkpoint, "
        f"{over.ablation} ablation)",
        fontsize=10,
    )
    return fig


def plot_mib_ablations(table, *, title: str | None = None):
    """MIB's CPR and CMD per ablation, one panel per set of pairs and measure: a bar per
    ablation and checkpoint, the random edge sets' mean as a black tick on each bar.

    Args:
        table: a DataFrame (or CSV path) with columns ``set``, ``checkpoint``, ``ablation``,
            ``cpr``, ``random cpr``, ``cmd``, ``random cmd``: the ``part == "stages"`` rows of
            ``data/mib_over_checkpoints.csv`` (``benchmarks/mib_over_checkpoints.py``).
        title: the figure's title.

    Returns:
        The matplotlib Figure.
    """
    cols = {"set", "checkpoint", "ablation", "cpr", "random cpr", "cmd", "random cmd"}
    t = read_table(table, cols, "plot_mib_ablations", "benchmarks/mib_over_checkpoints.py")
    sets = list(dict.fromkeys(t["set"]))
    stages = list(dict.fromkeys(t["checkpoint"]))
    ablations = list(dict.fromkeys(t["ablation"]))
    fig, axes = plt.subplots(
        len(sets), 2, figsize=(10, 2.8 * len(sets)), squeeze=False, layout="constrained"
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / max(len(stages), 1)
    x = np.arange(len(ablations))
    for row, name in zip(axes, sets):
        for ax, measure in zip(row, ("cpr", "cmd")):
            for j, stage in enumerate(stages):
                sub = t[(t["set"] == name) & (t["checkpoint"] == stage)].set_index("ablation")
                sub = sub.reindex(ablations)
                xs = x + (j - (len(stages) - 1) / 2) * width
                ax.bar(xs, sub[measure], width, color=colors[j % len(colors)], label=str(stage))
                ax.scatter(
                    xs,
                    sub[f"random {measure}"],
                    marker="_",
                    s=120,
                    color="black",
                    zorder=3,
                    label="random edge sets" if j == 0 else None,
                )
            ax.set_xticks(x)
            ax.set_xticklabels(ablations, fontsize=8)
            ax.set_ylim(0, 1.25)  # room for the legend above the bars
            better = "higher" if measure == "cpr" else "lower"
            ax.set_title(f"{measure.upper()}, {name} pairs ({better} is better)", fontsize=9)
            ax.legend(fontsize=7, ncol=3, loc="upper center")
    fig.suptitle(title or "MIB's CPR and CMD per ablation", fontsize=10)
    return fig


def plot_faithfulness_surface(surface, curves=None, *, title: str | None = None):
    """The faithfulness surface of each set of pairs (rows: the checkpoints, columns: the
    fraction of edges, colour: f, 0 to 1) from a table, and with ``curves`` a last panel of each
    set's CPR over the steps (the random sets' mean dashed) beside the train, ID and OOD
    accuracy: :func:`plot_faithfulness_over_checkpoints` without the run.

    Args:
        surface: a DataFrame (or CSV path) of one ablation with columns ``set``, ``step``,
            ``fraction``, ``faithfulness`` (``data/mib_surface.csv``, rows of one ablation).
        curves: optionally a DataFrame with columns ``set``, ``step``, ``cpr``, ``random cpr``
            and any of ``train acc``, ``id acc``, ``ood acc`` (the ``part == "over
            checkpoints"`` rows of ``data/mib_over_checkpoints.csv`` for the same ablation).
        title: the figure's title.

    Returns:
        The matplotlib Figure.
    """
    made_by = "benchmarks/mib_over_checkpoints.py"
    s = read_table(
        surface, {"set", "step", "fraction", "faithfulness"}, "plot_faithfulness_surface", made_by
    )
    c = None
    if curves is not None:
        c = read_table(
            curves, {"set", "step", "cpr", "random cpr"}, "plot_faithfulness_surface", made_by
        )
    names = list(dict.fromkeys(s["set"]))
    n = len(names)
    panels = n + (c is not None)
    ratios = [1] * n + [1.3] * (c is not None)
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(3.6 * n + 5.2 * (c is not None), 3.9),
        gridspec_kw={"width_ratios": ratios},
        squeeze=False,
        layout="constrained",
    )
    axes = axes[0]
    image = None
    for ax, name in zip(axes[:n], names):
        grid = s[s["set"] == name].pivot_table(
            index="step", columns="fraction", values="faithfulness"
        )
        image = ax.imshow(
            grid.to_numpy(), aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1
        )
        ax.set_xticks(range(grid.shape[1]))
        ax.set_xticklabels([f"{100 * f:g}" for f in grid.columns], fontsize=7, rotation=90)
        ax.set_yticks(range(grid.shape[0]))
        ax.set_yticklabels([str(int(v)) for v in grid.index], fontsize=7)
        ax.set_xlabel("edges in the circuit (% of the graph)", fontsize=8)
        ax.set_ylabel("step", fontsize=8)
        ax.set_title(f"faithfulness, {name} pairs", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes[n - 1], extend="both", label="faithfulness")
    if c is not None:
        curves = []
        for name in names:
            rows = c[c["set"] == name].sort_values("step")
            curves.append((name, rows["step"], rows["cpr"], rows["random cpr"]))
        acc = c.drop_duplicates("step").sort_values("step")
        accuracy = {
            role: (acc["step"], acc[f"{role} acc"])
            for role in _CPR_ACCURACY_GREYS
            if f"{role} acc" in acc.columns
        }
        _draw_cpr_over_training(axes[n], curves, accuracy)
    fig.suptitle(title or "MIB faithfulness over checkpoints", fontsize=10)
    return fig


def plot_das_over_checkpoints(table, *, title: str | None = None):
    """Distributed alignment search over training: held-out interchange accuracy (IIA) of the
    learned subspace per layer against the step (solid), the random subspaces' mean (dotted)
    and, in a second panel, the logit-lens MRR of the same variable at the same layer, with the
    run's ID accuracy in grey in both.

    Args:
        table: a DataFrame (or CSV path) with columns ``step``, ``layer``, ``iia_test``,
            ``iia_random``, ``lens_mrr`` and optionally ``id_acc`` (``data/das_bridge.csv``,
            ``benchmarks/das_bridge.py --csv``).
        title: the figure's title.

    Returns:
        The matplotlib Figure.
    """
    cols = {"step", "layer", "iia_test", "iia_random", "lens_mrr"}
    t = read_table(table, cols, "plot_das_over_checkpoints", "benchmarks/das_bridge.py --csv")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True, layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (layer, rows) in enumerate(t.sort_values("step").groupby("layer")):
        color = colors[k % len(colors)]
        axes[0].plot(
            rows["step"], rows["iia_test"], "o-", color=color, ms=4, label=f"layer {layer}"
        )
        axes[0].plot(rows["step"], rows["iia_random"], ":", color=color, lw=1)
        axes[1].plot(
            rows["step"], rows["lens_mrr"], "s--", color=color, ms=4, label=f"layer {layer}"
        )
    if "id_acc" in t.columns:
        acc = t.drop_duplicates("step").sort_values("step")
        for ax in axes:
            ax.plot(
                acc["step"], acc["id_acc"], "-", color="0.6", lw=2, zorder=0, label="ID accuracy"
            )
    axes[0].plot([], [], ":", color="0.3", label="random subspaces")
    axes[0].set_ylabel("held-out IIA / accuracy")
    axes[0].set_title("DAS: the answer follows the swapped subspace", fontsize=9)
    axes[1].set_ylabel("logit-lens MRR / accuracy")
    axes[1].set_title("logit lens: the variable is readable", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    fig.suptitle(title or "The bridge entity at r1: DAS against the logit lens", fontsize=10)
    return fig


__all__ = [
    "plot_edge_change",
    "plot_edge_circuit",
    "plot_edge_reuse",
    "plot_das_over_checkpoints",
    "plot_edge_roc",
    "plot_faithfulness",
    "plot_faithfulness_over_checkpoints",
    "plot_faithfulness_surface",
    "plot_mib_ablations",
]
