"""Counterfactual inputs checked against the knowledge graph by hand, the paper's metrics on
hand-built logits, and bridge tracing against its parts and over a run's checkpoints."""

import gc
import weakref

import pytest
import torch
from torch.testing import assert_close

from grok_circuits.analysis import (
    BridgeTrace,
    BridgeTraceOverTime,
    ReasoningTrace,
    causal_trace,
    logit_difference,
    logit_lens,
    make_counterfactuals,
    prediction_changed,
    top1_predictions,
    trace_bridge,
    trace_bridge_over_time,
    trace_counterfactuals,
    trace_reasoning,
)


# ----------------------------------------------------------------------------- counterfactuals
def fact_dict(task, splits=("id_atomic",)):
    """(head token, relation token) -> tail token, from the atomic facts."""
    out = {}
    for name in splits:
        s = task.splits[name]
        for (h, r), t in zip(s.tokens.tolist(), s.answers.tolist()):
            out[(h, r)] = t
    return out


@pytest.mark.parametrize("swap", ["h", "r1", "r2"])
def test_composition_swaps_follow_the_knowledge_graph(tiny_composition, swap):
    facts = fact_dict(tiny_composition)
    cf = make_counterfactuals(tiny_composition, swap, n_examples=60, seed=3)
    pos = tiny_composition.positions[swap]
    assert len(cf) == 60 and cf.position == pos
    assert cf.position_names == ("h", "r1", "r2")
    changed = (cf.clean != cf.corrupt).nonzero()[:, 1]
    assert torch.equal(changed, torch.full((len(cf),), pos))  # exactly one token, the swapped one
    v = tiny_composition.vocab
    kinds = v.entity_ids if swap == "h" else v.relation_ids
    for (h, r1, r2), clean_answer, answer in zip(
        cf.corrupt.tolist(), cf.clean_answers.tolist(), cf.corrupt_answers.tolist()
    ):
        assert [h, r1, r2][pos] in kinds  # same type
        bridge = facts[(h, r1)]  # both hops are ID facts (KeyError otherwise)
        assert facts[(bridge, r2)] == answer != clean_answer
    split = tiny_composition.splits["train_inferred"]
    assert torch.equal(cf.clean, split.tokens[cf.index])
    assert torch.equal(cf.meta["bridge"], split.meta["bridge"][cf.index])


def test_counterfactuals_are_seeded(tiny_composition):
    a = make_counterfactuals(tiny_composition, "h", n_examples=40, seed=0)
    b = make_counterfactuals(tiny_composition, "h", n_examples=40, seed=0)
    c = make_counterfactuals(tiny_composition, "h", n_examples=40, seed=1)
    assert torch.equal(a.corrupt, b.corrupt) and torch.equal(a.index, b.index)
    assert not torch.equal(a.corrupt, c.corrupt)


@pytest.mark.parametrize("swap", ["e1", "e2", "attr"])
def test_comparison_swaps_change_the_label(tiny_comparison, swap):
    v = tiny_comparison.vocab
    values = {}
    for name in ("id_atomic", "ood_atomic"):
        s = tiny_comparison.splits[name]
        for (e, a), val in zip(s.tokens.tolist(), s.answers.tolist()):
            values[(e, a)] = val
    id_facts = set(fact_dict(tiny_comparison))
    cf = make_counterfactuals(tiny_comparison, swap, seed=0)
    assert len(cf) > 0
    for (attr, q, e1, mask, e2), clean_answer, answer in zip(
        cf.corrupt.tolist(), cf.clean_answers.tolist(), cf.corrupt_answers.tolist()
    ):
        assert (q, mask) == (v.query_id, v.mask_id) and e1 != e2
        assert (e1, attr) in id_facts and (e2, attr) in id_facts
        a = attr - v.attribute_offset
        label = (values[(e1, attr)] > values[(e2, attr)]) - (
            values[(e1, attr)] < values[(e2, attr)]
        )
        assert answer == v.label_id(a, label + 1) != clean_answer


def test_counterfactual_errors_name_the_problem(tiny_composition, tiny_comparison):
    with pytest.raises(ValueError, match="not a composition swap"):
        make_counterfactuals(tiny_composition, "e1")
    with pytest.raises(ValueError, match="inferred"):
        make_counterfactuals(tiny_composition, "h", "id_atomic")
    with pytest.raises(ValueError, match="no split"):
        make_counterfactuals(tiny_comparison, "e1", "nope")


