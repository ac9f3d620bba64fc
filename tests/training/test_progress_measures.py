"""Progress measures: each against an independent computation, and logged by training."""

import pytest
import torch
import torch.nn.functional as F

from grok_circuits import logit_lens, make_task, progress_measures, train
from grok_circuits.model import answer_logits, build_model, model_config
from grok_circuits.training.progress_measures import (
    ProgressMeasures,
    gradient_alignment,
    lens_mrr_at,
    middle_layer,
    softmax_collapse,
)
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
