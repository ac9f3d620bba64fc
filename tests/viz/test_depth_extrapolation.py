"""The depth-extrapolation view drawn from ``benchmarks/recurrent_depth.py``'s ``depth.csv``:
every cell is the mean over seeds of the table's number, every curve a seed's (or the mean's)
accuracies, and a table of the wrong shape is refused with one line."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import grok_circuits.viz as viz  # noqa: E402

COUNTS, HOPS, SEEDS = [1, 2, 3, 4], [2, 3, 4], [0, 1]


def planted(n: int, h: int, seed: int, kind: str) -> float:
    """A number that differs in every coordinate, so a transposed or misaligned cell shows."""
    return 0.2 * h / 4 + 0.1 * n / 4 + 0.05 * seed + (0.3 if kind == "id" else 0.0)


def depth() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"seed": s, "iterations": n, "hops": h, "kind": k, "acc": planted(n, h, s, k)}
            for s in SEEDS
            for n in COUNTS
            for h in HOPS
            for k in ("id", "ood")
        ]
    )


def panels(fig) -> list:
    """The figure's panels, without their colorbars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_cells_are_the_mean_over_seeds_with_iteration_one_at_the_bottom():
    fig = viz.plot_depth_extrapolation(depth(), k_train=2, trained_iterations=(2, 3))
    for panel, kind in zip(panels(fig)[:2], ("id", "ood")):
        image = np.asarray(panel.images[0].get_array())
        want = [[np.mean([planted(n, h, s, kind) for s in SEEDS]) for h in HOPS] for n in COUNTS]
        np.testing.assert_allclose(image, want, rtol=1e-6)
        assert [t.get_text() for t in panel.get_xticklabels()] == ["2", "3 (new)", "4 (new)"]
        (box,) = panel.patches  # the trained counts 2..3 are rows 1..2
        assert box.get_y() == pytest.approx(0.5) and box.get_height() == pytest.approx(2)


def test_overthinking_curves_are_each_seed_and_their_mean():
    fig = viz.plot_depth_extrapolation(depth())
    curves = panels(fig)[-1]
    by_label = {line.get_label(): line for line in curves.lines}
    for h in HOPS:
        mean = by_label[f"{h} hops"]
        np.testing.assert_allclose(mean.get_xdata(), COUNTS)
        want = [np.mean([planted(n, h, s, "id") for s in SEEDS]) for n in COUNTS]
        np.testing.assert_allclose(mean.get_ydata(), want)
    thin = [line for line in curves.lines if line.get_linewidth() < 1]
    assert len(thin) == len(HOPS) * len(SEEDS)
    seed1_hop3 = [planted(n, 3, 1, "id") for n in COUNTS]
    assert any(np.allclose(line.get_ydata(), seed1_hop3) for line in thin)


def test_a_table_of_the_wrong_shape_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"lacks columns \['hops'\].*recurrent_depth"):
        viz.plot_depth_extrapolation(depth().drop(columns="hops"))
    with pytest.raises(ValueError, match="no rows of kind"):
        viz.plot_depth_extrapolation(depth().assign(kind="other"))
