"""Progress measures over training (:mod:`grok_circuits.training.progress_measures`), under the
accuracy curves: what moves before test accuracy does."""

import matplotlib.pyplot as plt

from grok_circuits.viz.training import plot_accuracy_curves

#: Measures in [-1, 1] drawn together (a run may lack some).
SHARES = {
    "softmax_collapse": dict(color="tab:red", label="softmax collapse (share of train)"),
    "grad_alignment": dict(color="tab:gray", label="cos(-grad, weights)"),
}
LENS_COLORS = ("tab:purple", "tab:orange", "tab:brown", "tab:cyan", "tab:pink", "tab:olive")
LOSSES = {
    "train_loss_inferred": dict(color="tab:blue", label="train loss, inferred facts"),
    "train_loss_atomic": dict(color="tab:cyan", label="train loss, atomic facts"),
}


def measure_columns(run) -> list[str]:
    """The progress-measure columns the run's metrics hold (none for runs trained before they
    were logged)."""
    keys = run.metrics[-1] if run.metrics else {}
    lens = sorted(k for k in keys if k.startswith("lens_mid_"))
    found = [k for k in (*SHARES, *lens, *LOSSES) if k in keys]
    # the weight norm was logged before the other measures: alone it does not count
    return [*found, "weight_norm"] if found and "weight_norm" in keys else found


def plot_progress_measures(run, axes=None):
    """Two panels against the step (log axis): the measures in [-1, 1] (softmax collapse,
    gradient-weight alignment, the middle-layer logit-lens MRR of each lens target), and the
    training loss on inferred vs atomic facts (log) with the weight norm.

    Args:
        run: a :class:`grok_circuits.Run` whose metrics hold the measures.
        axes: two matplotlib Axes (a new figure if None).

    Returns:
        The matplotlib Figure.
    """
    columns = measure_columns(run)
    if not columns:
        raise ValueError(
            f"run {run.path} logged no progress measures (trained before they existed); compute "
            "them from its checkpoints with grok_circuits.training.progress_measures"
        )
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    fig = axes[0].figure
    steps = [max(r["step"], 1) for r in run.metrics]
    top, bottom = axes
    lens = [c for c in columns if c.startswith("lens_mid_")]
    for col in columns:
        if col in SHARES:
            top.plot(steps, run.metric(col), **SHARES[col])
    for col, color in zip(lens, LENS_COLORS):
        name = col.removeprefix("lens_mid_").removesuffix("_mrr")
        top.plot(steps, run.metric(col), color=color, linestyle="--", label=f"lens MRR {name}")
    # shares and MRRs are >= 0; the cosine may dip below: show it only as far as it goes
    low = min([0.0] + [min(run.metric(c)) for c in columns if c in SHARES or c in lens])
    top.set_ylim(max(-1.02, low - 0.05), 1.02)
    top.set_ylabel("share / cosine / MRR")
    top.set_title("progress measures on training examples (mid-layer lens)", fontsize=10)
    for col in columns:
        if col in LOSSES:
            bottom.plot(steps, run.metric(col), **LOSSES[col])
    bottom.set_yscale("log")
    bottom.set_ylabel("training loss (log)")
    if "weight_norm" in columns:
        twin = bottom.twinx()
        twin.plot(steps, run.metric("weight_norm"), color="black", linewidth=1, label="weight norm")
        twin.set_ylabel("weight norm")
        twin.legend(loc="upper right", fontsize=8)
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    bottom.set_xlabel("step (log)")
    fig.tight_layout()
    return fig


def plot_training_report(run):
    """The accuracy curves, with the progress measures under them when the run logged any (the
    figure ``grok-circuits report`` saves)."""
    if not measure_columns(run):
        return plot_accuracy_curves(run)
    fig, axes = plt.subplots(
        3, 1, figsize=(7, 9.5), sharex=True, gridspec_kw={"height_ratios": [1.2, 1, 1]}
    )
    plot_accuracy_curves(run, ax=axes[0])
    plot_progress_measures(run, axes=axes[1:])
    axes[0].set_xlabel("")
    fig.tight_layout()
    return fig
