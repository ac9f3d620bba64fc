"""adaptive_halting: every count's output against the model run at that count, the halting rule
against a by-hand loop, and planted models whose halting count is known."""

import math

import pytest
import torch
from torch.testing import assert_close

from grok_circuits.analysis import Halting, PromptPairs, adaptive_halting
from grok_circuits.model import build_model, load_weights, model_config, model_weights
from grok_circuits.recurrence import Recurrence, iterations, iterations_of
from tests.analysis.lens.test_hops import chain_pairs, planted_model


@pytest.fixture(scope="module")
def khop_task(tiny_khop):
    return tiny_khop


def recurrent_model(task, spec: Recurrence, seed: int = 0):
    return build_model(
        model_config(task, "tiny", n_layers=spec.depth()), seed=seed, recurrence=spec
    ).eval()


def reference_log_probs(model, split, n: int) -> torch.Tensor:
    """The slow way: the whole model run once per count, read at the answer position."""
    rows = torch.arange(len(split))
    out = []
    for m in range(1, n + 1):
        with iterations(model, m), torch.no_grad():
            out.append(torch.log_softmax(model(split.tokens)[rows, split.answer_pos].float(), -1))
    return torch.stack(out)


SPECS = [
    Recurrence(core=1, iterations=2),
    Recurrence(core=2, iterations=2, inject=True),
    Recurrence(prelude=1, core=1, coda=1, iterations=3),
]


@pytest.mark.parametrize("spec", SPECS, ids=["core1", "core2-inject", "prelude-coda"])
def test_every_count_is_the_model_run_with_that_count(khop_task, spec):
    model = recurrent_model(khop_task, spec)
    split = khop_task.splits["test_id_3hop"]
    halting = adaptive_halting(model, split, max_iterations=5)
    logp = reference_log_probs(model, split, 5)
    assert torch.equal(halting.predictions, logp.argmax(-1))
    assert_close(halting.entropy, -(logp.exp() * logp).sum(-1), atol=1e-4, rtol=1e-4)
    for n in range(1, 6):  # the fixed-count accuracy is the accuracy the model has at n
        expected = (logp[n - 1].argmax(-1) == split.answers).float().mean()
        assert halting.fixed_accuracy[n - 1] == pytest.approx(float(expected))
    assert iterations_of(model) == spec.iterations  # restored


