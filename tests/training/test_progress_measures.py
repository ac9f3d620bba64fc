"""Progress measures: each against an independent computation, logged by training, and the
registry through which a measure of one's own is logged and drawn."""

import re

import pytest
import torch
import torch.nn.functional as F

from grok_circuits import load_run, logit_lens, make_task, train
from grok_circuits.model import answer_logits, build_model, model_config
from grok_circuits.training.progress_measures import (
    MEASURE_SIZE,
    MEASURES,
    ProgressMeasures,
    gradient_alignment,
    lens_mrr_at,
    middle_layer,
    progress_measures,
    register_measure,
    softmax_collapse,
)
from grok_circuits.viz.measures import measure_columns, plot_progress_measures
from tests.helpers import tiny_train_config


def test_softmax_collapse_counts_rows_rounded_to_one_in_float32():
    logits = torch.zeros(4, 10)
    targets = torch.tensor([0, 1, 2, 3])
    # 1 - p = 9 exp(-margin) (to first order); float32 rounds p to 1 below 2**-25 = 3e-8
    logits[0, 0] = 120.0  # 9 exp(-120): rounds to 1
    logits[1, 1] = 20.0  # 9 exp(-20) = 1.9e-8: rounds to 1
    logits[2, 2] = 10.0  # 9 exp(-10) = 4e-4: stays below 1
    logits[3, 0] = 120.0  # collapsed, but onto the wrong class
    expected = [
        float(torch.tensor(1.0) / (1 + 9 * torch.exp(torch.tensor(-m, dtype=torch.float64))))
        for m in (120.0, 20.0, 10.0)
    ]
    assert [e == 1.0 for e in torch.tensor(expected, dtype=torch.float32).tolist()] == [
        True,
        True,
        False,
    ]
    assert softmax_collapse(logits, targets) == 2 / 4
    assert softmax_collapse(logits.double(), targets) == 2 / 4  # measured in float32 regardless


def test_gradient_alignment_is_the_cosine_of_minus_g_and_w():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 4, generator=g), torch.randn(7, generator=g)]
    grads = [torch.randn(p.shape, generator=g) for p in params]
    flat = lambda xs: torch.cat([x.flatten() for x in xs])  # noqa: E731
    expected = F.cosine_similarity(-flat(grads), flat(params), dim=0)
    assert gradient_alignment(grads, params) == pytest.approx(float(expected), abs=1e-6)
    assert gradient_alignment([-p for p in params], params) == pytest.approx(1.0)  # planted
    assert gradient_alignment(params, params) == pytest.approx(-1.0)


@pytest.fixture(scope="module")
def tiny_model(tiny_composition):
    return build_model(model_config(tiny_composition, "tiny"), seed=0)


def test_lens_mrr_at_is_one_row_of_logit_lens(tiny_composition, tiny_model):
    s = tiny_composition.splits["train_inferred"].sample(64)
    r1 = tiny_composition.positions["r1"]
    full = logit_lens(tiny_model, s.tokens, s.meta["bridge"], r1)
    pos = torch.full((len(s),), r1)
    for layer in range(tiny_model.cfg.n_layers + 1):
        got = lens_mrr_at(tiny_model, s.tokens, s.meta["bridge"], pos, layer)
        assert got == pytest.approx(float(full.mrr[layer]), abs=1e-6)
    assert middle_layer(4) == 2 and middle_layer(1) is None


def test_measures_split_the_training_loss_by_kind(tiny_composition, tiny_model):
    out = progress_measures(tiny_model, tiny_composition, size=10_000)  # every training row
    train = tiny_composition.train
    with torch.no_grad():
        logits = answer_logits(tiny_model, train.tokens, train.answer_pos)
    inferred = train.answer_pos == 2  # composition: atomic facts are 2-token prompts
    loss = lambda m: float(F.cross_entropy(logits[m], train.answers[m]))  # noqa: E731
    assert out["train_loss"] == pytest.approx(loss(slice(None)), rel=1e-5)
    assert out["train_loss_inferred"] == pytest.approx(loss(inferred), rel=1e-5)
    assert out["train_loss_atomic"] == pytest.approx(loss(~inferred), rel=1e-5)
    # the gradient is that of the training loss on the same rows
    params = list(tiny_model.parameters())
    tiny_model.zero_grad()
    F.cross_entropy(
        answer_logits(tiny_model, train.tokens, train.answer_pos), train.answers
    ).backward()
    grads = [p.grad.clone() for p in params]
    tiny_model.zero_grad(set_to_none=True)
    assert out["grad_alignment"] == pytest.approx(gradient_alignment(grads, params), abs=1e-5)
    assert {"lens_mid_bridge@r1_mrr", "softmax_collapse"} <= set(out)


def test_measures_touch_neither_grads_nor_random_state(tiny_composition, tiny_model):
    measures = ProgressMeasures(tiny_composition, size=64)
    p = next(tiny_model.parameters())
    p.grad = torch.ones_like(p)
    rng = torch.get_rng_state()
    measures(tiny_model)
    assert torch.equal(p.grad, torch.ones_like(p)) and torch.equal(torch.get_rng_state(), rng)
    p.grad = None


def test_a_task_without_atomic_facts_or_a_middle_layer_skips_those():
    task = make_task("modular", preset="tutorial")
    model = build_model(model_config(task, "tiny"), seed=0)  # one layer, no middle
    out = progress_measures(model, task, size=64)
    assert "train_loss_inferred" in out and "train_loss_atomic" not in out
    assert not any(k.startswith("lens_mid_") for k in out)


