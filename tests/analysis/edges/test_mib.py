"""MIB's metrics, each against an independent reference:

- the fraction grid against the list in MIB's ``evaluation.py`` (MIB-circuit-track), and the
  circuit sizes against its ``int(pct * n_edges)``;
- CPR and CMD against trapezoids computed by hand, on a curve given directly and on the planted
  model (tests/analysis/circuits/test_planted_circuit.py), whose faithfulness is known: 0 until
  its three path edges are kept, 1 from then on;
- f of the empty and the full circuit under every ablation, and the empty circuit against the
  plain corrupt run (equal under ``"corrupt"`` only);
- the AUROC against the planted circuit, from true- and false-positive counts derived by hand;
- MIB's importances file: a round trip, MIB's edge count (counted by hand from EAP-IG's graph),
  and a file written by hand with EAP-IG's edge names.
"""

import json
import math

import numpy as np
import pytest
import torch

from grok_circuits import edge_attribution, faithfulness
from grok_circuits.analysis.edges.faithfulness import EDGE_ABLATIONS, Faithfulness
from grok_circuits.analysis.edges.graph import EdgeGraph
from grok_circuits.analysis.edges.mib import (
    MIB_FRACTIONS,
    edge_auroc,
    read_mib_importances,
    write_mib_importances,
)
from grok_circuits.model import logits_at
from tests.analysis.circuits.test_planted_circuit import build_planted, build_planted_pairs

#: MIB-circuit-track, MIB_circuit_track/evaluation.py, evaluate_area_under_curve's percentages.
MIB_LIST = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]
#: The planted model's circuit: the head reads x as its value at x, feeds MLP1 at "=", which
#: writes the answer.
PATH = [("embed", "L0H0.v", 0), ("L0H0", "MLP1", 1), ("MLP1", "logits", 1)]


@pytest.fixture(scope="module")
def planted():
    model, pairs = build_planted(), build_planted_pairs()
    return model, pairs, edge_attribution(model, pairs, method="eap")


def _trapezoid(x, y):
    return sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1))


def test_the_grid_is_mibs():
    assert list(MIB_FRACTIONS) == MIB_LIST


def test_cpr_and_cmd_are_mibs_trapezoids_on_a_given_curve():
    n = len(MIB_LIST)
    curve = torch.tensor([0.0] * 8 + [0.5, 1.0])  # nothing up to 20%, half at 50%, all at 100%
    f = Faithfulness(
        sizes=torch.tensor([int(p * 1000) for p in MIB_LIST]),
        n_edges=1000,
        faithfulness=curve,
        completeness=torch.full((n,), math.nan),
        random_faithfulness=torch.stack([curve, torch.ones(n)], 1),
        random_completeness=torch.full((n, 2), math.nan),
        full_metric=1.0,
        empty_metric=0.0,
        ablation="corrupt",
        positions=True,
        seed=0,
        grid=tuple(MIB_LIST),
    )
    # by hand: the area under is the two last trapezoids, 0.3 * 0.25 + 0.5 * 0.75
    assert f.cpr == pytest.approx(0.3 * 0.25 + 0.5 * 0.75)
    # the area from 1: 1 over 0.001..0.2, then the two last trapezoids of 1 - f
    assert f.cmd == pytest.approx((0.2 - 0.001) + 0.3 * 0.75 + 0.5 * 0.25)
    # a curve at 1 everywhere: CPR is the grid's width, CMD 0
    assert f.random_cpr.tolist() == pytest.approx([f.cpr, 0.999])
    assert f.random_cmd.tolist() == pytest.approx([f.cmd, 0.0])
    s = f.summary()
    assert s["cpr"] == f.cpr and s["random cmd"] == pytest.approx((f.cmd + 0.0) / 2)
    assert s["faithfulness"] == pytest.approx(f.cpr)  # the faithfulness area is CPR
    assert "CPR" in str(f)


def test_the_planted_model_on_mibs_grid(planted):
    model, pairs, scores = planted
    f = faithfulness(model, pairs, scores, n_random=3, completeness=False)
    n = int(scores.valid().sum())
    assert f.sizes.tolist() == [int(p * n) for p in MIB_LIST]
    assert f.fractions.tolist() == MIB_LIST
    # the circuit of k edges recovers everything once it holds the three path edges
    expected = [1.0 if int(p * n) >= 3 else 0.0 for p in MIB_LIST]
    assert f.faithfulness.tolist() == pytest.approx(expected, abs=1e-6)
    assert f.cpr == pytest.approx(_trapezoid(MIB_LIST, expected), abs=1e-6)
    assert f.cmd == pytest.approx(_trapezoid(MIB_LIST, [1 - e for e in expected]), abs=1e-6)
    # the old grid stays available in edges
    old = faithfulness(model, pairs, scores, sizes=[0, 3, n], n_random=1, completeness=False)
    assert old.grid is None and old.fractions.tolist() == pytest.approx([0, 3 / n, 1])


