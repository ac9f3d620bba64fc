"""Figures that say what they show: checked on the figure objects (axis scales and limits,
labels, titles, legend text), never on pixels."""

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

from grok_circuits import find_circuit, load_run
from grok_circuits.analysis.lens.fourier import FourierSpectrum
from grok_circuits.analysis.over_checkpoints import OverCheckpoints
from grok_circuits.analysis.paper.analyze import Analysis
from grok_circuits.model import build_model, model_config
from grok_circuits.viz import plot_training_report

SHIPPED = Path(__file__).parents[2] / "data" / "runs"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------- curves.png
def test_curves_draw_step_0_at_0_and_keep_the_log_axis_for_the_rest():
    """The shipped run logs steps 0, 100, 200, ...: drawn at 1 on a log axis, the one segment
    from step 0 to 100 took two of the panel's 3.4 decades."""
    run = load_run(SHIPPED / "composition")
    fig = plot_training_report(run)
    ax = fig.axes[0]
    first = run.metrics[1]["step"]
    assert run.metrics[0]["step"] == 0 and first == 100
    assert ax.get_lines()[0].get_xdata()[0] == 0
    assert ax.get_xscale() == "symlog" and ax.get_xlim()[0] == 0
    # the share of the panel's width between step 0 and the first evaluation
    x0, x1 = (
        ax.transAxes.inverted().transform(ax.transData.transform((s, 0)))[0] for s in (0, 100)
    )
    assert x0 == pytest.approx(0.0, abs=1e-9) and 0 < x1 < 0.2
    assert ax.get_xlabel() == "step (log; linear from 0 to 100)"


def test_curves_shade_the_anneal_and_mark_the_weight_decay_change_of_a_scheduled_run():
    run = load_run(SHIPPED / "composition")  # trained at a constant rate: nothing to mark
    plain = plot_training_report(run).axes[0]
    assert not any("annealed" in p.get_label() for p in plain.patches)
    assert not any("weight decay" in ln.get_label() for ln in plain.get_lines())
    schedule = dict(lr_decay=(700, 1100, 0.2), weight_decay_after=(300, 3.0))
    cfg = dataclasses.replace(run.train_cfg, **schedule)
    ax = plot_training_report(dataclasses.replace(run, train_cfg=cfg)).axes[0]
    spans = {p.get_label(): p for p in ax.patches}
    span = spans["learning rate annealed to 0.2x (steps 700-1,100)"]
    if hasattr(span, "get_width"):  # a Rectangle (matplotlib >= 3.9)
        xs = [span.get_x(), span.get_x() + span.get_width()]
    else:  # a Polygon
        xs = [x for x, _ in span.get_xy()]
    assert (min(xs), max(xs)) == (700, 1100)
    line = {ln.get_label(): ln for ln in ax.get_lines()}["weight decay 3x after step 300"]
    assert list(line.get_xdata()) == [300, 300]


def test_curves_give_each_probe_its_size():
    """The sizes the training loop evaluated: each probe sampled to at most eval_size."""
    run = load_run(SHIPPED / "composition")
    sizes = {k: len(v) for k, v in run.task.probes(run.train_cfg.eval_size).items()}
    assert sizes["test_ood"] == 27 and sizes["train_inferred"] == run.train_cfg.eval_size
    legend = [t.get_text() for t in plot_training_report(run).axes[0].get_legend().get_texts()]
    assert f"test OOD (n={sizes['test_ood']})" in legend
    assert f"test ID (n={sizes['test_id']})" in legend
    assert f"train (inferred) (n={sizes['train_inferred']})" in legend


def test_curves_mark_the_grokking_measure():
    """The shipped composition run: train first >= 0.95 at step 300 (0.973, then 0.993) with ID
    0.149, ID first >= 0.95 at step 2100: a 7x delay."""
    run = load_run(SHIPPED / "composition")
    ax = plot_training_report(run).axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    mem = "memorized (train ≥ 95%, held) at step 300: ID 0.15"
    grok = "ID ≥ 95% at step 2100: delay 7.0x"
    assert mem in lines and grok in lines
    assert list(lines[mem].get_xdata()) == [300, 300]
    assert list(lines[grok].get_xdata()) == [2100, 2100]


# ----------------------------------------------------------------------------- fourier_last.png
def test_the_fourier_title_says_what_the_key_frequencies_hold():
    """Planted energies 4, 3, 1, 1, 1: half needs the two largest, which hold 70%."""
    spectrum = FourierSpectrum(
        p=11, frequencies=(1, 2, 3, 4, 5), energy=torch.tensor([1.0, 4.0, 1.0, 3.0, 1.0])
    )
    assert spectrum.key_frequencies == (2, 4)
    title = spectrum.plot().axes[0].get_title()
    assert "2 key frequencies (the fewest holding ≥ 50%) hold 70%" in title
    assert "[2, 4] (the fewest holding >= 50%) hold 70.0% of the energy" in repr(spectrum)


# ----------------------------------------------------------------------------- over_checkpoints
def test_a_share_over_checkpoints_is_drawn_on_a_0_1_axis_named_by_its_getter():
    """Chance-level noise (0.10-0.12) fitted to its own range fills the panel like a rise."""
    over = OverCheckpoints(steps=(0, 100, 200), results=({"a": 0.10}, {"a": 0.12}, {"a": 0.11}))

    def accuracy(result):
        return result["a"]

    ax = over.plot(get=accuracy).axes[0]
    assert ax.get_ylabel() == "accuracy" and ax.get_ylim() == (-0.02, 1.02)
    assert ax.get_title() == "accuracy over 3 checkpoints"
    ax = over.plot(get="a").axes[0]
    assert ax.get_ylabel() == "a" and ax.get_ylim() == (-0.02, 1.02)
    ax = over.plot(get=lambda r: r["a"]).axes[0]
    assert ax.get_ylabel() == "value"


def test_values_outside_0_1_keep_an_axis_fitted_to_them():
    over = OverCheckpoints(steps=(0, 100), results=(3.0, 5.0))
    low, high = over.plot().axes[0].get_ylim()
    assert 2.5 < low < 3.0 and 5.0 < high < 5.5


# ----------------------------------------------------------------------------- circuit.png
def test_the_analysis_circuit_figure_names_its_checkpoint(tiny_composition):
    model = build_model(model_config(tiny_composition, "tiny"), seed=1).eval()
    circuit = find_circuit(model, tiny_composition, n_examples=20, top_k=2)
    analysis = Analysis(
        Path("run"),
        "composition",
        {"memorizing": None, "generalizing": None, "last": 1400},
        {"circuit": circuit},
    )
    fig = analysis.figures()["circuit"]
    assert "step 1400" in fig._suptitle.get_text()
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "causal strength (share of answers changed)" in labels
    assert "component score (strength)" in labels
