"""Circuit finding: strengths that are known by construction, planted constant components, and
selection rules counted by hand."""

import copy

import matplotlib
import pytest
import torch

import grok_circuits.tasks.mixed  # noqa: F401  (registers "mixed")
from grok_circuits.analysis import make_counterfactuals
from grok_circuits.analysis.circuits.find import (
    DEFAULT_THRESHOLD,
    METHODS,
    Circuit,
    find_circuit,
    register_circuit_method,
    select_components,
)
from grok_circuits.analysis.components import Component, all_components
from grok_circuits.model import build_model, model_config
from grok_circuits.tasks import PromptPairs, make_task
from grok_circuits.training.loop import answer_logits
from tests.helpers import TINY_MIXED

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def trained(tiny_run):
    """The shared 100-step tiny composition run (tests/analysis/conftest.py)."""
    return tiny_run.model(device="cpu")


def test_state_strengths_known_by_construction(trained, tiny_composition):
    """Noising the embedding of the swapped token is running the corrupt input, so its strength
    is how often the corrupt input changes the prediction; states before it cannot change."""
    c = find_circuit(trained, tiny_composition, n_examples=120, seed=2, top_k=2)
    assert c.swaps == ("h", "r1", "r2")
    assert c.state_scores.shape == (3, 2, 3) and c.head_scores.shape == (3, 2, 2)
    assert c.mlp_scores.shape == (3, 2, 3)
    rows = []
    for k, swap in enumerate(c.swaps):
        p = tiny_composition.positions[swap]
        cf = make_counterfactuals(tiny_composition, swap, n_examples=120, seed=2)
        assert c.n_traced[k] == len(cf)
        rows.append(cf.index)
        with torch.no_grad():
            corrupt = answer_logits(trained, cf.corrupt, cf.answer_pos).argmax(-1)
            clean = answer_logits(trained, cf.clean, cf.answer_pos).argmax(-1)
        flips = (corrupt != clean).float().mean().item()
        assert c.state_scores[k, 0, p].item() == pytest.approx(flips)
        assert torch.all(c.state_scores[k, :, :p] == 0)
        assert torch.all(c.mlp_scores[k, :, :p] == 0)
    assert c.state_scores.max() > 0.3  # the model's answers do depend on its input
    examples = tiny_composition.splits["train_inferred"].select(torch.unique(torch.cat(rows)))
    with torch.no_grad():
        pred = answer_logits(trained, examples.tokens, examples.answer_pos).argmax(-1)
    assert c.n_examples == len(examples)
    assert c.clean_accuracy == pytest.approx((pred == examples.answers).float().mean().item())


def test_logit_difference_is_normalised_to_the_whole_swap(trained, tiny_composition):
    c = find_circuit(trained, tiny_composition, n_examples=60, metric="logit_difference")
    for k, swap in enumerate(c.swaps):
        p = tiny_composition.positions[swap]
        assert c.state_scores[k, 0, p].item() == pytest.approx(1.0, abs=1e-4)
        assert torch.all(c.state_scores[k, :, :p].abs() < 1e-6)


@pytest.fixture(scope="module")
def planted(trained):
    """L1H0 and MLP0 write a constant whatever the input (W_V = 0, W_out = 0)."""
    m = copy.deepcopy(trained)
    with torch.no_grad():
        m.blocks[1].attn.W_V[0] = 0.0
        m.blocks[0].mlp.W_out.zero_()
    return m


def test_constant_components_score_zero(planted, tiny_composition):
    for method in ("patching", "ablation"):
        c = find_circuit(planted, tiny_composition, n_examples=100, threshold=1e-9, method=method)
        assert c.scores[Component(1, 0)] == 0 and c.scores[Component(0)] == 0
        assert Component(1, 0) not in c and "MLP0" not in c
        # the control: components that do read the input can score something
        assert max(abs(c.score(x)) for x in ("L0H0", "L0H1", "L1H1", "MLP1")) > 0
        assert set(c.components) == {x for x, s in c.scores.items() if s >= 1e-9}


