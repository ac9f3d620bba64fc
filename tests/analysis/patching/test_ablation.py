"""Ablation against planted effects and hand-computed references on a tiny random model."""

import copy

import pytest
import torch
from torch.testing import assert_close

from grok_circuits.analysis.components import Component, all_components
from grok_circuits.analysis.patching.ablation import ablated_answer_logits, accuracy_under_ablation
from grok_circuits.model import build_model, model_config
from grok_circuits.tasks import Split
from grok_circuits.training.loop import answer_logits, evaluate


@pytest.fixture(scope="module")
def model(tiny_composition):
    return build_model(model_config(tiny_composition, "tiny"), seed=1).eval()


@pytest.fixture(scope="module")
def split(tiny_composition):
    return tiny_composition.splits["train_inferred"]


def clean_logits(model, split):
    with torch.no_grad():
        return answer_logits(model, split.tokens, split.answer_pos)


def test_components_print_parse_and_enumerate(model):
    assert str(Component(2, 1)) == "L2H1" and str(Component(3)) == "MLP3"
    for c in all_components(model):
        assert Component.parse(str(c)) == c
    assert Component.parse((2, 1)) == Component.attn(2, 1) and Component.parse(
        (3,)
    ) == Component.mlp(3)
    assert [str(c) for c in all_components(model)] == [
        "L0H0",
        "L0H1",
        "MLP0",
        "L1H0",
        "L1H1",
        "MLP1",
    ]
    with pytest.raises(ValueError, match="L2H1"):
        Component.parse("head 2")


def test_ablating_nothing_is_the_clean_run(model, split):
    for method in ("mean", "resample"):
        assert torch.equal(
            ablated_answer_logits(model, split, [], ablation=method), clean_logits(model, split)
        )
        assert (
            accuracy_under_ablation(model, split, [], ablation=method)
            == evaluate(model, {"p": split})["p_acc"]
        )


