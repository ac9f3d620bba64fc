"""Progress measures over training (:mod:`grok_circuits.training.progress_measures`), under the
accuracy curves: what moves before test accuracy does.

What is drawn comes from the measure registry (:data:`~grok_circuits.training.progress_measures.
MEASURES`): every registered measure with an ``axis`` whose columns the run's metrics hold, on
that axis's panel, with the label, color and line style it was registered with. A measure added
with :func:`~grok_circuits.training.progress_measures.register_measure` is drawn with no change
here."""

import matplotlib.pyplot as plt

from grok_circuits.training.progress_measures import MEASURES
from grok_circuits.viz._common import step_axis
from grok_circuits.viz.training import plot_accuracy_curves

#: Each panel's y label and scale, top to bottom.
PANELS = {
    "unit": ("share / cosine / MRR", "linear"),
    "log": ("training loss (log)", "log"),
}


def _drawn(keys) -> list[tuple]:
    """``(spec, column)`` for each registered measure's column among ``keys`` that is drawn."""
    return [
        (spec, column)
        for spec in MEASURES.values()
        if spec.axis is not None
        for column in spec.columns_in(keys)
    ]


def measure_columns(run) -> list[str]:
    """The progress-measure columns of the run's metrics that the plot draws, in the registry's
    order (none for runs trained before they were logged)."""
    keys = run.metrics[-1] if run.metrics else {}
    found = [column for _, column in _drawn(keys)]
    # the weight norm was logged before the other measures: alone it does not count
    return [*found, "weight_norm"] if found and "weight_norm" in keys else found


def plot_progress_measures(run, axes=None):
    """Two panels against the step (log axis, step 0 at 0): the measures in [-1, 1] (built in:
    softmax collapse, gradient-weight alignment, the middle-layer logit-lens MRR of each lens
    target), and the positive ones on a log scale (built in: the training loss on inferred vs
    atomic facts) with the weight norm. Every registered measure the run logged is drawn on its
    panel.

    Args:
        run: a :class:`grok_circuits.runs.Run` whose metrics hold the measures.
        axes: two matplotlib Axes (a new figure if None).

    Returns:
        The matplotlib Figure.
    """
    keys = run.metrics[-1] if run.metrics else {}
    drawn = _drawn(keys)
    if not drawn:
        raise ValueError(
            f"run {run.path} logged no progress measures (trained before they existed); compute "
            "them from its checkpoints with grok_circuits.training.progress_measures"
        )
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    fig = axes[0].figure
    panels = dict(zip(PANELS, axes))
    steps = [r["step"] for r in run.metrics]
    for spec in MEASURES.values():
        if spec.axis is None:  # logged, not drawn
            continue
        columns = [c for s, c in drawn if s is spec]
        for column, color in zip(columns, spec.colors(len(columns))):
            style = {"color": color} if color is not None else {}
            if spec.linestyle != "-":
                style["linestyle"] = spec.linestyle
            panels[spec.axis].plot(steps, run.metric(column), label=spec.label_of(column), **style)
    top, bottom = axes
    # shares and MRRs are >= 0; the cosine may dip below: show it only as far as it goes
    low = min([0.0] + [min(run.metric(c)) for s, c in drawn if s.axis == "unit"])
    top.set_ylim(max(-1.02, low - 0.05), 1.02)
    top.set_title("progress measures on training examples (mid-layer lens)", fontsize=10)
    for name, ax in panels.items():
        ylabel, scale = PANELS[name]
        if scale == "log":
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
    if "weight_norm" in keys:
        twin = bottom.twinx()
        twin.plot(steps, run.metric("weight_norm"), color="black", linewidth=1, label="weight norm")
        twin.set_ylabel("weight norm")
        twin.legend(loc="upper right", fontsize=8)
    for ax in axes:
        step_axis(ax, steps)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    top.set_xlabel("")
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