def test_selection_counted_by_hand():
    a, b, m0, m1 = Component(0, 0), Component(0, 1), Component(0), Component(1)
    scores = {m1: 0.5, a: 0.2, b: 0.5, m0: 0.05}
    assert select_components(scores, top_k=2) == (b, m1)  # tie at 0.5: computation order
    assert select_components(scores, top_k=3) == (a, b, m1)
    assert select_components(scores, top_k=9) == (a, b, m0, m1)
    assert select_components(scores, top_k=0) == ()
    assert select_components(scores, threshold=0.2) == (a, b, m1)
    assert select_components(scores, threshold=0.6) == ()
    with_nan = {a: float("nan"), m1: 0.0}
    assert select_components(with_nan, top_k=1) == (m1,)
    assert select_components(with_nan, threshold=0.0) == (m1,)
    with pytest.raises(ValueError, match="pass threshold= or top_k="):
        select_components(scores)


def test_uniform_signature_and_result_objects(trained, tiny_composition):
    for name in METHODS:
        c = find_circuit(
            trained,
            tiny_composition,
            split="train_inferred",
            n_examples=60,
            top_k=2,
            seed=1,
            method=name,
        )
        assert isinstance(c, Circuit) and len(c) == 2 and c.top_k == 2
        ranked = sorted(c.scores.values(), reverse=True)
        assert min(c.scores[x] for x in c.components) >= ranked[1]
        assert set(c.scores) == set(all_components(trained))
        frame = c.to_frame()
        assert len(frame) == 6 and frame["in_circuit"].sum() == 2
        assert str(c.components[0]) in str(c)
        again = c.select(threshold=0.0)
        assert again.threshold == 0.0 and len(again) == sum(s >= 0 for s in c.scores.values())
        fig = c.plot()
        assert len(fig.axes) >= 2  # a heat map and its colour bar (and the graph, if patching)
        plt.close(fig)
        assert c.method == name
    default = find_circuit(trained, tiny_composition, n_examples=30, method="ablation")
    assert default.threshold == DEFAULT_THRESHOLD and default.top_k is None


def test_mixed_task_needs_a_subtask(tmp_path):
    task = make_task("mixed", preset=None, **TINY_MIXED)
    model = build_model(model_config(task, "tiny"), seed=0).eval()
    with pytest.raises(ValueError, match="subtask="):
        find_circuit(model, task)
    c = find_circuit(model, task, subtask="comparison", n_examples=40, top_k=1)
    assert c.task == "comparison" and c.swaps == ("e1", "e2", "attr")
    assert c.state_scores.shape == (3, 2, 5)
    # the swapped token's embedding, noised, is the whole swap: never weaker than any other state
    for k, swap in enumerate(c.swaps):
        p = c.positions[swap]
        assert torch.all(c.state_scores[k, :, :p] == 0) and c.state_scores[k, 0, p] > 0
    c = find_circuit(model, task, subtask="composition", n_examples=40, top_k=1)
    assert c.task == "composition" and c.state_scores.shape == (3, 2, 3)


@pytest.mark.parametrize("metric", ["strength", "logit_difference"])
def test_pairs_whose_corrupt_prompt_is_the_clean_one_are_refused(trained, tiny_composition, metric):
    """Nothing is swapped, so nothing can be traced: every score was 0 (strength) or NaN (the
    normalised logit difference), and top_k returned the first components as a "circuit".
    Ablation needs no counterfactual, so such pairs serve it."""
    pairs = PromptPairs.from_split(tiny_composition.splits["train_inferred"].sample(20, 0))
    with pytest.raises(ValueError) as caught:
        find_circuit(trained, pairs, top_k=3, metric=metric)
    message = str(caught.value)
    assert message.startswith("running the corrupt prompts instead of the clean ones leaves the ")
    assert "use pairs whose corrupt prompts change the answer" in message
    assert "\n" not in message
    assert len(find_circuit(trained, pairs, top_k=3, method="ablation")) == 3


