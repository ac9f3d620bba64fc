"""A sweep's results: the steps to memorize and to generalize against a swept parameter."""

import matplotlib.pyplot as plt

STAGES = {
    "memorize_step": dict(color="tab:blue", label="memorize (train acc >= 0.99)"),
    "generalize_step": dict(color="tab:green", label="generalize (ID acc >= 0.95)"),
}


def plot_sweep(frame, x: str, ax=None):
    """Steps to memorize and to generalize against ``x`` (e.g. ``"phi"``): one dot per trial,
    the mean over seeds as a line. Trials that never reached a stage are drawn as an open marker
    at their last step, so a sweep that did not grok shows as such.

    Args:
        frame: :meth:`grok_circuits.sweeps.Sweep.to_frame` (columns ``x``, ``memorize_step``,
            ``generalize_step``, ``last_step``).
        x: the swept column for the horizontal axis.
        ax: a matplotlib Axes (a new figure if None).

    Returns:
        The matplotlib Figure.
    """
    missing = {x, "memorize_step", "generalize_step", "last_step"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"plot_sweep: the table lacks {sorted(missing)}; pass Sweep.to_frame() of a sweep "
            f"that varies {x!r} and has trained"
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    frame = frame.sort_values(x)
    for column, style in STAGES.items():
        reached = frame[frame[column].notna()]
        ax.scatter(reached[x], reached[column].astype(float), color=style["color"], s=18)
        never = frame[frame[column].isna()]
        if len(never):
            ax.scatter(
                never[x],
                never["last_step"],
                facecolors="none",
                edgecolors=style["color"],
                s=30,
                label=f"{column}: not reached (last step)",
            )
        mean = reached.groupby(x)[column].mean()
        ax.plot(mean.index, mean.values, color=style["color"], label=style["label"])
    ax.set_xlabel(x)
    ax.set_ylabel("step")
    ax.set_title(f"steps to memorize and to generalize against {x}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["plot_sweep"]
