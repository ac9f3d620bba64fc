import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from grok_circuits import accuracy, accuracy_by, build_model, make_task
from grok_circuits.tasks import value_gap
from grok_circuits.training.loop import evaluate
from tests.analysis.conftest import tiny_cfg


@pytest.fixture(scope="module")
def says_attr0_lt(tiny_comparison):
    """Planted: a random model whose unembedding bias makes it answer ``<attr_0_lt>`` to
    everything, so it is right exactly on the attribute-0 examples with value1 < value2."""
    model = build_model(tiny_cfg(tiny_comparison), seed=5).eval()
    with torch.no_grad():
        model.unembed.b_U[tiny_comparison.vocab.label_id(0, 0)] += 1e4
    return model


def _one_by_one(model, split):
    """The slow reference: one forward pass per example, prediction read off by hand."""
    hits = []
    with torch.no_grad():
        for i in range(len(split)):
            logits = model(split.tokens[i : i + 1])[0, int(split.answer_pos[i])]
            hits.append(bool(logits.argmax() == split.answers[i]))
    return hits


def test_matches_the_planted_answers_and_a_per_example_reference(says_attr0_lt, tiny_comparison):
    split = tiny_comparison.splits["test_id"]
    v1, v2 = split.meta["value1"].tolist(), split.meta["value2"].tolist()
    planted = [a == 0 and x < y for a, x, y in zip(split.meta["attribute"].tolist(), v1, v2)]
    hits = _one_by_one(says_attr0_lt, split)
    assert hits == planted
    expected: dict[int, list[bool]] = {}
    for h, a, b in zip(hits, v1, v2):
        expected.setdefault(abs(a - b), []).append(h)

    result = accuracy_by(says_attr0_lt, split, value_gap, batch_size=7)

    assert result.by == "value_gap"
    assert result.groups == tuple(sorted(expected))
    assert result.counts == tuple(len(expected[g]) for g in result.groups)
    for g, acc in zip(result.groups, result.accuracy):
        assert acc == pytest.approx(sum(expected[g]) / len(expected[g]))
    # The overall accuracy is the probe accuracy that training logs.
    assert result.accuracy[0] == 0.0  # equal values never answer "<"
    assert 0 < result.overall < 1
    assert result.overall == pytest.approx(evaluate(says_attr0_lt, {"p": split})["p_acc"])
    assert list(result.to_frame()["n"]) == list(result.counts)


def test_groups_stay_aligned_with_their_examples(says_attr0_lt, tiny_comparison):
    # Group each example by whether the model gets it right; the groups must come out at
    # exactly 0 and 1, which fails if batching or sorting shuffles the labels.
    split = tiny_comparison.splits["train_inferred"]
    correct = torch.tensor(_one_by_one(says_attr0_lt, split)).long()
    assert 0 < correct.sum() < len(split)
    result = accuracy_by(says_attr0_lt, split, correct, batch_size=5)
    assert result.groups == (0, 1)
    assert result.accuracy == (0.0, 1.0)
    assert result.counts == (int((correct == 0).sum()), int(correct.sum()))


def test_meta_field_and_callable_groupings(composition_model, tiny_composition):
    split = tiny_composition.splits["test_id"]
    by_name = accuracy_by(composition_model, split, "bridge")
    by_fn = accuracy_by(composition_model, split, lambda s: s.meta["bridge"])
    assert by_name.groups == tuple(sorted(set(split.meta["bridge"].tolist())))
    assert (by_fn.groups, by_fn.accuracy, by_fn.counts) == (
        by_name.groups,
        by_name.accuracy,
        by_name.counts,
    )
    assert by_fn.by == "<lambda>"


def test_restores_training_mode(comparison_model, tiny_comparison):
    comparison_model.train()
    try:
        accuracy_by(comparison_model, tiny_comparison.splits["test_id"], value_gap)
        assert comparison_model.training
    finally:
        comparison_model.eval()


def test_bad_groupings_say_what_would_work(
    comparison_model, composition_model, tiny_comparison, tiny_composition
):
    split = tiny_comparison.splits["test_id"]
    with pytest.raises(ValueError, match="no meta field 'bridge'.*'value1'"):
        accuracy_by(comparison_model, split, "bridge")
    with pytest.raises(ValueError, match=rf"shape \({len(split)},\); got \(3,\)"):
        accuracy_by(comparison_model, split, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="value_gap needs a comparison split"):
        value_gap(tiny_composition.splits["test_id"])


def test_a_split_of_another_task_is_one_clear_error(tiny_composition):
    """A modular-arithmetic model given composition's split: token ids past its vocabulary
    raised a raw IndexError from inside TransformerLens."""
    modular = make_task("modular", preset=None, p=7)
    model = build_model(tiny_cfg(modular), seed=0).eval()
    split = tiny_composition.splits["test_id"]
    assert int(split.tokens.max()) >= model.cfg.d_vocab
    for call in (lambda: accuracy(model, split), lambda: accuracy_by(model, split, "bridge")):
        with pytest.raises(ValueError, match="this split was built for another model or task"):
            call()
    assert 0 <= accuracy(model, modular.splits["test_id"]) <= 1


def test_plot_draws_one_line_per_result(comparison_model, tiny_comparison):
    ids = accuracy_by(comparison_model, tiny_comparison.splits["test_id"], value_gap)
    ood = accuracy_by(comparison_model, tiny_comparison.splits["test_ood"], value_gap)
    fig = ids.plot(label="ID", chance=1 / 3)
    ood.plot(fig.axes[0], label="OOD")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["ID", "chance", "OOD"]
    assert list(lines[2].get_ydata()) == list(ood.accuracy)
    matplotlib.pyplot.close(fig)
