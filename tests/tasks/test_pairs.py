"""PromptPairs: built from plain tensors, every mistake named in one line, selections that
keep every field aligned, and a model that does not fit its data refused before it runs."""

import pytest
import torch

from grok_circuits import (
    PromptPairs,
    build_model,
    find_circuit,
    make_pairs,
    make_task,
    model_config,
    trace_bridge,
    trace_reasoning,
)
from grok_circuits.analysis import check_fits
from tests.conftest import TINY_COMPARISON


def pairs(n=4, width=3, **kw):
    clean = torch.arange(n * width).reshape(n, width) % 7
    base = dict(
        clean=clean,
        corrupt=(clean + 1) % 7,
        answers=torch.arange(n) % 5,
        corrupt_answers=(torch.arange(n) + 1) % 5,
    )
    base.update(kw)
    return PromptPairs(**base)


def test_defaults_from_tensors_alone():
    p = pairs()
    assert p.answer_pos.tolist() == [2, 2, 2, 2]  # the last position
    assert p.pos_labels == ("0", "1", "2") and p.index.tolist() == [0, 1, 2, 3]
    assert p.swap is None and p.position is None and len(p) == 4 and p.width == 3
    assert p.clean_answers is p.answers and p.positions == {"0": 0, "1": 1, "2": 2}
    assert "4 pairs of 3 tokens" in repr(p)


def test_lens_targets_by_name_or_by_tensor_pair():
    p = pairs(pos_labels=("h", "r1", "r2"), lens={"b@r1": torch.tensor([1, 2, 3, 4])})
    tokens, positions = p.lens["b@r1"]
    assert tokens.tolist() == [1, 2, 3, 4] and positions.tolist() == [1, 1, 1, 1]
    q = pairs(lens={"x": (torch.tensor([0, 1, 2, 3]), 0)})
    assert q.lens["x"][1].tolist() == [0, 0, 0, 0]


def test_select_sample_concat_keep_fields_aligned():
    p = pairs(n=6, meta={"tag": torch.arange(6) * 10}, lens={"a@2": torch.arange(6)})
    sub = p[2:5]
    assert sub.index.tolist() == [2, 3, 4] and sub.meta["tag"].tolist() == [20, 30, 40]
    assert torch.equal(sub.clean, p.clean[2:5]) and torch.equal(
        sub.lens["a@2"][0], p.lens["a@2"][0][2:5]
    )
    mask = p[torch.tensor([True, False, True, False, False, True])]
    assert mask.index.tolist() == [0, 2, 5] and mask.corrupt_answers.tolist() == [1, 3, 1]
    s1, s2 = p.sample(3, seed=1), p.sample(3, seed=1)
    assert s1.index.tolist() == s2.index.tolist() and s1.index.tolist() == sorted(s1.index.tolist())
    assert len(set(s1.index.tolist())) == 3 and p.sample(10) is p
    both = PromptPairs.concat([p[:2], p[4:]])
    assert both.index.tolist() == [0, 1, 4, 5] and both.meta["tag"].tolist() == [0, 10, 40, 50]
    assert both.lens["a@2"][0].tolist() == [0, 1, 4, 5]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            dict(clean=torch.zeros(3, dtype=torch.long)),
            r"clean must be \[batch, pos\], got shape \(3,\); for one prompt",
        ),
        (
            dict(clean=torch.zeros(2, 3)),
            "clean must hold integer token ids/positions, got dtype torch.float32",
        ),
        (dict(corrupt=torch.zeros(4, 2, dtype=torch.long)), "corrupt has shape .* but clean has"),
        (dict(answers=torch.zeros(3, dtype=torch.long)), "answers has 3 rows but clean has 4"),
        (dict(corrupt_answers=torch.zeros(5, dtype=torch.long)), "corrupt_answers has 5 rows"),
        (dict(answer_pos=torch.tensor([0, 1, 2, 3])), r"answer_pos must lie in 0..2"),
        (dict(pos_labels=("a", "b")), "pos_labels needs one name per position"),
        (dict(clean=-torch.ones(4, 3, dtype=torch.long)), "clean has a negative token id"),
        (dict(answers=torch.tensor([0, -1, 0, 0])), "answers has a negative token id"),
        (dict(lens={"bridge": torch.zeros(4, dtype=torch.long)}), "must end in '@<position>'"),
        (dict(lens={"x@9": torch.zeros(4, dtype=torch.long)}), "must end in '@<position>'"),
        (dict(lens={"x": (torch.zeros(4, dtype=torch.long), 7)}), r"positions must lie in 0..2"),
        (dict(lens={"x@0": torch.zeros(3, dtype=torch.long)}), "needs 4 tokens and positions"),
        (dict(meta={"m": torch.zeros(2)}), r"meta\['m'\] must have 4 rows"),
        (dict(clean="abc"), "clean must be an integer tensor"),
        (
            dict(
                clean=torch.zeros(4, 0, dtype=torch.long),
                corrupt=torch.zeros(4, 0, dtype=torch.long),
            ),
            "no positions",
        ),
    ],
)
def test_every_error_names_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        pairs(**change)