def test_metrics_on_hand_built_logits():
    logits = torch.zeros(3, 2, 5)
    answer_pos = torch.tensor([1, 1, 0])
    logits[0, 1, 2] = 1.0  # predicts 2
    logits[1, 1, 4] = 1.0  # predicts 4
    logits[2, 0, 3] = 2.0  # predicts 3
    logits[2, 0, 1] = 0.5
    changed = prediction_changed(answer_pos, torch.tensor([2, 0, 3]))
    assert changed(logits).tolist() == [0.0, 1.0, 0.0]
    assert float(
        prediction_changed(answer_pos, torch.tensor([2, 0, 3]), False)(logits)
    ) == pytest.approx(1 / 3)
    diff = logit_difference(answer_pos, torch.tensor([2, 4, 3]), torch.tensor([0, 0, 1]), True)
    assert diff(logits).tolist() == [1.0, 1.0, 1.5]
    assert float(
        logit_difference(answer_pos, torch.tensor([2, 4, 3]), torch.tensor([0, 0, 1]))(logits)
    ) == pytest.approx(3.5 / 3)


def test_strength_is_the_fraction_of_changed_predictions(composition_model, tiny_composition):
    """trace_counterfactuals(strength) against a direct count with a per-example causal trace."""
    cf = make_counterfactuals(tiny_composition, "h", n_examples=50, seed=0)
    trace = trace_counterfactuals(composition_model, cf)
    clean_top = top1_predictions(composition_model, cf.clean, cf.answer_pos)
    with torch.no_grad():
        logits = composition_model(cf.clean)[torch.arange(len(cf)), cf.answer_pos]
    assert torch.equal(clean_top, logits.argmax(-1))

    def preds(all_logits):
        return all_logits[torch.arange(len(cf)), cf.answer_pos].argmax(-1).float()

    raw = causal_trace(
        composition_model, cf.clean, cf.corrupt, preds, direction="noise", per_example=True
    )
    expected = (raw.per_example != clean_top.float()).float().mean(-1)
    assert_close(trace.scores, expected)
    assert trace.pos_labels == ("h", "r1", "r2") and trace.baseline == 0.0
    # swapping h leaves the r1 and r2 embeddings identical in both runs: patching them at
    # layer 0 cannot change a prediction
    assert trace.scores[0, 1] == 0 and trace.scores[0, 2] == 0


# ----------------------------------------------------------------------------- bridge tracing
def test_bridge_trace_is_its_parts(composition_model, tiny_composition):
    bt = trace_bridge(composition_model, tiny_composition, n_examples=50, seed=0)
    assert isinstance(bt, BridgeTrace)
    cf = make_counterfactuals(tiny_composition, "h", n_examples=50, seed=0)
    pos = tiny_composition.positions
    bridge = logit_lens(composition_model, cf.clean, cf.meta["bridge"], pos["r1"])
    r2 = logit_lens(composition_model, cf.clean, cf.clean[:, pos["r2"]], pos["r2"])
    answer = logit_lens(composition_model, cf.clean, cf.clean_answers, cf.answer_pos)
    assert_close(bt.bridge_mrr, bridge.mrr)
    assert_close(bt.r2_mrr, r2.mrr)
    assert_close(bt.answer_mrr, answer.mrr)
    assert_close(bt.strength.scores, trace_counterfactuals(composition_model, cf).scores)
    assert bt.n_examples == 50 and bt.swap == "h"
    assert bt.bridge_mrr.shape == (composition_model.cfg.n_layers + 1,)


def test_bridge_layer_is_the_first_layer_over_the_threshold(composition_model, tiny_composition):
    bt = trace_bridge(composition_model, tiny_composition, n_examples=50)
    mrr = bt.bridge_mrr
    at_max = trace_bridge(
        composition_model, tiny_composition, n_examples=50, threshold=float(mrr.max())
    )
    assert at_max.bridge_layer == int(torch.nonzero(mrr >= mrr.max())[0])
    never = trace_bridge(composition_model, tiny_composition, n_examples=50, threshold=1.0)
    assert (never.bridge_layer is None) == bool((mrr < 1.0).all())
    with pytest.raises(ValueError, match="threshold"):
        trace_bridge(composition_model, tiny_composition, threshold=0.0)


def test_bridge_trace_prints_and_plots(composition_model, tiny_composition):
    import matplotlib.pyplot as plt

    bt = trace_bridge(composition_model, tiny_composition, n_examples=30)
    text = repr(bt)
    assert "bridge_layer" in text and "MRR bridge@r1" in text and "strength r1" in text
    plt.close(bt.plot())


def test_comparison_trace_reads_the_values(comparison_model, tiny_comparison):
    rt = trace_reasoning(comparison_model, tiny_comparison, n_examples=40)
    assert type(rt) is ReasoningTrace and rt.swap == "e1"
    cf = make_counterfactuals(tiny_comparison, "e1", n_examples=40)
    v1 = logit_lens(
        comparison_model,
        cf.clean,
        cf.meta["value1"] + tiny_comparison.vocab.value_offset,
        tiny_comparison.positions["e1"],
    )
    assert_close(rt.mrr("value1@e1"), v1.mrr)
    assert rt.strength.scores.shape == (comparison_model.cfg.n_layers, 5)
    with pytest.raises(ValueError, match="composition"):
        trace_bridge(comparison_model, tiny_comparison)