@pytest.mark.parametrize("ablation", EDGE_ABLATIONS)
def test_empty_and_full_circuits_under_every_ablation(planted, ablation):
    model, pairs, scores = planted
    n = int(scores.valid().sum())
    f = faithfulness(
        model, pairs, scores, sizes=[0, n], ablation=ablation, n_random=1, completeness=False
    )
    assert f.faithfulness.tolist() == [0.0, 1.0]  # by the normalisation, under every ablation
    with torch.no_grad():
        logits = logits_at(model(pairs.corrupt), pairs.answer_pos)
    rows = torch.arange(len(pairs))
    corrupt_run = float((logits[rows, pairs.answers] - logits[rows, pairs.corrupt_answers]).mean())
    # only corrupt patching makes the empty circuit the corrupt run; the others are not
    # normalised to the clean-minus-corrupt gap
    if ablation == "corrupt":
        assert f.empty_metric == pytest.approx(corrupt_run, abs=1e-5)
    else:
        assert abs(f.empty_metric - corrupt_run) > 0.1


@pytest.mark.wrong_types
def test_ablations_differ_and_bad_ones_are_refused(planted):
    model, pairs, scores = planted
    empty = {
        a: faithfulness(model, pairs, scores, sizes=[0], ablation=a, n_random=1).empty_metric
        for a in EDGE_ABLATIONS
    }
    # zero: the answer block is never written, so every answer logit is 0
    assert empty["zero"] == pytest.approx(0.0, abs=1e-6)
    assert len({round(v, 4) for v in empty.values()}) >= 3
    with pytest.raises(ValueError, match="ablation="):
        faithfulness(model, pairs, scores, ablation="optimal")
    with pytest.raises(ValueError, match="not both"):
        faithfulness(model, pairs, scores, sizes=[1], fractions=[0.5])
    with pytest.raises(ValueError, match="fractions"):
        faithfulness(model, pairs, scores, fractions=[1.5])


def test_auroc_against_the_planted_circuit(planted):
    _, _, scores = planted
    roc = edge_auroc(scores, PATH)
    n = int(scores.valid().sum())
    # EAP ranks the three path edges first (test_edge_attribution), so the top k holds
    # min(k, 3) of them; k is MIB's greedy count, ceil(f * n)
    ks = [min(n, math.ceil(p * n)) for p in MIB_LIST]
    tpr = [min(k, 3) / 3 for k in ks]
    fpr = [(k - min(k, 3)) / (n - 3) for k in ks]
    assert list(roc.sizes) == ks
    assert list(roc.tpr) == pytest.approx(tpr)
    assert list(roc.fpr) == pytest.approx(fpr)
    assert roc.auroc == pytest.approx(_trapezoid(np.array(fpr) / fpr[-1], tpr))
    assert roc.auroc > 0.95
    # the same circuit as a mask; and the worst ranking (the path last), whose only true
    # positives come in the grid's last step (MIB's coarse grid leaves it a quarter)
    mask = torch.zeros_like(scores.valid())
    for s, d, p in PATH:
        mask[scores.graph.sources.index(s), scores.graph.destinations.index(d), p] = True
    assert edge_auroc(scores, mask).auroc == pytest.approx(roc.auroc)
    raw = torch.where(mask, 0.0, 1.0 + scores.raw)
    flipped = type(scores)(**{**scores.__dict__, "raw": raw})
    worst_tp = [max(0, k - (n - 3)) for k in ks]
    worst_tpr = [t / 3 for t in worst_tp]
    worst_fpr = [(k - t) / (n - 3) for k, t in zip(ks, worst_tp)]
    worst = edge_auroc(flipped, PATH)
    assert worst.auroc == pytest.approx(_trapezoid(worst_fpr, worst_tpr))
    assert worst.auroc < 0.3
    # summed over positions: the same three (source, destination) pairs
    assert edge_auroc(scores, [e[:2] for e in PATH]).positions is False
    with pytest.raises(ValueError, match="not in this model's graph"):
        edge_auroc(scores, [("L9H0", "logits", 0)])
    frame = roc.to_frame()
    assert list(frame["edges"]) == ks and roc.summary()["auroc"] == roc.auroc
    roc.plot()


