"""Training curves, on a log-step axis where grokking happens late: a run's accuracy per probe
(:func:`plot_accuracy_curves`), a measurement over seeded runs (:func:`plot_seed_curves`), and the
benchmarks' phi-law and complex-reasoning figures; :func:`save_figure` writes any of them."""

import matplotlib.pyplot as plt

from grok_circuits.viz._common import step_axis

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


def probe_size(run, probe: str) -> int:
    """How many examples each accuracy of ``probe`` in the run's metrics was measured on: the
    probe's size, at most the run's ``eval_size`` (the fixed sample the training loop, or a
    series of released checkpoints, evaluates)."""
    size = getattr(run, "eval_size", None) or run.train_cfg.eval_size
    return min(len(run.task.splits[probe]), size)


def plot_accuracy_curves(run, ax=None, *, extra_probes: tuple[str, ...] = (), title=None):
    """Train / ID / OOD accuracy of a run against the step (log axis, step 0 at 0: see
    :func:`~grok_circuits.viz._common.step_axis`). The steps of the grokking measure
    (``run.grokking``) are marked: memorization, with ID accuracy there, and ID ≥ 95%, with the
    delay between them; so are the run's schedules, where it has them (the learning rate's
    anneal shaded, the weight decay's change as a line). The legend gives each probe's number of
    examples (a probe of 27 examples moves in steps of 4%).

    Args:
        run: a :class:`grok_circuits.runs.Run`.
        ax: a matplotlib Axes to draw on (a new figure if None).
        extra_probes: other probe names to draw too (e.g. ``"ood_atomic"``), dashed, each in a
            colour of its own.
        title: the axes' title (default: the task and the run folder's name).

    Returns:
        The matplotlib Figure.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    steps = [r["step"] for r in run.metrics]
    for role, probe in run.key_probes.items():
        style = dict(STYLE[role])
        if probe != DEFAULT_PROBES[role]:  # e.g. the mixed task: name the probe, not the role
            style["label"] = probe
        style["label"] += f" (n={probe_size(run, probe)})"
        ax.plot(steps, run.metric(f"{probe}_acc"), **style)
    if len(extra_probes) > len(EXTRA_COLORS):
        raise ValueError(f"at most {len(EXTRA_COLORS)} extra_probes, got {len(extra_probes)}")
    for probe, color in zip(extra_probes, EXTRA_COLORS):
        label = f"{probe} (n={probe_size(run, probe)})"
        ax.plot(steps, run.metric(f"{probe}_acc"), label=label, color=color, linestyle="--")
    _mark_schedule(ax, run.train_cfg)
    g = run.grokking
    mem, grok, delay = g["memorization_step"], g["grok_step"], g["grokking_delay"]
    if mem:
        label = f"memorized (train ≥ 95%, held) at step {mem}: ID {g['id_at_memorization']:.2f}"
        ax.axvline(mem, color="gray", linestyle=":", linewidth=1, label=label)
    if grok:
        label = f"ID ≥ 95% at step {grok}" + (f": delay {delay:.1f}x" if delay else "")
        ax.axvline(grok, color="gray", linestyle="--", linewidth=1, label=label)
    step_axis(ax, steps)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(title or f"{run.task_name} run '{run.path.name}': accuracy during training")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", fontsize=8)
    fig.tight_layout()
    return fig


def _mark_schedule(ax, cfg) -> None:
    """Shade the learning rate's anneal and mark the weight decay's change, where the run's
    config schedules them (the composition tutorial preset does): ID accuracy's last rise comes
    with the anneal, and a reader should see that it is the schedule's."""
    if cfg.lr_decay is not None:
        start, end, factor = cfg.lr_decay
        label = f"learning rate annealed to {factor:g}x (steps {start:,}-{end:,})"
        ax.axvspan(start, end, color="tab:purple", alpha=0.08, label=label)
    if cfg.weight_decay_after is not None:
        step, factor = cfg.weight_decay_after
        label = f"weight decay {factor:g}x after step {step:,}"
        ax.axvline(step, color="tab:brown", linestyle="-.", linewidth=1, label=label)


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
        title: the axes' title (default: ``"<column> by <by>"``).

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


def _log_axis(x):
    """``x`` with its zeros moved to half its smallest positive value, for a log axis."""
    positive = x[x > 0]
    return x.clip(lower=positive.min() / 2 if len(positive) else 1)


#: Panels of :func:`plot_phi_law`: experiment -> (the setting that varies, x axis, title).
PHI_LAW_PANELS = {
    "phi": ("phi", "step", "ID accuracy by phi (100 entities, out-degree 10)"),
    "entities": ("n_entities", "epoch", "ID accuracy by entities (fixed phi)"),
    "phi_d20": ("phi", "step", "ID accuracy by phi (out-degree 20)"),
}


