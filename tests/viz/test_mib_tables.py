"""The MIB and DAS views drawn from the benchmarks' tables: every bar, cell and point is the
table's number, and a table of the wrong shape is refused with one line."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import grok_circuits.viz as viz  # noqa: E402

ABLATIONS = ["corrupt", "zero", "mean"]


def stages() -> pd.DataFrame:
    rows = []
    for s, name in enumerate(["id", "ood"]):
        for c, stage in enumerate(["memorizing", "generalizing"]):
            for a, ablation in enumerate(ABLATIONS):
                cpr = 0.1 * (a + 1) + 0.01 * c + 0.001 * s
                rows.append(
                    {
                        "set": name,
                        "checkpoint": stage,
                        "ablation": ablation,
                        "cpr": cpr,
                        "random cpr": cpr / 4,
                        "cmd": 1 - cpr,
                        "random cmd": 1 - cpr / 4,
                    }
                )
    return pd.DataFrame(rows)


def test_mib_bars_are_the_tables_values_and_the_ticks_its_random_sets():
    table = stages()
    fig = viz.plot_mib_ablations(table)
    assert len(fig.axes) == 4  # (ID, OOD) x (CPR, CMD)
    for ax, (name, measure) in zip(
        fig.axes, [("id", "cpr"), ("id", "cmd"), ("ood", "cpr"), ("ood", "cmd")]
    ):
        heights = [p.get_height() for p in ax.patches]
        rows = table[table["set"] == name]
        want = [
            rows[(rows["checkpoint"] == c) & (rows["ablation"] == a)][measure].item()
            for c in ("memorizing", "generalizing")
            for a in ABLATIONS
        ]
        np.testing.assert_allclose(heights, want)
        ticks = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
        np.testing.assert_allclose(sorted(ticks), sorted(rows[f"random {measure}"]))


def test_the_surface_is_the_table_pivoted_and_cpr_beside_it():
    steps, fractions = [0, 100, 200], [0.001, 0.5, 1.0]
    surface = pd.DataFrame(
        [
            {"set": s, "step": t, "fraction": f, "faithfulness": i * 0.1 + j * 0.01 + k}
            for k, s in enumerate(["id", "ood"])
            for i, t in enumerate(steps)
            for j, f in enumerate(fractions)
        ]
    )
    curves = pd.DataFrame(
        {
            "set": ["id"] * 3 + ["ood"] * 3,
            "step": steps * 2,
            "cpr": [0.5, 0.6, 0.7, 0.4, 0.4, 0.4],
            "random cpr": [0.2] * 6,
            "id acc": [0.0, 0.5, 1.0] * 2,
        }
    )
    fig = viz.plot_faithfulness_surface(surface, curves)
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(image, [[i * 0.1 + j * 0.01 for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(fig.axes[1].images[0].get_array()[2, 1], 1.21)
    cpr_panel = fig.axes[2]
    np.testing.assert_allclose(cpr_panel.lines[0].get_ydata(), [0.5, 0.6, 0.7])
    assert any(line.get_label() == "id accuracy" for line in cpr_panel.lines)
    assert len(viz.plot_faithfulness_surface(surface).axes) == 2 + 1  # two surfaces, colour bar


def test_das_lines_are_the_tables_iia_and_lens_per_layer():
    table = pd.DataFrame(
        {
            "step": [0, 0, 100, 100],
            "layer": [1, 2, 1, 2],
            "iia_test": [0.1, 0.2, 0.8, 0.6],
            "iia_random": [0.01] * 4,
            "lens_mrr": [0.3, 0.4, 0.5, 0.9],
            "id_acc": [0.0, 0.0, 0.9, 0.9],
        }
    )
    fig = viz.plot_das_over_checkpoints(table)
    das, lens = fig.axes
    np.testing.assert_allclose(das.lines[0].get_ydata(), [0.1, 0.8])  # layer 1's IIA
    np.testing.assert_allclose(das.lines[2].get_ydata(), [0.2, 0.6])  # layer 2's
    np.testing.assert_allclose(lens.lines[1].get_ydata(), [0.4, 0.9])  # layer 2's MRR


def test_wrong_tables_are_refused():
    with pytest.raises(ValueError, match="lacks columns.*mib_over_checkpoints"):
        viz.plot_mib_ablations(pd.DataFrame({"set": ["id"]}))
    with pytest.raises(ValueError, match="lacks columns"):
        viz.plot_faithfulness_surface(pd.DataFrame({"step": [0]}))
    with pytest.raises(ValueError, match="lacks columns.*das_bridge"):
        viz.plot_das_over_checkpoints(pd.DataFrame({"step": [0]}))
