"""viz.attention_patterns: CircuitsVis gets the model's own attention patterns and the prompt's
readable tokens, checked against an independent ``run_with_cache``."""

import circuitsvis.attention
import pytest
import torch
from circuitsvis.utils.render import RenderedHTML

import grok_circuits.viz as viz
from grok_circuits.model import build_model, model_config


@pytest.fixture(scope="module")
def model(tiny_comparison):
    # 2 layers, 2 heads; comparison prompts have 5 tokens, so the patterns are not trivial
    return build_model(model_config(tiny_comparison, "tiny"), seed=4).eval()


@pytest.fixture
def captured(monkeypatch):
    """What attention_patterns passes to circuitsvis (the real widget is still returned)."""
    calls = []
    real = circuitsvis.attention.attention_heads

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(circuitsvis.attention, "attention_heads", spy)
    return calls


def reference_patterns(model, tokens):
    """Every layer's ``[head, dest, src]`` pattern from a full, unfiltered cache."""
    _, cache = model.run_with_cache(tokens[None])
    return [cache["pattern", layer][0] for layer in range(model.cfg.n_layers)]


@pytest.mark.parametrize("split, index", [("test_id", 0), ("train_inferred", 3), ("id_atomic", 1)])
def test_all_layers_match_the_cache(model, tiny_comparison, captured, split, index):
    html = viz.attention_patterns(model, tiny_comparison, split, index)
    assert isinstance(html, RenderedHTML)
    (call,) = captured
    s = tiny_comparison.splits[split]
    n = int(s.answer_pos[index]) + 1  # the prompt, padding dropped
    expected = torch.cat(reference_patterns(model, s.tokens[index, :n]))
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    assert call["attention"].shape == (n_heads, n, n) == expected.shape
    torch.testing.assert_close(call["attention"], expected)
    assert call["tokens"] == tiny_comparison.vocab.decode(s.tokens[index, :n]).split()
    assert call["attention_head_names"] == ["L0H0", "L0H1", "L1H0", "L1H1"]


def test_one_layer(model, tiny_comparison, captured):
    viz.attention_patterns(model, tiny_comparison, "test_id", 2, layer=1)
    (call,) = captured
    tokens = tiny_comparison.splits["test_id"].tokens[2]
    expected = reference_patterns(model, tokens)[1]
    torch.testing.assert_close(call["attention"], expected)
    assert call["attention_head_names"] == ["L1H0", "L1H1"]
    assert "<q>" in call["tokens"] and "<mask>" in call["tokens"]


def test_composition_prompt_tokens(tiny_composition, captured):
    model = build_model(model_config(tiny_composition, "tiny"), seed=5).eval()
    viz.attention_patterns(model, tiny_composition, "test_id", 0, layer=0)
    (call,) = captured
    h, r1, r2 = call["tokens"]
    assert h.startswith("<e_") and r1.startswith("<r_") and r2.startswith("<r_")
    assert call["attention"].shape == (model.cfg.n_heads, 3, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(split="nope"), "no split"),
        (dict(index=10**6), "index"),
        (dict(layer=7), "layer"),
    ],
)
def test_bad_arguments(model, tiny_comparison, kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.attention_patterns(model, tiny_comparison, **kwargs)
