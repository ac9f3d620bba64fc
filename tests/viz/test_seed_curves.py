"""plot_seed_curves: a thin line per seed and the mean over seeds per group."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from grok_circuits.viz import plot_seed_curves  # noqa: E402


def test_draws_every_seed_and_the_mean_of_each_group():
    rows = [
        {"model": m, "seed": s, "step": step, "acc": acc}
        for m, per_seed in {"a": [[0.0, 0.2], [0.4, 0.6]], "b": [[1.0, 1.0], [0.0, 0.5]]}.items()
        for s, accs in enumerate(per_seed)
        for step, acc in zip((0, 100), accs)
    ]
    fig = plot_seed_curves(pd.DataFrame(rows), "acc")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 6  # 2 seeds + 1 mean, for each of 2 groups
    means = {ln.get_label(): list(ln.get_ydata()) for ln in lines if "mean" in ln.get_label()}
    assert means == {"a (mean of 2 seeds)": [0.2, 0.4], "b (mean of 2 seeds)": [0.5, 0.75]}


def test_names_a_missing_column():
    with pytest.raises(ValueError, match="no column"):
        plot_seed_curves(pd.DataFrame({"model": [], "seed": [], "step": []}), "acc")