def test_the_halting_count_follows_the_rule_query_by_query(khop_task):
    model = recurrent_model(khop_task, Recurrence(core=1, iterations=2), seed=3)
    split = khop_task.splits["test_id_3hop"]
    logp = reference_log_probs(model, split, 6).double()
    kls = [
        [float((logp[n, i].exp() * (logp[n, i] - logp[n - 1, i])).sum()) for n in range(1, 6)]
        for i in range(len(split))
    ]
    flat = sorted(k for row in kls for k in row)
    # near the median, halfway across a gap wide enough that float32 falls on the same side
    m = next(j for j in range(len(flat) // 2, len(flat) - 1) if flat[j + 1] - flat[j] > 1e-4)
    threshold = (flat[m] + flat[m + 1]) / 2
    halting = adaptive_halting(model, split, max_iterations=6, kl_threshold=threshold)
    for i in range(len(split)):
        expected = next((n + 1 for n in range(1, 6) if kls[i][n - 1] < threshold), 6)
        assert int(halting.counts[i]) == expected, i
        assert int(halting.halted_predictions[i]) == int(logp[expected - 1, i].argmax())
    assert 2 < halting.mean_iterations < 6  # the median splits the queries
    right = [
        int(logp[int(halting.counts[i]) - 1, i].argmax()) == int(split.answers[i])
        for i in range(len(split))
    ]
    assert halting.accuracy == pytest.approx(sum(right) / len(right))


def test_a_core_that_adds_nothing_halts_at_the_first_count_it_may(khop_task):
    """Planted: the core block writes nothing (zero output weights), so the output after every
    iteration is the same, the KL is exactly 0, and every query halts at ``min_iterations``;
    an entropy condition no distribution over the vocabulary meets keeps them all to the end."""
    model = recurrent_model(khop_task, Recurrence(core=1, iterations=2))
    weights = model_weights(model)
    for name in weights:
        if name.endswith(("W_O", "b_O", "W_out", "b_out")):
            weights[name] = torch.zeros_like(weights[name])
    model = load_weights(model, weights)
    split = khop_task.splits["test_id"]
    halting = adaptive_halting(model, split, max_iterations=5)
    assert torch.equal(halting.kl[1:], torch.zeros(4, len(split)))
    assert halting.counts.tolist() == [2] * len(split)
    assert halting.with_threshold(min_iterations=4).counts.tolist() == [4] * len(split)
    never = halting.with_threshold(entropy_threshold=1e-9)
    assert never.counts.tolist() == [5] * len(split)
    assert halting.halt_share.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]


def test_a_chain_model_halts_on_its_answer_only_where_the_rule_lets_it():
    """Planted (the chain model of test_hops: each iteration moves the stream one entity on):
    on 3-hop queries the answer is on top after exactly 3 iterations. The distribution moves
    every iteration, so the default rule never halts early and the queries end on the 6th
    count, past the answer; a rule that halts at once halts at min_iterations."""
    model = planted_model(3, Recurrence(core=1, iterations=3))
    pairs = chain_pairs(3)
    halting = adaptive_halting(model, pairs, max_iterations=6)
    assert halting.fixed_accuracy.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert halting.best_fixed == (3, 1.0)
    assert bool((halting.kl[1:] > 0.01).all())
    assert halting.counts.tolist() == [6] * len(pairs)
    assert halting.accuracy == 0.0
    at_once = halting.with_threshold(kl_threshold=1e9)
    assert at_once.counts.tolist() == [2] * len(pairs) and at_once.accuracy == 0.0
    at_three = halting.with_threshold(kl_threshold=1e9, min_iterations=3)
    assert at_three.accuracy == 1.0 and at_three.mean_iterations == 3.0


def test_with_threshold_is_a_fresh_run_at_that_threshold(khop_task):
    model = recurrent_model(khop_task, Recurrence(core=1, iterations=2), seed=5)
    first = adaptive_halting(model, khop_task, split="test_id_3hop", max_iterations=6)
    for kl, ent in [(1e-2, None), (1e-1, 2.0), (math.inf, None)]:
        fresh = adaptive_halting(
            model,
            khop_task,
            split="test_id_3hop",
            max_iterations=6,
            kl_threshold=kl,
            entropy_threshold=ent,
        )
        again = first.with_threshold(kl_threshold=kl, entropy_threshold=ent)
        assert torch.equal(again.counts, fresh.counts)
        assert again.accuracy == fresh.accuracy
    assert first.summary()["kl_threshold"] == 5e-4
    frame = first.to_frame()
    assert list(frame.index) == list(range(1, 7))
    assert frame["halts here"].sum() == pytest.approx(1.0)
    assert "Halting(" in repr(first)


def test_the_plot_draws_the_curve_the_point_and_the_shares(khop_task):
    model = recurrent_model(khop_task, Recurrence(core=1, iterations=2))
    halting = adaptive_halting(model, khop_task, split="test_id", max_iterations=4)
    fig = halting.plot()
    ax, bars = fig.axes
    curve, point = ax.lines
    assert list(curve.get_ydata()) == pytest.approx(halting.fixed_accuracy.tolist())
    assert list(point.get_xdata()) == pytest.approx([halting.mean_iterations])
    assert list(point.get_ydata()) == pytest.approx([halting.accuracy])
    heights = [p.get_height() for p in bars.patches]
    assert heights == pytest.approx(halting.halt_share.tolist())


def test_bad_input_says_what_to_do(composition_model, tiny_composition, khop_task):
    with pytest.raises(ValueError, match="needs a recurrent-depth model"):
        adaptive_halting(composition_model, tiny_composition)
    model = recurrent_model(khop_task, Recurrence(core=1, iterations=2))
    with pytest.raises(ValueError, match="no split 'test_id_9hop'"):
        adaptive_halting(model, khop_task, split="test_id_9hop")
    with pytest.raises(ValueError, match="kl_threshold must be > 0"):
        adaptive_halting(model, khop_task, kl_threshold=0.0)
    with pytest.raises(ValueError, match="min_iterations must be between 2"):
        adaptive_halting(model, khop_task, max_iterations=3, min_iterations=4)
    with pytest.raises(ValueError, match="vocabulary"):
        adaptive_halting(model, PromptPairs(clean=[[0, 1, 999]], corrupt=[[0, 1, 2]], answers=[3]))
    assert isinstance(adaptive_halting(model, khop_task, n_examples=5), Halting)


@pytest.mark.wrong_types
def test_data_of_another_kind_is_refused_in_one_line(khop_task):
    model = recurrent_model(khop_task, Recurrence(core=1, iterations=2))
    with pytest.raises(ValueError, match="expected a Split, PromptPairs or a task"):
        adaptive_halting(model, [[1, 2, 3]])