@pytest.fixture(scope="module")
def planted(model):
    """L1H0 writes a constant (W_V = 0, so z = b_V whatever it attends to) and MLP0 too
    (W_out = 0, so mlp_out = b_out)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.blocks[1].attn.W_V[0] = 0.0
        m.blocks[1].attn.b_V[0] = torch.linspace(-1, 1, m.cfg.d_head)
        m.blocks[0].mlp.W_out.zero_()
        m.blocks[0].mlp.b_out.copy_(torch.linspace(1, -1, m.cfg.d_model))
    return m


@pytest.mark.parametrize("method", ["mean", "resample"])
def test_ablating_a_constant_component_changes_nothing(planted, split, method):
    clean = clean_logits(planted, split)
    ablated = ablated_answer_logits(planted, split, ["L1H0", "MLP0"], ablation=method, seed=3)
    assert_close(ablated, clean)
    # the control: a component that does read the input does change the output
    other = ablated_answer_logits(planted, split, ["L0H0"], ablation=method, seed=3)
    assert (other - clean).abs().max() > 1e-3


def embedding_path_logits(model, split, reference):
    """What is left with every head and MLP replaced by its mean over ``reference`` at every
    position: the token and position embeddings of the answer position, plus constants."""
    names = lambda n: n.endswith("hook_z") or n.endswith("hook_mlp_out")  # noqa: E731
    with torch.no_grad():
        _, cache = model.run_with_cache(reference.tokens, names_filter=names)
        resid = model.W_E[split.tokens[torch.arange(len(split)), split.answer_pos]]
        resid = resid + model.W_pos[split.answer_pos]
        for layer, block in enumerate(model.blocks):
            z = cache[f"blocks.{layer}.attn.hook_z"].mean(0)[split.answer_pos]  # [b, head, d_head]
            resid = resid + torch.einsum("bhd,hdm->bm", z, block.attn.W_O) + block.attn.b_O
            resid = resid + cache[f"blocks.{layer}.hook_mlp_out"].mean(0)[split.answer_pos]
        return model.unembed(model.ln_final(resid[:, None]))[:, 0]


def test_mean_ablating_everything_leaves_the_embedding_path(model, split):
    ablated = ablated_answer_logits(model, split, all_components(model), ablation="mean")
    assert_close(ablated, embedding_path_logits(model, split, split), atol=1e-5, rtol=1e-4)
    # ...which reads the last token only: prompts ending in the same r2 get the same logits
    last = split.tokens[:, 2]
    same = torch.nonzero(last == last[0]).flatten()
    assert len(same) > 1 and len(torch.unique(split.tokens[same, 0])) > 1
    assert_close(ablated[same], ablated[same[:1]].expand(len(same), -1))


def test_resample_from_one_example_is_patching_it_in(model, split):
    one = split.select(slice(5, 6))
    ablated = ablated_answer_logits(
        model, split, all_components(model), ablation="resample", reference=one
    )
    assert_close(ablated, embedding_path_logits(model, split, one), atol=1e-5, rtol=1e-4)


def test_resample_uses_one_reference_example_for_all_components(model, split):
    """Slow reference: for each example, try every reference example as the source of all the
    ablated components; the fast result must be one of them."""
    comps = ["L0H1", "MLP0", "L1H0"]
    small, reference = split.select(slice(0, 6)), split.select(slice(10, 16))
    fast = ablated_answer_logits(
        model, small, comps, ablation="resample", reference=reference, seed=7
    )
    candidates = torch.stack(
        [
            ablated_answer_logits(
                model,
                small,
                comps,
                ablation="resample",
                reference=reference.select(slice(j, j + 1)),
            )
            for j in range(len(reference))
        ]
    )  # [ref, batch, vocab]
    err = (candidates - fast[None]).abs().amax(-1)  # [ref, batch]
    assert bool((err.min(0).values < 1e-5).all())
    seeds = {
        tuple(
            ablated_answer_logits(
                model, small, comps, ablation="resample", reference=reference, seed=s
            )
            .argmax(-1)
            .tolist()
        )
        for s in range(6)
    }
    again = ablated_answer_logits(
        model, small, comps, ablation="resample", reference=reference, seed=7
    )
    assert torch.equal(fast, again) and len(seeds) > 1


def test_positions_after_the_answer_change_nothing(model, tiny_composition):
    train = tiny_composition.train  # atomic facts (answer at 1) and inferred (answer at 2)
    clean = clean_logits(model, train)
    ablated = ablated_answer_logits(model, train, all_components(model), positions=[2])
    atomic = train.answer_pos == 1
    assert atomic.any() and (~atomic).any()
    assert torch.equal(ablated[atomic], clean[atomic])
    assert (ablated[~atomic] - clean[~atomic]).abs().max() > 1e-3


def test_mean_is_taken_per_prompt_format(model, tiny_composition):
    train = tiny_composition.train
    atomic_rows = torch.nonzero(train.answer_pos == 1).flatten()
    atomic = train.select(atomic_rows)
    together = ablated_answer_logits(model, train, ["L0H0", "MLP1"])[atomic_rows]
    alone = ablated_answer_logits(model, atomic, ["L0H0", "MLP1"])
    assert_close(together, alone)


@pytest.mark.wrong_types
def test_errors(model, split, tiny_composition):
    with pytest.raises(ValueError, match="ablation must be one of"):
        accuracy_under_ablation(model, split, ["L0H0"], ablation="zero")
    with pytest.raises(ValueError, match="2 layers"):
        accuracy_under_ablation(model, split, ["L5H0"])
    with pytest.raises(ValueError, match="heads per layer"):
        accuracy_under_ablation(model, split, [(0, 9)])
    with pytest.raises(ValueError, match="positions"):
        accuracy_under_ablation(model, split, ["L0H0"], positions=[7])
    atomic = tiny_composition.splits["id_atomic"]
    with pytest.raises(ValueError, match="reference split has no prompt of"):
        accuracy_under_ablation(model, split, ["L0H0"], reference=atomic)


def test_no_hook_is_left_behind_even_after_an_error(model, split, no_hooks_left):
    no_hooks_left(model)  # checked after the test
    ablated_answer_logits(model, split, ["L0H0", "MLP1"], ablation="resample")
    broken = Split(split.tokens + 10_000, split.answer_pos, split.answers)  # ids out of vocab
    with pytest.raises((IndexError, RuntimeError)):
        ablated_answer_logits(model, broken, ["L0H0", "MLP1"], reference=split)
