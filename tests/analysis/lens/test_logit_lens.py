"""The logit lens against the model's own logits and a hand-written decoding of each layer."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from grok_circuits.analysis import LogitLensResult, logit_lens


def manual_ranks(model, tokens, positions, targets):
    """Decode every resid_pre and the final resid_post by hand: LayerNorm with the final
    LayerNorm's weights (fresh statistics per state), then W_U and b_U. ``[layer, batch]``."""
    _, cache = model.run_with_cache(tokens)
    n = model.cfg.n_layers
    states = [cache[f"blocks.{i}.hook_resid_pre"] for i in range(n)]
    states.append(cache[f"blocks.{n - 1}.hook_resid_post"])
    rows = torch.arange(tokens.shape[0])
    ln = model.ln_final
    out = []
    for s in states:
        x = s[rows, positions]
        x = F.layer_norm(x, (x.shape[-1],), ln.w, ln.b, eps=model.cfg.eps)
        logits = x @ model.W_U + model.b_U
        target = logits[rows, targets]
        out.append((logits > target[:, None]).sum(-1))
    return torch.stack(out)


@pytest.fixture(scope="module")
def split(tiny_composition):
    return tiny_composition.splits["train_inferred"].sample(50, seed=0)


def test_last_row_is_the_rank_in_the_models_own_logits(composition_model, split):
    result = logit_lens(composition_model, split.tokens, split.answers, split.answer_pos)
    with torch.no_grad():
        logits = composition_model(split.tokens)[torch.arange(len(split)), split.answer_pos]
    order = logits.argsort(-1, descending=True)  # rank = where the answer sits in the order
    expected = (order == split.answers[:, None]).float().argmax(-1)
    assert result.ranks.shape == (composition_model.cfg.n_layers + 1, len(split))
    assert torch.equal(result.ranks[-1], expected)
    assert result.layer_labels[-1] == "final_post" and result.layer_labels[0] == "0_pre"


def test_every_row_matches_a_hand_written_decoding(composition_model, split, tiny_composition):
    r1 = tiny_composition.positions["r1"]
    bridge = split.meta["bridge"]
    result = logit_lens(composition_model, split.tokens, bridge, r1)
    expected = manual_ranks(composition_model, split.tokens, torch.full((len(split),), r1), bridge)
    assert torch.equal(result.ranks, expected)
    assert_close(result.mrr, (1.0 / (expected.float() + 1)).mean(1))
    assert_close(result.top1, (expected == 0).float().mean(1))


def test_targets_that_are_the_top_token_have_mrr_one(composition_model, split):
    """Planted: use the final layer's own top-1 token as the target."""
    with torch.no_grad():
        logits = composition_model(split.tokens)
    top = logits[torch.arange(len(split)), split.answer_pos].argmax(-1)
    result = logit_lens(composition_model, split.tokens, top, split.answer_pos)
    assert float(result.mrr[-1]) == 1.0 and float(result.top1[-1]) == 1.0


def test_positions_as_int_list_and_tensors_agree(composition_model, split, tiny_composition):
    pos = tiny_composition.positions
    tokens, bridge, r2 = split.tokens, split.meta["bridge"], split.tokens[:, pos["r2"]]
    n = len(split)
    by_list = logit_lens(
        composition_model,
        tokens,
        torch.stack([bridge, r2], 1),
        [pos["r1"], pos["r2"]],
        names=["bridge@r1", "r2@r2"],
    )
    assert by_list.ranks.shape == (composition_model.cfg.n_layers + 1, n, 2)
    assert by_list.mrr.shape == (composition_model.cfg.n_layers + 1, 2)
    by_int = logit_lens(composition_model, tokens, bridge, pos["r1"])
    by_tensor = logit_lens(composition_model, tokens, r2, torch.full((n,), pos["r2"]))
    by_negative = logit_lens(composition_model, tokens, r2, -1)
    by_grid = logit_lens(
        composition_model,
        tokens,
        torch.stack([bridge, r2], 1),
        torch.tensor([pos["r1"], pos["r2"]]).expand(n, 2),
    )
    assert torch.equal(by_list.ranks[:, :, 0], by_int.ranks)
    assert torch.equal(by_list.ranks[:, :, 1], by_tensor.ranks)
    assert torch.equal(by_negative.ranks, by_tensor.ranks)
    assert torch.equal(by_grid.ranks, by_list.ranks)
    assert torch.equal(by_list.column("r2@r2").ranks, by_tensor.ranks)
    # one target shared by several positions
    shared = logit_lens(composition_model, tokens, bridge, [pos["r1"], pos["r1"]])
    assert torch.equal(shared.ranks[:, :, 1], by_int.ranks)


def test_small_batches_give_the_same_ranks(composition_model, split):
    a = logit_lens(composition_model, split.tokens, split.answers, split.answer_pos)
    b = logit_lens(composition_model, split.tokens, split.answers, split.answer_pos, batch_size=7)
    assert torch.equal(a.ranks, b.ranks)


def test_first_layer_reads_the_mrr(composition_model, split):
    result = logit_lens(composition_model, split.tokens, split.answers, split.answer_pos)
    best = int(result.mrr.argmax())
    assert result.first_layer(float(result.mrr.max())) == best
    assert result.first_layer(float(result.mrr.min())) == 0
    assert result.first_layer(1.01) is None


def test_result_prints_a_table_and_plots(composition_model, split):
    result = logit_lens(composition_model, split.tokens, split.answers, split.answer_pos)
    assert isinstance(result, LogitLensResult)
    text = repr(result)
    assert "final_post" in text and len(text.splitlines()) == 2 + composition_model.cfg.n_layers + 1
    import matplotlib.pyplot as plt

    plt.close(result.plot())


@pytest.mark.wrong_types
def test_bad_input_raises_value_errors(composition_model, split):
    with pytest.raises(ValueError, match="positions must lie"):
        logit_lens(composition_model, split.tokens, split.answers, 7)
    with pytest.raises(ValueError, match="targets must be"):
        logit_lens(composition_model, split.tokens, split.answers[:3], 1)
    with pytest.raises(ValueError, match="do not match"):
        logit_lens(composition_model, split.tokens, torch.stack([split.answers] * 3, 1), [1, 2])
    with pytest.raises(ValueError, match="token ids"):
        logit_lens(composition_model, split.tokens, split.answers + 10_000, 2)
    with pytest.raises(ValueError, match="positions tensor"):
        logit_lens(composition_model, split.tokens, split.answers, torch.tensor([1, 2]))
