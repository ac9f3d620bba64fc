"""EAP against TransformerLens 4.3's own ``attribution_patch``, and the gradient convention.

TransformerLens 4.3 (``transformer_lens.tools.analysis``) scores nodes and edges by attribution
patching with the gradient taken on the *corrupt* run (its denoising form); ``"eap"`` takes it on
the clean run by default and on the corrupt run with ``gradient_at="corrupt"``. The references:

- everywhere: ``gradient_at="corrupt"`` equals the first-order Taylor estimate computed by hand
  at the corrupt input (tests/analysis/edges/test_edge_attribution.py's ``_hand_taylor``);
- where TransformerLens has ``attribution_patch`` (3.9 for ``HookedTransformer``, 4.3 for the
  bridge): each node's score, our edge scores summed over the destinations it feeds at each
  position, equals ``attribution_patch(..., EdgeAttributionConfig(granularity="node"))``'s;
- under 4.x: TransformerLens' edge granularity and ``faithfulness`` need per-head attention
  results (``use_attn_result``), which the bridge this package boots natively
  (``AttentionBridge``) does not offer; that refusal is pinned here, so that the edge-by-edge
  comparison is written when it changes.
"""

import numpy as np
import pytest
import torch

from grok_circuits import edge_attribution
from tests.analysis.circuits.test_planted_circuit import build_planted, build_planted_pairs
from tests.analysis.edges.test_edge_attribution import _hand_taylor


@pytest.mark.wrong_types
def test_gradient_at_the_corrupt_run_is_the_taylor_estimate_there(small):
    model, pairs = small
    scores = edge_attribution(model, pairs, method="eap", gradient_at="corrupt")
    clean = edge_attribution(model, pairs, method="eap")
    g = scores.graph
    valid = torch.nonzero(scores.valid())
    rng = np.random.default_rng(1)
    for s, d, p in valid[rng.choice(len(valid), 12, replace=False)].tolist():
        expected = _hand_taylor(model, pairs, g, s, d, p, alpha=0.0)
        torch.testing.assert_close(float(scores.raw[s, d, p]), expected, rtol=1e-4, atol=1e-5)
    # a random model's metric is curved: the two points differ
    assert not torch.allclose(scores.raw, clean.raw, atol=1e-3)
    assert scores.options == {"gradient_at": "corrupt"}
    with pytest.raises(ValueError, match="gradient_at"):
        edge_attribution(model, pairs, method="eap", gradient_at="middle")


def _tl():
    tools = pytest.importorskip("transformer_lens.tools.analysis")
    if not hasattr(tools, "EdgeAttributionConfig"):
        pytest.skip("TransformerLens 3.x: no attribution_patch with EdgeAttributionConfig")
    return tools


def _metric(pairs, i):
    """TransformerLens' metric of one example's logits: the answer logit difference."""

    def metric(logits):
        a = logits[0, pairs.answer_pos[i]]
        return a[pairs.answers[i]] - a[pairs.corrupt_answers[i]]

    return metric


def _source(graph, node):
    if node.kind == "embed":
        return 0
    if node.kind == "attn_head_out":
        return graph.head_source(node.layer, node.head)
    return graph.mlp_source(node.layer)


@pytest.mark.parametrize("which", ["random", "planted"])
def test_node_scores_equal_transformer_lens_attribution_patch(small, which):
    tools = _tl()
    model, pairs = small if which == "random" else (build_planted(), build_planted_pairs())
    pairs = pairs[:12]
    theirs: dict = {}
    for i in range(len(pairs)):  # one pair a call: the metric reads that pair's answers
        r = tools.attribution_patch(
            model,
            pairs.clean[i : i + 1],
            pairs.corrupt[i : i + 1],
            _metric(pairs, i),
            tools.EdgeAttributionConfig(granularity="node"),
        )
        for node, v in r.node_scores.items():
            theirs[node] = theirs.get(node, 0.0) + v / len(pairs)
    scores = edge_attribution(model, pairs, method="eap", gradient_at="corrupt")
    g = scores.graph
    node = scores.raw.sum(1)  # [source, pos]: a node is the sum of the edges it feeds
    assert len(theirs) == g.n_sources * pairs.width  # the same nodes, at every position
    mine = torch.tensor([float(node[_source(g, n), n.position]) for n in theirs])
    ref = torch.tensor(list(theirs.values()), dtype=torch.float32)
    scale = float(ref.abs().max())
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5 * scale)


def test_transformer_lens_edge_tools_refuse_the_native_bridge(small):
    tools = _tl()
    model, pairs = small
    if type(model).__name__ != "TransformerBridge":
        pytest.skip("TransformerLens 3.x: its attribution_patch scores nodes only")
    with pytest.raises(NotImplementedError, match="use_attn_result"):
        tools.attribution_patch(
            model,
            pairs.clean[:1],
            pairs.corrupt[:1],
            _metric(pairs, 0),
            tools.EdgeAttributionConfig(granularity="edge"),
        )
    with pytest.raises(NotImplementedError, match="use_attn_result"):
        tools.faithfulness(model, pairs.clean[:1], pairs.corrupt[:1], _metric(pairs, 0), [])