@pytest.mark.wrong_types
def test_bad_arguments(trained, tiny_composition):
    with pytest.raises(ValueError, match="not both"):
        find_circuit(trained, tiny_composition, top_k=2, threshold=0.1)
    with pytest.raises(ValueError, match="no examples in split 'validation'"):
        find_circuit(trained, tiny_composition, split="validation")
    with pytest.raises(ValueError, match="metric"):
        find_circuit(trained, tiny_composition, metric="accuracy", n_examples=10)
    with pytest.raises(ValueError, match="not both"):
        find_circuit(trained, tiny_composition, top_k=1, threshold=0.5, method="ablation")
    with pytest.raises(ValueError, match="needs a mixed task"):
        find_circuit(trained, tiny_composition, subtask="comparison")


@pytest.mark.wrong_types
def test_the_registry_refuses_bad_registrations_in_one_line(trained, tiny_composition):
    def scores(model, pairs, components, *, seed=0):
        return dict.fromkeys(components, 0.0)

    for name, fn, problem in (
        ("patching", scores, "already registered"),
        ("", scores, "non-empty string name"),
        ("not-callable", 3, "must be callable"),
    ):
        with pytest.raises(ValueError) as caught:
            register_circuit_method(name, fn)
        assert problem in str(caught.value) and "\n" not in str(caught.value)
    assert "not-callable" not in METHODS and METHODS["patching"] is not scores
    with pytest.raises(ValueError) as caught:
        find_circuit(trained, tiny_composition, method="acdc", n_examples=10)
    message = str(caught.value)
    assert "'ablation'" in message and "'patching'" in message and "\n" not in message
    # an option the method does not take is refused, not ignored
    with pytest.raises(ValueError, match="method='ablation' takes no option metric="):
        find_circuit(trained, tiny_composition, method="ablation", metric="strength")
    with pytest.raises(ValueError, match="takes no option ablation="):
        find_circuit(trained, tiny_composition, ablation="resample")
    with pytest.raises(ValueError, match="reads only the clean prompts"):
        find_circuit(trained, tiny_composition, method="ablation", swap="h")
    with pytest.raises(ValueError, match="not both"):
        find_circuit(trained, tiny_composition, swap="h", swaps=["r1"])


def test_one_swap_is_the_swaps_list_of_one(trained, tiny_composition):
    one = find_circuit(trained, tiny_composition, swap="r1", n_examples=40, top_k=2)
    listed = find_circuit(trained, tiny_composition, swaps=["r1"], n_examples=40, top_k=2)
    assert one.swaps == ("r1",) and one.scores == listed.scores
    assert torch.equal(one.state_scores, listed.state_scores)


def test_summary_and_plot_follow_the_result_contract(trained, tiny_composition):
    import dataclasses
    import json

    c = find_circuit(trained, tiny_composition, n_examples=40, top_k=3)
    s = c.summary()
    json.dumps(s)  # flat and JSON-able
    assert (s["size"], s["heads"] + s["mlps"]) == (3, 3)
    assert s["heads"] == sum(x.is_head for x in c.components)
    assert s["max_score"] == max(c.scores.values()) and s["n_examples"] == c.n_examples
    assert s["clean_accuracy"] == c.clean_accuracy
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.top_k = 4
    assert c != find_circuit(trained, tiny_composition, n_examples=40, top_k=3)  # eq=False
    # two panels: no ax, one line saying which single-panel plots take one
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="takes no ax") as caught:
        c.plot(ax)
    assert "\n" not in str(caught.value)
    fig2 = c.plot(title="my circuit")
    assert fig2._suptitle.get_text() == "my circuit"
    plt.close(fig2)
    # one panel (no state scores): drawn on the ax given, with the title given
    a = find_circuit(trained, tiny_composition, n_examples=40, top_k=3, method="ablation")
    assert a.plot(ax, title="ablation scores") is fig
    assert ax.get_title() == "ablation scores"
    plt.close(fig)
