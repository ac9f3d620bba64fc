"""faithfulness_over_checkpoints against faithfulness called by hand at each checkpoint, and
its CPR, CMD, surface and accuracy columns against values computed by hand."""

import math

import matplotlib
import numpy as np
import pytest
import torch

from grok_circuits import edge_attribution, faithfulness, make_pairs
from grok_circuits.analysis import FaithfulnessOverCheckpoints, faithfulness_over_checkpoints
from grok_circuits.analysis.edges.faithfulness import Faithfulness

matplotlib.use("Agg")

GRID = (0.05, 0.2, 0.5, 1.0)


@pytest.fixture(scope="module")
def measured(tiny_run):
    task = tiny_run.task
    sets = {
        "id": make_pairs(task, "h", "test_id", n_examples=16, seed=0),
        "ood": make_pairs(task, "h", "test_ood", n_examples=16, seed=0),
    }
    steps = tiny_run.steps[-2:]
    over = faithfulness_over_checkpoints(
        tiny_run, sets, steps=steps, fractions=GRID, n_random=3, ablation="zero", progress=False
    )
    return over, sets, steps


def test_each_checkpoint_is_faithfulness_of_that_checkpoints_eap_scores_by_hand(measured, tiny_run):
    over, sets, steps = measured
    assert over.steps == tuple(steps) and over.names == ("id", "ood")
    for i, step in enumerate(steps):
        model = tiny_run.model(step)
        for name, pairs in sets.items():
            scores = edge_attribution(model, pairs, method="eap")
            ref = faithfulness(
                model, pairs, scores, fractions=GRID, n_random=3, ablation="zero",
                completeness=False,
            )  # fmt: skip
            got = over.results[name][i]
            torch.testing.assert_close(got.faithfulness, ref.faithfulness)
            torch.testing.assert_close(got.random_faithfulness, ref.random_faithfulness)
            assert got.cpr == pytest.approx(ref.cpr) and got.cmd == pytest.approx(ref.cmd)
            assert over.cpr[name][i] == pytest.approx(ref.cpr)
            assert over.random_cpr[name][i] == pytest.approx(ref.random_cpr.mean())
            np.testing.assert_allclose(over.surface(name)[i], ref.faithfulness.double().numpy())


def test_the_accuracy_columns_are_the_runs_metrics_at_each_step(measured, tiny_run):
    over, _, steps = measured
    curves = tiny_run.to_frame()
    probes = tiny_run.key_probes
    frame = over.to_frame()
    assert set(over.accuracy) == {"train", "id", "ood"}
    for step in steps:
        for role in ("train", "id", "ood"):
            expected = curves.loc[step, f"{probes[role]}_acc"]
            assert frame.loc[("id", step), f"{role} acc"] == pytest.approx(expected)
    s = over.summary()
    assert s["id cpr last"] == pytest.approx(over.cpr["id"][-1])
    assert s["ood step of max cpr"] == steps[int(np.argmax(over.cpr["ood"]))]
    fig = over.plot()
    assert len(fig.axes) == 4  # two surfaces, their colour bar, the CPR panel
    with pytest.raises(ValueError, match="without ax"):
        over.plot(fig.axes[0])


def _planted(curve, grid):
    k = len(grid)
    f = torch.tensor(curve, dtype=torch.float32)
    return Faithfulness(
        sizes=torch.arange(k),
        n_edges=100,
        faithfulness=f,
        completeness=torch.full((k,), math.nan),
        random_faithfulness=torch.zeros(k, 2),
        random_completeness=torch.full((k, 2), math.nan),
        full_metric=1.0,
        empty_metric=0.0,
        ablation="corrupt",
        positions=True,
        seed=0,
        grid=tuple(grid),
    )


def test_cpr_and_cmd_of_planted_curves_are_the_trapezoids_by_hand():
    grid = (0.0, 0.5, 1.0)
    curves = [(0.0, 1.0, 1.0), (0.0, 0.5, 1.0), (0.0, 1.5, 1.0)]
    over = FaithfulnessOverCheckpoints(
        steps=(0, 10, 20),
        results={"id": tuple(_planted(c, grid) for c in curves)},
        method="eap",
        ablation="corrupt",
        accuracy={"id": ((0, 20), (0.0, 1.0))},
    )
    # 0.5 * (0 + 1) / 2 + 0.5 * (1 + 1) / 2 = 0.75; then 0.5; then 0.5 * 1.5 / 2 + 0.5 * 2.5 / 2
    np.testing.assert_allclose(over.cpr["id"], [0.75, 0.5, 1.0])
    # |1 - f|: (1, 0, 0) -> 0.25; (1, 0.5, 0) -> 0.25 + 0.125 = 0.5; (1, 0.5, 0) -> 0.5
    np.testing.assert_allclose(over.cmd["id"], [0.25, 0.5, 0.5])
    assert over.accuracy_at("id", 9) == 0.0 and over.accuracy_at("id", 11) == 1.0
    assert math.isnan(over.accuracy_at("ood", 0))
    assert over.summary()["id step of max cpr"] == 20


@pytest.mark.wrong_types
def test_bad_data_is_refused_in_one_line(tiny_run):
    with pytest.raises(ValueError, match="empty mapping"):
        faithfulness_over_checkpoints(tiny_run, {}, progress=False)
    with pytest.raises(ValueError, match="data must be PromptPairs"):
        faithfulness_over_checkpoints(tiny_run, 3, progress=False)
