"""The edge-method registry: a method is one function registered by name, and
``edge_attribution`` runs it on pairs it converted once, with its own options."""

import pytest
import torch

from grok_circuits.analysis.edges.attribution import (
    EDGE_METHODS,
    edge_attribution,
    register_edge_method,
)


def constant_scores(model, pairs, graph, *, metric, batch_size=256, progress=False, value=1.0):
    """A toy edge method, file-sized: every edge at every position scores ``value``; it also
    records what it was given."""
    constant_scores.seen = dict(pairs=pairs, graph=graph, metric=metric, batch_size=batch_size)
    return torch.full((graph.n_sources, graph.n_destinations, pairs.width), value)


@pytest.fixture
def registered():
    register_edge_method("constant", constant_scores)
    yield "constant"
    del EDGE_METHODS["constant"]


def test_a_registered_method_runs_by_name_with_its_options(small, registered, tiny_composition):
    model, pairs = small
    scores = edge_attribution(model, pairs, method=registered, value=2.0, batch_size=7)
    valid = scores.graph.valid[:, :, None].expand_as(scores.raw)
    # the method's scores, on edges only (entries that are no edge are zeroed)
    assert (scores.raw[valid] == 2.0).all() and (scores.raw[~valid] == 0).all()
    assert scores.method == "constant" and scores.options == {"value": 2.0}
    assert constant_scores.seen["pairs"] is pairs and constant_scores.seen["batch_size"] == 7
    # the metric it is given is the per-example logit difference
    logits = torch.randn(len(pairs), model.cfg.d_vocab_out)
    rows = torch.arange(len(pairs))
    expected = logits[rows, pairs.answers] - logits[rows, pairs.corrupt_answers]
    torch.testing.assert_close(constant_scores.seen["metric"](logits, pairs), expected)
    # a task is turned into pairs once, with the pair contract's keywords
    from_task = edge_attribution(
        model, tiny_composition, method=registered, swap="h", n_examples=24, seed=0
    )
    assert torch.equal(constant_scores.seen["pairs"].clean, pairs.clean)
    assert from_task.n_examples == 24 and from_task.options == {"value": 1.0}


@pytest.mark.wrong_types
def test_unknown_names_options_and_bad_registrations_are_one_clear_error(small, registered):
    model, pairs = small
    with pytest.raises(ValueError, match=r"method='acdc' is not an edge method; choose one of "):
        edge_attribution(model, pairs, method="acdc")
    with pytest.raises(
        ValueError, match=r"'eap' takes no option ig_steps; its options are \['gradient_at'\]"
    ):
        edge_attribution(model, pairs, method="eap", ig_steps=3)
    with pytest.raises(ValueError, match=r"registered already"):
        register_edge_method("constant", constant_scores)
    with pytest.raises(ValueError, match=r"must be callable"):
        register_edge_method("other", "not a function")
    assert "other" not in EDGE_METHODS


def test_a_method_returning_the_wrong_shape_is_named(small):
    model, pairs = small
    register_edge_method("flat", lambda model, pairs, graph, **kw: torch.zeros(3))
    try:
        with pytest.raises(ValueError, match=r"edge method 'flat' returned \(3,\)"):
            edge_attribution(model, pairs, method="flat")
    finally:
        del EDGE_METHODS["flat"]
