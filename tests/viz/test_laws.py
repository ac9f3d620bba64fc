"""The phi-law and complex-reasoning figures: one panel per experiment, one line per seed, and
one clear error for a table of the wrong shape."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import grok_circuits.viz as viz  # noqa: E402


def curves():
    rows = []
    for exp, vary in (("phi", "phi"), ("entities", "n_entities")):
        for setting in (1, 2, 3):
            for seed in (0, 1):
                for step in (0, 100, 200):
                    rows.append(
                        dict(
                            experiment=exp,
                            n_entities=setting if vary == "n_entities" else 100,
                            phi=setting if vary == "phi" else 7.2,
                            seed=seed,
                            step=step,
                            epoch=step / 10,
                            train_acc=step / 200,
                            id_acc=step / 400,
                        )
                    )
    return pd.DataFrame(rows)


def test_plot_phi_law_draws_a_panel_per_experiment_and_a_line_per_seed():
    fig = viz.plot_phi_law(curves())
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.lines) == 3 * 2 * 2  # settings x seeds x (ID, train)
    assert len(viz.plot_phi_law(curves(), show_train=False).axes[0].lines) == 3 * 2


def test_plot_complex_reasoning_draws_the_rules():
    frame = pd.DataFrame(
        dict(
            seed=[0, 0, 1, 1],
            step=[0, 100, 0, 100],
            test_hard_acc=[0.3, 0.9, 0.3, 0.8],
            ood_atomic_acc=[0.1, 0.5, 0.1, 0.4],
        )
    )
    b = dict(hard_chance=1 / 3, hard_win_rate=0.5, ood_atomic_chance=0.1, ood_atomic_bracket=0.9)
    fig = viz.plot_complex_reasoning(frame, {0: b, 1: b})
    assert [len(ax.lines) for ax in fig.axes] == [2 + 4, 2 + 4]  # two seeds, two rules each


def test_wrong_tables_are_refused():
    with pytest.raises(ValueError, match="lacks columns"):
        viz.plot_phi_law(pd.DataFrame({"step": [0]}))
    with pytest.raises(ValueError, match="lacks columns"):
        viz.plot_complex_reasoning(pd.DataFrame({"step": [0]}))