# ----------------------------------------------------------------------------- interop
def _mib_edge_count(n_layers, n_heads):
    """Edges of MIB's graph (EAP-IG's Graph.from_model), counted by hand: each layer's q, k and
    v inputs read every earlier node, its MLP those and the layer's heads, the logits all."""
    total, earlier = 0, 1  # the input node
    for _ in range(n_layers):
        total += 3 * n_heads * earlier + (earlier + n_heads)
        earlier += n_heads + 1
    return total + earlier


def test_importances_round_trip(planted, tmp_path):
    model, pairs, scores = planted
    path = tmp_path / "importances.json"
    write_mib_importances(scores, path)
    d = json.loads(path.read_text())
    g = scores.graph
    assert len(d["edges"]) == _mib_edge_count(g.n_layers, g.n_heads) == g.n_edges
    assert d["cfg"] == {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 0}
    s, t = g.sources.index("L0H0"), g.destinations.index("MLP1")
    assert d["edges"]["a0.h0->m1"]["score"] == pytest.approx(float(scores.raw[s, t].sum()))
    back = read_mib_importances(path, graph=g, pos_labels=pairs.pos_labels)
    torch.testing.assert_close(back.raw.sum(-1), scores.raw.sum(-1), rtol=0, atol=0)
    assert torch.equal(back.ranking(positions=False), scores.ranking(positions=False))
    # a circuit read from a file is scored here as any other
    mine = faithfulness(model, pairs, scores, positions=False, n_random=1, completeness=False)
    theirs = faithfulness(model, pairs, back, positions=False, n_random=1, completeness=False)
    torch.testing.assert_close(theirs.faithfulness, mine.faithfulness)
    # a circuit marks its edges (summed over positions) in the graph
    write_mib_importances(scores.circuit(top_k=3), path)
    d = json.loads(path.read_text())
    kept = {name for name, e in d["edges"].items() if e["in_graph"]}
    assert kept == {"input->a0.h0<v>", "a0.h0->m1", "m1->logits"}
    assert {n for n, v in d["nodes"].items() if v["in_graph"]} == {"input", "a0.h0", "m1", "logits"}


def test_a_file_written_by_hand_in_mibs_format_loads(tmp_path):
    # one layer, one head: EAP-IG's names for its 6 edges
    edges = {
        "input->a0.h0<q>": 0.1,
        "input->a0.h0<k>": -0.2,
        "input->a0.h0<v>": 0.3,
        "input->m0": 0.4,
        "a0.h0->m0": 0.5,
        "input->logits": 0.6,
        "a0.h0->logits": -0.7,
        "m0->logits": 0.8,
    }
    text = json.dumps(
        {
            "cfg": {"n_layers": 1, "n_heads": 1, "parallel_attn_mlp": False, "d_model": 8},
            "nodes": {n: {"in_graph": True} for n in ("input", "a0.h0", "m0", "logits")},
            "edges": {n: {"score": s, "in_graph": True} for n, s in edges.items()},
        }
    )
    path = tmp_path / "hand.json"
    path.write_text(text)
    scores = read_mib_importances(path)
    g = scores.graph
    assert g.sources == ("embed", "L0H0", "MLP0")
    assert g.destinations == ("L0H0.q", "L0H0.k", "L0H0.v", "MLP0", "logits")
    assert len(scores.top(10, False)) == 8
    summed = scores.raw.sum(-1)
    assert float(summed[0, 1]) == pytest.approx(-0.2)  # embed -> L0H0.k
    assert float(summed[1, 3]) == pytest.approx(0.5)  # L0H0 -> MLP0
    assert float(summed[1, 4]) == pytest.approx(-0.7)  # L0H0 -> logits
    assert float(summed[2, 4]) == pytest.approx(0.8)  # MLP0 -> logits
    assert [e.source + "->" + e.destination for e, _ in scores.top(3, False)] == [
        "MLP0->logits",
        "L0H0->logits",
        "embed->logits",
    ]
    # an attention-only graph lacks MIB's MLP edges: non-zero scores on them are refused
    with pytest.raises(ValueError, match="lacks"):
        read_mib_importances(path, graph=EdgeGraph(1, 1, False))
    with pytest.raises(ValueError, match="layers"):
        read_mib_importances(path, graph=EdgeGraph(2, 1, True))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"edges": {}}))
    with pytest.raises(ValueError, match="not an MIB importances file"):
        read_mib_importances(bad)