def test_trace_bridge_needs_a_task_for_a_model(composition_model):
    with pytest.raises(ValueError, match="pass the task"):
        trace_bridge(composition_model)


# ----------------------------------------------------------------------------- over a run
def test_run_trace_equals_the_trace_of_each_checkpoint(tiny_run, tiny_composition):
    steps = tiny_run.steps
    over = trace_bridge_over_time(tiny_run, n_examples=40)
    assert isinstance(over, BridgeTraceOverTime)
    assert over.steps == tuple(steps) and over.bridge_mrr.shape == (len(steps), 3)
    assert over.strength.shape == (len(steps), 2, 3)
    for i in (0, len(steps) - 1):
        one = trace_bridge(tiny_run.model(steps[i]), tiny_composition, n_examples=40)
        assert_close(over.bridge_mrr[i], one.bridge_mrr)
        assert_close(over.r2_mrr[i], one.r2_mrr)
        assert_close(over.strength[i], one.strength.scores)
        assert over.bridge_layer[i] == one.bridge_layer
    import matplotlib.pyplot as plt

    assert "bridge_layer" in repr(over)
    plt.close(over.plot())


def test_run_trace_snaps_steps_and_holds_one_model_at_a_time(tiny_run, monkeypatch):
    live: list[weakref.ref] = []
    most_alive = []
    original = type(tiny_run).model

    def tracked(self, step=None, device="auto"):
        gc.collect()
        most_alive.append(sum(r() is not None for r in live))
        model = original(self, step, device="cpu")
        live.append(weakref.ref(model))
        return model

    monkeypatch.setattr(type(tiny_run), "model", tracked)
    steps = tiny_run.steps
    over = trace_bridge_over_time(
        tiny_run, n_examples=20, steps=[steps[1] + 1, steps[-1], steps[-1] - 1]
    )
    assert over.steps == (steps[1], steps[-1])
    assert len(live) == 2 and max(most_alive) == 0  # the previous model was freed before loading


# ----------------------------------------------------------------------------- one metric
def test_logit_difference_is_the_share_of_the_swap_removed(composition_model, tiny_composition):
    """metric="logit_difference" is the share of the clean-minus-corrupt logit difference a
    patch removes (0 = no effect, 1 = the whole swap), as find_circuit scores it; checked
    against the raw logit differences of a causal trace, and labelled so in table and plot."""
    import matplotlib.pyplot as plt

    cf = make_counterfactuals(tiny_composition, "h", n_examples=50, seed=0)
    rt = trace_reasoning(composition_model, cf, metric="logit_difference")
    raw = causal_trace(
        composition_model,
        cf.clean,
        cf.corrupt,
        logit_difference(cf.answer_pos, cf.clean_answers, cf.corrupt_answers),
    )
    assert raw.baseline != raw.source
    share = (raw.scores - raw.baseline) / (raw.source - raw.baseline)
    assert_close(rt.strength.scores, share)
    assert (rt.strength.baseline, rt.strength.source) == (0.0, 1.0)
    assert_close(rt.strength.per_example.mean(-1), rt.strength.scores)
    # the embedding of the swapped h is the whole corrupt run; r1's and r2's change nothing
    assert rt.strength.scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert rt.strength.scores[0, 1] == 0 and rt.strength.scores[0, 2] == 0
    frame = rt.to_frame()
    assert "logit diff removed h" in frame.columns
    assert not any(c.startswith("strength") for c in frame.columns)
    assert "logit diff removed peak" in rt.summary()
    fig = rt.plot()
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "share of the logit difference removed" in labels
    assert not any("answers changed" in label for label in labels)
    plt.close(fig)


def test_strength_keeps_its_label(composition_model, tiny_composition):
    import matplotlib.pyplot as plt

    rt = trace_reasoning(composition_model, tiny_composition, n_examples=30)
    assert rt.strength.metric == "strength" and "strength peak" in rt.summary()
    fig = rt.plot()
    assert "causal strength (share of answers changed)" in [ax.get_ylabel() for ax in fig.axes]
    plt.close(fig)


def test_logit_difference_refuses_pairs_without_effect(composition_model, tiny_composition):
    """Clean equals corrupt: the share of a zero effect is 0/0, refused as find_circuit does."""
    from grok_circuits import PromptPairs

    split = tiny_composition.splits["train_inferred"].sample(20, 0)
    pairs = PromptPairs.from_split(split)
    with pytest.raises(ValueError, match="there is no effect to measure"):
        trace_reasoning(composition_model, pairs, metric="logit_difference")
