"""Training curves: accuracy per probe over steps, on a log-step axis (grokking happens late)."""

import matplotlib.pyplot as plt

STYLE = {
    "train": dict(color="tab:blue", label="train (inferred)"),
    "id": dict(color="tab:green", label="test ID"),
    "ood": dict(color="tab:red", label="test OOD"),
}
DEFAULT_PROBES = {"train": "train_inferred", "id": "test_id", "ood": "test_ood"}
#: Colours of the extra probes: none of them close to the key probes' blue, green and red.
EXTRA_COLORS = ("tab:purple", "tab:orange", "tab:brown", "tab:cyan", "tab:pink", "tab:olive")
#: Colours of the groups of :func:`plot_seed_curves`, far apart from one another.
SEED_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def plot_accuracy_curves(run, ax=None, *, extra_probes: tuple[str, ...] = (), title=None):
    """Train / ID / OOD accuracy of a run against the step (log axis), with the memorizing and
    generalizing steps marked.

    Args:
        run: a :class:`grok_circuits.Run`.
        ax: a matplotlib Axes to draw on (a new figure if None).
        extra_probes: other probe names to draw too (e.g. ``"ood_atomic"``), dashed, each in a
            colour of its own.

    Returns:
        The matplotlib Figure.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    steps = [max(r["step"], 1) for r in run.metrics]
    for role, probe in run.key_probes.items():
        style = dict(STYLE[role])
        if probe != DEFAULT_PROBES[role]:  # e.g. the mixed task: name the probe, not the role
            style["label"] = probe
        ax.plot(steps, run.metric(f"{probe}_acc"), **style)
    if len(extra_probes) > len(EXTRA_COLORS):
        raise ValueError(f"at most {len(EXTRA_COLORS)} extra_probes, got {len(extra_probes)}")
    for probe, color in zip(extra_probes, EXTRA_COLORS):
        ax.plot(steps, run.metric(f"{probe}_acc"), label=probe, color=color, linestyle="--")
    for step, name, style in (
        (run.saturation_step, "train ≥ 99%", ":"),
        (run.grok_step, "ID ≥ 95%", "--"),
    ):
        if step:
            ax.axvline(
                step, color="gray", linestyle=style, linewidth=1, label=f"{name} at step {step}"
            )
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step (log)")
    ax.set_ylabel("accuracy")
    ax.set_title(title or f"{run.task_name} run '{run.path.name}': accuracy during training")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_seed_curves(
    frame,
    column: str,
    ax=None,
    *,
    by: str = "model",
    seed: str = "seed",
    x: str = "step",
    title=None,
):
    """One measurement over training for several groups of seeded runs: a thin line per seed
    and a thick line for the mean over seeds, one colour per group.

    Args:
        frame: a pandas DataFrame with one row per (group, seed, step), e.g. the CSV that
            ``benchmarks/parameter_sharing.py`` writes (``pandas.read_csv``).
        column: the value to draw (e.g. ``"test_ood_acc"``).
        by, seed, x: the columns naming the group, the seed and the step.
        ax: a matplotlib Axes to draw on (a new figure if None).

    Returns:
        The matplotlib Figure.
    """
    missing = [c for c in (column, by, seed, x) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"the frame has no column(s) {missing}; its columns are {list(frame.columns)}"
        )
    groups = frame[by].nunique()
    if groups > len(SEED_COLORS):
        raise ValueError(f"at most {len(SEED_COLORS)} groups, got {groups} values of {by!r}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    for color, (group, rows) in zip(SEED_COLORS, frame.groupby(by, sort=False)):
        for _, one in rows.groupby(seed):
            ax.plot(one[x], one[column], color=color, alpha=0.35, linewidth=0.8)
        mean = rows.groupby(x)[column].mean()
        n = rows[seed].nunique()
        ax.plot(
            mean.index,
            mean.values,
            color=color,
            linewidth=2.2,
            label=f"{group} (mean of {n} seeds)",
        )
    ax.set_xlabel(x)
    ax.set_ylabel(column)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{column} by {by}")
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> None:
    """Save a figure as PNG atomically."""
    from grok_circuits.io import atomic_write_with

    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