def plot_phi_law(curves, *, show_train: bool = True):
    """The paper's Fig. 2 from a phi-law table (``benchmarks/phi_law.py``): ID accuracy over
    training for each phi (against steps) and for each number of entities at one phi (against
    epochs), one line per seed, with training accuracy dotted.

    Args:
        curves: a DataFrame (or CSV path) with columns ``experiment``, ``n_entities``, ``phi``,
            ``seed``, ``step``, ``epoch``, ``train_acc``, ``id_acc``; one panel per experiment
            present (``"phi"``, ``"entities"``, ``"phi_d20"``).
        show_train: also draw training accuracy (dotted, same colour).

    Returns:
        The matplotlib Figure.
    """
    import pandas as pd

    frame = pd.read_csv(curves) if not isinstance(curves, pd.DataFrame) else curves
    missing = {"experiment", "n_entities", "phi", "seed", "step", "epoch", "train_acc", "id_acc"}
    missing -= set(frame.columns)
    if missing:
        raise ValueError(
            f"plot_phi_law: the table lacks columns {sorted(missing)}; pass the curves CSV that "
            "benchmarks/phi_law.py writes (e.g. data/phi_law_curves.csv)"
        )
    panels = [e for e in PHI_LAW_PANELS if e in set(frame["experiment"])]
    if not panels:
        raise ValueError(f"plot_phi_law: no experiment among {list(PHI_LAW_PANELS)} in the table")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, exp in zip(axes[0], panels):
        vary, x, title = PHI_LAW_PANELS[exp]
        group = frame[frame["experiment"] == exp]
        settings = sorted(group[vary].unique())
        cmap = plt.get_cmap("viridis")
        for i, setting in enumerate(settings):
            color = cmap(i / max(len(settings) - 1, 1))
            rows = group[group[vary] == setting]
            for j, (_seed, run) in enumerate(rows.groupby("seed")):
                run = run.sort_values("step")
                xs = _log_axis(run[x])
                label = f"{vary} = {setting:g}" if j == 0 else None
                style = "-" if j == 0 else "--"
                ax.plot(xs, run["id_acc"], style, color=color, label=label)
                if show_train:
                    ax.plot(xs, run["train_acc"], ":", color=color, linewidth=1)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"{x} (log)")
        ax.set_ylabel("accuracy")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(
        "ID accuracy (solid: first seed, dashed: second)"
        + (", training accuracy dotted" if show_train else ""),
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_complex_reasoning(curves, baselines: dict | None = None):
    """Accuracy on the hard test set and on the OOD values over training
    (``benchmarks/complex_reasoning.py``), one line per seed, against the reference rules.

    Args:
        curves: a DataFrame (or CSV path) with ``seed``, ``step``, ``test_hard_acc`` and
            ``ood_atomic_acc`` columns.
        baselines: ``{seed: complex_baselines(task)}``: chance and the non-chaining rule are
            drawn on the hard-set panel, chance and the chained interval's middle on the
            OOD-value panel (dashed, one per seed).

    Returns:
        The matplotlib Figure.
    """
    import pandas as pd

    frame = pd.read_csv(curves) if not isinstance(curves, pd.DataFrame) else curves
    missing = {"seed", "step", "test_hard_acc", "ood_atomic_acc"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"plot_complex_reasoning: the table lacks columns {sorted(missing)}; pass the CSV "
            "that benchmarks/complex_reasoning.py writes (data/complex_reasoning.csv)"
        )
    baselines = baselines or {}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = (
        (
            "test_hard_acc",
            "hard test set (OOD x OOD, chaining needed)",
            (
                ("hard_chance", "chance", "gray"),
                ("hard_win_rate", "win-rate rule (no chaining)", "tab:orange"),
            ),
        ),
        (
            "ood_atomic_acc",
            "OOD attribute values (never stated)",
            (
                ("ood_atomic_chance", "chance", "gray"),
                ("ood_atomic_bracket", "middle of the chained interval", "tab:orange"),
            ),
        ),
    )
    for ax, (col, title, refs) in zip(axes, panels):
        for j, (seed, run) in enumerate(frame.groupby("seed")):
            run = run.sort_values("step")
            ax.plot(
                _log_axis(run["step"]),
                run[col],
                "-" if j == 0 else "--",
                color="tab:blue",
                label=f"model, seed {seed}",
            )
        for j, (seed, b) in enumerate(sorted(baselines.items())):
            for key, name, color in refs:
                ax.axhline(
                    b[key],
                    color=color,
                    linestyle="-" if j == 0 else "--",
                    linewidth=1,
                    label=f"{name}, seed {seed}",
                )
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step (log)")
        ax.set_ylabel("accuracy")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
