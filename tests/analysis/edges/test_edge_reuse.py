"""Edge-level reuse: the overlap of two edge circuits against hand-counted cases (identical,
disjoint and half-shared circuits planted through a registered edge method), the pair contract,
and the same clear error as faithfulness when the pairs leave nothing to measure."""

import dataclasses
import math

import pytest
import torch

from grok_circuits import faithfulness, make_pairs
from grok_circuits.analysis.edges.attribution import (
    EDGE_METHODS,
    edge_attribution,
    register_edge_method,
)
from grok_circuits.analysis.edges.graph import EdgeGraph
from grok_circuits.analysis.edges.reuse import edge_reuse


@pytest.fixture
def plant(small):
    """Register an edge method that scores exactly the planted (source, destination) edges of
    each set of pairs (1 at position 0, 0 elsewhere); yields ``plant(pairs_to_edges) -> name``."""
    names = []

    def make(planted: dict) -> str:
        def planted_scores(model, pairs, graph, *, metric, batch_size=256, progress=False):
            raw = torch.zeros(graph.n_sources, graph.n_destinations, pairs.width)
            (edges,) = [e for p, e in planted if p is pairs]
            for s, d in edges:
                raw[s, d, 0] = 1.0
            return raw

        name = f"planted{len(names)}"
        register_edge_method(name, planted_scores)
        names.append(name)
        return name

    yield make
    for name in names:
        del EDGE_METHODS[name]


def _edges(model, first: int, n: int) -> list[tuple[int, int]]:
    """The graph's edges number ``first`` to ``first + n - 1``, in graph order."""
    valid = torch.nonzero(EdgeGraph.of(model).valid).tolist()
    return [tuple(e) for e in valid[first : first + n]]


@pytest.mark.parametrize(
    "a_first, b_first, expected",
    [(0, 0, 1.0), (0, 10, 0.0), (0, 5, 5 / 15)],  # identical, disjoint, 5 of 15 shared
)
def test_edge_iou_by_hand(small, tiny_composition, plant, a_first, b_first, expected):
    model, pairs_a = small
    pairs_b = make_pairs(tiny_composition, "r2", n_examples=24, seed=0)
    a, b = _edges(model, a_first, 10), _edges(model, b_first, 10)
    method = plant([(pairs_a, a), (pairs_b, b)])
    report = edge_reuse(
        model,
        [pairs_a, pairs_b],
        ("a", "b"),
        top_k=10,
        method=method,
        n_random=300,
        n_random_ablations=2,
    )
    g = EdgeGraph.of(model)
    got = {t: set(map(tuple, torch.nonzero(report.circuits[t].mask).tolist())) for t in "ab"}
    assert got == {"a": set(a), "b": set(b)}
    assert report.iou == pytest.approx(expected)
    # two random sets of 10 of the graph's edges are identical with chance 1 / C(n, 10), and
    # always have an IoU >= 0
    assert math.comb(g.n_edges, 10) > 1e12
    if expected == 1.0:
        assert report.p_iou == 0.0
    if expected == 0.0:
        assert report.p_iou == 1.0


def test_edge_reuse_takes_the_pair_keywords(small, tiny_composition):
    model, _ = small
    report = edge_reuse(
        model,
        [tiny_composition, tiny_composition],
        ("x", "y"),
        top_k=5,
        method="eap",
        swap="h",
        n_examples=24,
        seed=0,
        n_random=2,
        n_random_ablations=1,
    )
    pairs = make_pairs(tiny_composition, "h", n_examples=24, seed=0)
    assert report.n_pairs == {"x": 24, "y": 24}
    expected = edge_attribution(model, pairs, method="eap").raw
    torch.testing.assert_close(report.scores["x"].raw, expected)
    assert report.iou == 1.0  # the same pairs twice: the same circuit
    with pytest.raises(ValueError, match="subtask= chooses a part of a task"):
        edge_reuse(model, [pairs, pairs], ("a", "b"), subtask="x", n_random=1)
    with pytest.raises(ValueError, match="swaps= chooses how pairs are built"):
        edge_reuse(model, [pairs, pairs], ("a", "b"), swap="h", n_random=1)
    with pytest.raises(ValueError, match="compares two data sets; got 1"):
        edge_reuse(model, [pairs], ("a", "b"))


def test_pairs_without_an_effect_are_the_same_clear_error_as_in_faithfulness(small, plant):
    """Corrupt prompts equal to the clean ones: the full and the empty graph give one metric, so
    every share kept would be 0/0."""
    model, pairs = small
    same = dataclasses.replace(pairs, corrupt=pairs.clean, corrupt_answers=pairs.answers)
    method = plant([(pairs, _edges(model, 0, 5)), (same, _edges(model, 0, 5))])
    message = r"ablating every edge.* leaves the metric where it was .*there is no effect"
    with pytest.raises(ValueError, match=message):
        edge_reuse(model, [pairs, same], ("a", "b"), top_k=5, method=method, n_random=2)
    scores = edge_attribution(model, same, method=method)
    with pytest.raises(ValueError, match=message):
        faithfulness(model, same, scores, sizes=[5], n_random=1)