def test_training_logs_the_measures_at_every_evaluation(tiny_composition, tmp_path):
    run = train(
        tiny_composition, tiny_train_config(max_steps=40), out=tmp_path / "r", progress=False
    )
    for row in run.metrics:
        assert 0 <= row["softmax_collapse"] <= 1 and -1 <= row["grad_alignment"] <= 1
        assert 0 < row["lens_mid_bridge@r1_mrr"] <= 1
    from grok_circuits.viz import plot_training_report

    fig = plot_training_report(run)
    assert len(fig.axes) == 4  # accuracy, measures, losses and the weight norm's twin axis


# ----------------------------------------------------------------------------- the registry
@pytest.fixture
def measures_restored():
    """The registry as it was, whatever a test registers."""
    before = dict(MEASURES)
    yield
    MEASURES.clear()
    MEASURES.update(before)


def answer_logit_std(model, data):
    """A user's measure: the spread of the answer logits on the measure sample."""
    return float(data.logits.std())


def test_a_registered_measure_is_logged_and_drawn(tiny_composition, tmp_path, measures_restored):
    register_measure("answer_logit_std", answer_logit_std, label="std of answer logits", axis="log")
    run = train(
        tiny_composition, tiny_train_config(max_steps=40), out=tmp_path / "r", progress=False
    )
    assert all("answer_logit_std" in row for row in run.metrics)
    # the logged value is the std of the last checkpoint's logits on the fixed sample
    model = run.model(run.steps[-1]).eval()
    sample = tiny_composition.train.sample(MEASURE_SIZE, seed=0)
    with torch.no_grad():
        expected = float(answer_logits(model, sample.tokens, sample.answer_pos).std())
    assert run.metrics[-1]["answer_logit_std"] == pytest.approx(expected, rel=1e-5)
    # drawn on the panel it asked for, beside the built-in losses
    fig = plot_progress_measures(run)
    labels = {
        ax.get_ylabel(): [t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes
    }
    assert "std of answer logits" in labels["training loss (log)"]
    assert "train loss, inferred facts" in labels["training loss (log)"]
    assert "std of answer logits" not in labels["share / cosine / MRR"]
    line = next(ln for ln in fig.axes[1].lines if ln.get_label() == "std of answer logits")
    assert list(line.get_ydata()) == run.metric("answer_logit_std")


def test_a_measure_with_a_value_per_key_logs_one_column_each(tiny_composition, measures_restored):
    def share_of_answer(model, data):  # the share of the sample whose answer is each of 2 tokens
        answers = data.sample.answers
        return {str(t): float((answers == t).float().mean()) for t in answers.unique()[:2].tolist()}

    register_measure(
        "answer_share", share_of_answer, label="answer {}", axis="unit", columns="answer_{}_share"
    )
    out = ProgressMeasures(tiny_composition, size=64)(
        build_model(model_config(tiny_composition, "tiny"), seed=0)
    )
    sample = tiny_composition.train.sample(64, seed=0)
    first = sample.answers.unique()[0]
    assert out[f"answer_{int(first)}_share"] == float((sample.answers == first).float().mean())
    assert MEASURES["answer_share"].columns_in(out) == sorted(
        k for k in out if k.startswith("answer_") and k.endswith("_share")
    )
    assert len(MEASURES["answer_share"].columns_in(out)) == 2
    assert MEASURES["answer_share"].label_of(f"answer_{int(first)}_share") == f"answer {int(first)}"
    with pytest.raises(ValueError, match="'train_loss' is not one of measure 'answer_share'"):
        MEASURES["answer_share"].key_of("train_loss")


def test_the_plot_draws_every_logged_measure_of_a_shipped_run():
    """The measure columns in the recorded run are all drawn, except the total training loss
    (its two parts are)."""
    run = load_run("tests/data/cross_version/tl3")
    loop = {"step", "time", "lr", "weight_norm"}
    probes = {k for k in run.metrics[-1] if k.endswith("_acc") or k.endswith("_loss")}
    logged = set(run.metrics[-1]) - loop - (probes - {"train_loss"})
    assert set(measure_columns(run)) == logged - {"train_loss"} | {"weight_norm"}
    drawn = {line.get_label() for ax in plot_progress_measures(run).axes for line in ax.get_lines()}
    assert len(drawn) == len(measure_columns(run))


@pytest.mark.parametrize(
    "name, fn, kw, match",
    [
        ("softmax_collapse", answer_logit_std, {}, "already registered; choose another name"),
        ("lr", answer_logit_std, {}, "column the training loop writes"),
        ("", answer_logit_std, {}, "non-empty string name"),
        pytest.param("m", 3.0, {}, "must be callable", marks=pytest.mark.wrong_types),
        pytest.param(
            "m",
            answer_logit_std,
            {"axis": "linear"},
            "axis of progress measure 'm' must be",
            marks=pytest.mark.wrong_types,
        ),
        ("m", answer_logit_std, {"label": ""}, "non-empty string label"),
        ("m", answer_logit_std, {"columns": "m_share"}, "one '{}' for the key"),
    ],
)
def test_bad_registrations_are_one_line_errors(name, fn, kw, match, measures_restored):
    kw = {"label": "a label", "axis": "unit", **kw}
    with pytest.raises(ValueError, match=re.escape(match)) as err:
        register_measure(name, fn, **kw)
    assert "\n" not in str(err.value)


def test_a_measure_returning_the_wrong_type_names_itself(tiny_composition, measures_restored):
    register_measure("bad", lambda model, data: "high", label="bad", axis="unit")
    model = build_model(model_config(tiny_composition, "tiny"), seed=0)
    with pytest.raises(TypeError, match="progress measure 'bad' returned str"):
        ProgressMeasures(tiny_composition, size=8)(model)
    assert model.training  # restored on the way out
