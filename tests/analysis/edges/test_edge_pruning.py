"""``EdgeCircuit.pruned`` against a slow, obviously-right reference on random circuits: build
the circuit's graph node by node (each source's output and each destination's input at each
position), search it forwards from the embeddings and backwards from the logits, and keep the
edges on both searches."""

from collections import deque

import pytest
import torch

from grok_circuits.analysis.edges.graph import EdgeGraph
from grok_circuits.analysis.edges.scores import EdgeCircuit, EdgeScores


def _reached(edges: dict, starts: list) -> set:
    """Every node reached from ``starts`` along ``edges`` ({node: [next nodes]})."""
    seen, todo = set(starts), deque(starts)
    while todo:
        for nxt in edges.get(todo.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def brute_force_pruned(graph: EdgeGraph, mask: torch.Tensor) -> torch.Tensor:
    """``[source, destination, pos]``: the edges of ``mask`` whose source output is reached from
    the embeddings and whose destination input reaches the logits. Inside a node, read from the
    destination's name: a query or MLP input at ``p`` feeds the node's output at ``p``; a key or
    value input at ``p`` feeds its outputs at every ``p' >= p`` (attention reads back); the
    logits' input is the end."""
    n_pos = mask.shape[-1]
    forward: dict = {}
    for s, d, p in torch.nonzero(mask).tolist():
        forward.setdefault(("out", s, p), []).append(("in", d, p))
    for d, name in enumerate(graph.destinations):
        node, _, slot = name.partition(".")
        for p in range(n_pos):
            if name == "logits":
                forward[("in", d, p)] = ["end"]
                continue
            s = graph.sources.index(node)
            later = range(p, n_pos) if slot in ("k", "v") else [p]
            forward[("in", d, p)] = [("out", s, q) for q in later]
    backward: dict = {}
    for a, nexts in forward.items():
        for b in nexts:
            backward.setdefault(b, []).append(a)
    from_embed = _reached(forward, [("out", 0, p) for p in range(n_pos)])
    to_logits = _reached(backward, ["end"])
    out = torch.zeros_like(mask)
    for s, d, p in torch.nonzero(mask).tolist():
        out[s, d, p] = ("out", s, p) in from_embed and ("in", d, p) in to_logits
    return out


def _random_circuit(seed: int, positions: bool) -> EdgeCircuit:
    g = torch.Generator().manual_seed(seed)
    pick = lambda n: int(torch.randint(n, (1,), generator=g)) + 1  # noqa: E731  (1..n)
    graph = EdgeGraph(n_layers=pick(3), n_heads=pick(3), has_mlp=bool(seed % 2))
    n_pos = pick(4)
    raw = torch.randn(graph.n_sources, graph.n_destinations, n_pos, generator=g)
    scores = EdgeScores(
        graph=graph,
        raw=raw * graph.valid[:, :, None],
        clean_metric=1.0,
        corrupt_metric=0.0,
        method="random",
        options={},
        n_examples=1,
        pos_labels=tuple(f"p{i}" for i in range(n_pos)),
    )
    density = 0.1 + 0.5 * float(torch.rand((), generator=g))
    shape = scores.valid(positions).shape
    mask = (torch.rand(shape, generator=g) < density) & scores.valid(positions)
    return EdgeCircuit(scores, mask, positions)


@pytest.mark.parametrize("positions", [True, False])
def test_pruning_equals_a_search_of_the_circuit_graph(positions):
    removed = kept = 0
    for seed in range(40):
        circuit = _random_circuit(seed, positions)
        expected = brute_force_pruned(circuit.graph, circuit.full_mask())
        if not positions:  # an edge summed over positions stays if it is used at any position
            expected = expected.any(-1)
        got = circuit.pruned().mask
        assert torch.equal(got, expected), f"seed {seed}"
        removed += int((circuit.mask & ~got).sum())
        kept += int(got.sum())
    assert removed > 50 and kept > 50  # the random circuits exercise both outcomes