def test_concat_refuses_other_layouts():
    with pytest.raises(ValueError, match="at least one"):
        PromptPairs.concat([])
    with pytest.raises(ValueError, match="cannot concatenate"):
        PromptPairs.concat([pairs(), pairs(pos_labels=("a", "b", "c"))])


def test_model_and_data_that_do_not_fit_are_refused(tiny_composition):
    # (the shared tiny tasks happen to have vocabularies of one size, which a bare model cannot
    # tell apart; a run records its task, so analyses of runs never mix them up)
    tiny_comparison = make_task("comparison", preset=None, **{**TINY_COMPARISON, "n_entities": 24})
    comp = build_model(model_config(tiny_composition, "tiny"), seed=0).eval()
    cmpr = build_model(model_config(tiny_comparison, "tiny"), seed=0).eval()
    d_comp, d_cmpr = comp.cfg.d_vocab, cmpr.cfg.d_vocab
    # a comparison model given composition data: tokens in range, but the wrong task
    with pytest.raises(
        ValueError, match=f"vocabulary of {d_comp} tokens but the model has {d_cmpr}"
    ):
        find_circuit(cmpr, tiny_composition, n_examples=10)
    with pytest.raises(ValueError, match=f"{d_comp} tokens but the model has {d_cmpr}"):
        trace_bridge(cmpr, tiny_composition, n_examples=10)
    # and the reverse
    with pytest.raises(ValueError, match=f"{d_cmpr} tokens but the model has {d_comp}"):
        trace_reasoning(comp, tiny_comparison)
    # out-of-vocabulary tokens in pairs built by hand
    big = pairs(
        n=2, clean=torch.full((2, 3), d_comp + 5), corrupt=torch.zeros(2, 3, dtype=torch.long)
    )
    with pytest.raises(
        ValueError, match=f"token id {d_comp + 5} but the model's vocabulary has {d_comp}"
    ):
        trace_reasoning(comp, big)
    late = pairs(n=2, answers=torch.tensor([0, d_comp]), corrupt_answers=None)
    with pytest.raises(
        ValueError, match=f"answer has token id {d_comp} but the model has {d_comp}"
    ):
        find_circuit(comp, late)
    # prompts wider than the context
    wide = pairs(n=2, width=comp.cfg.n_ctx + 1)
    with pytest.raises(
        ValueError, match=f"positions but the model's context holds {comp.cfg.n_ctx}"
    ):
        check_fits(comp, wide)
    # the same pairs that fit pass through unchanged
    ok = make_pairs(tiny_composition, "h", n_examples=5)
    assert check_fits(comp, ok) is ok


@pytest.mark.wrong_types
def test_pairs_only_analyses_refuse_task_arguments(tiny_composition):
    model = build_model(model_config(tiny_composition, "tiny"), seed=0).eval()
    p = make_pairs(tiny_composition, "h", n_examples=5)
    with pytest.raises(ValueError, match="these are pairs already"):
        trace_reasoning(model, p, swap="r1")
    with pytest.raises(ValueError, match="expected PromptPairs or a task"):
        trace_reasoning(model, torch.zeros(3, 3))
