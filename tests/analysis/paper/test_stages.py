"""compare_stages on a short run: the checkpoints it picks from planted metrics, its traces
against independent ones, and the errors when a stage was never reached."""

import dataclasses
import warnings

import pytest
from torch.testing import assert_close

from grok_circuits.analysis import StageComparison, compare_stages, trace_bridge


def planted(run, saturated_at: int, grokked_at: int):
    """The run with metrics saying training accuracy reached 100% at ``saturated_at`` and ID
    accuracy at ``grokked_at`` (the weights are the run's own)."""
    rows = []
    for row in run.metrics:
        row = dict(row)
        row["train_inferred_acc"] = 1.0 if row["step"] >= saturated_at else 0.5
        row["test_id_acc"] = 1.0 if row["step"] >= grokked_at else 0.0
        rows.append(row)
    return dataclasses.replace(run, metrics=rows)


def test_picks_the_saturation_and_grok_checkpoints_and_traces_them(tiny_run, tiny_composition):
    steps = tiny_run.steps
    run = planted(tiny_run, saturated_at=steps[1], grokked_at=steps[-1])
    assert (run.saturation_step, run.grok_step) == (steps[1], steps[-1])
    cmp = compare_stages(run, n_examples=40)
    assert isinstance(cmp, StageComparison)
    assert (cmp.memorizing_step, cmp.generalizing_step) == (steps[1], steps[-1])
    mem = trace_bridge(tiny_run.model(steps[1]), tiny_composition, n_examples=40)
    gen = trace_bridge(tiny_run.model(steps[-1]), tiny_composition, n_examples=40)
    assert_close(cmp.memorizing.strength.scores, mem.strength.scores)
    assert_close(cmp.generalizing.strength.scores, gen.strength.scores)
    assert_close(cmp.difference, gen.strength.scores - mem.strength.scores)
    assert_close(cmp.mrr_difference, gen.lens.mrr - mem.lens.mrr)
    assert cmp.memorizing.step == steps[1] and cmp.generalizing.bridge_layer == gen.bridge_layer


def test_given_steps_snap_to_the_nearest_checkpoint(tiny_run):
    steps = tiny_run.steps
    cmp = compare_stages(
        tiny_run, memorizing=steps[1] + 1, generalizing=steps[2] - 1, n_examples=20
    )
    assert (cmp.memorizing_step, cmp.generalizing_step) == (steps[1], steps[2])


def test_a_run_that_never_grokked_raises_a_clear_error(tiny_run):
    assert tiny_run.grok_step is None  # 60 tiny steps do not grok
    with pytest.raises(ValueError, match="never grokked.*generalizing=STEP"):
        compare_stages(tiny_run, memorizing=tiny_run.steps[1])
    unsaturated = planted(tiny_run, saturated_at=10**9, grokked_at=10**9)
    with pytest.raises(ValueError, match="never reached 99% training accuracy.*memorizing=STEP"):
        compare_stages(unsaturated)


def test_the_same_checkpoint_twice_warns_and_differs_by_zero(tiny_run):
    step = tiny_run.steps[-1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cmp = compare_stages(tiny_run, memorizing=step, generalizing=step, n_examples=20)
    assert any("same checkpoint" in str(w.message) for w in caught)
    assert float(cmp.difference.abs().max()) == 0.0


def test_comparison_prints_and_plots(tiny_run):
    import matplotlib.pyplot as plt

    steps = tiny_run.steps
    cmp = compare_stages(tiny_run, memorizing=steps[1], generalizing=steps[-1], n_examples=20)
    text = repr(cmp)
    assert f"memorizing step {steps[1]}" in text and "strength change" in text
    assert cmp.to_frame().shape == tuple(cmp.difference.shape)
    plt.close(cmp.plot())


def test_the_two_stage_heatmaps_share_one_colour_range(tiny_run):
    """Planted scores: a weak memorizing trace (at most 0.2) and a strong generalizing one (up
    to 0.9). Each panel on its own range would draw both maxima in the same colour."""
    import matplotlib.pyplot as plt
    import torch

    steps = tiny_run.steps
    cmp = compare_stages(tiny_run, memorizing=steps[1], generalizing=steps[-1], n_examples=20)
    shape = cmp.memorizing.strength.scores.shape
    weak = torch.linspace(0.0, 0.2, shape.numel()).reshape(shape)
    strong = torch.linspace(0.1, 0.9, shape.numel()).reshape(shape)

    def with_scores(trace, scores):
        return dataclasses.replace(
            trace, strength=dataclasses.replace(trace.strength, scores=scores)
        )

    cmp = dataclasses.replace(
        cmp,
        memorizing=with_scores(cmp.memorizing, weak),
        generalizing=with_scores(cmp.generalizing, strong),
    )
    fig = cmp.plot()
    mem_panel, gen_panel = fig.axes[0], fig.axes[1]
    assert mem_panel.images[0].get_clim() == gen_panel.images[0].get_clim() == (0.0, 1.0)
    assert "causal strength (share of answers changed)" in [a.get_ylabel() for a in fig.axes]
    plt.close(fig)


def test_stage_labels_follow_the_metric(tiny_run):
    import matplotlib.pyplot as plt

    steps = tiny_run.steps
    cmp = compare_stages(
        tiny_run,
        memorizing=steps[1],
        generalizing=steps[-1],
        n_examples=20,
        metric="logit_difference",
    )
    assert "logit diff removed change" in repr(cmp)
    fig = cmp.plot()
    labels = [a.get_ylabel() for a in fig.axes]
    assert "share of the logit difference removed" in labels
    assert "logit diff removed: generalizing - memorizing" in labels
    assert not any("answers changed" in label for label in labels)
    plt.close(fig)
