"""The paper-shaped calls reproduce, on the shipped runs, the values the analysis layer gave
before it became data-first (tasks contributing swaps and lens targets instead of the analyses
branching on task names).

``data/pre_refactor_values.json`` was written by the earlier code (commit 118b1f7) with the same
calls, step by step; nothing in it was computed by the code under test. When the comparison
run was re-shipped (phi 3.6, larger initial weights), its three entries were recomputed the same
way: that commit's ``find_circuit``, ``ablation_circuit`` and ``trace_reasoning`` on its own
comparison task (the same data as today's generator: equal token and answer hashes) and the new
run's weights at the recorded step; the same script reproduced the former entries exactly on
the former run.
"""

import json
from pathlib import Path

import pytest
import torch

from grok_circuits import (
    circuit_reuse,
    compare_stages,
    find_circuit,
    load_run,
    make_pairs,
    trace_bridge,
    trace_reasoning,
)

VALUES = json.loads((Path(__file__).parent / "data" / "pre_refactor_values.json").read_text())
DATA = Path(__file__).parents[2] / "data" / "runs"


def close(actual, expected) -> None:
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=torch.float64),
        torch.as_tensor(expected, dtype=torch.float64),
        rtol=1e-5,
        atol=1e-6,
        equal_nan=True,
    )


@pytest.fixture(scope="module")
def composition_run():
    return load_run(DATA / "composition")


def test_trace_bridge_and_pairs_match(composition_run):
    v = VALUES["trace_bridge"]
    t = trace_bridge(composition_run.model(v["step"]), composition_run.task, n_examples=60)
    close(t.bridge_mrr, v["bridge_mrr"])
    close(t.r2_mrr, v["r2_mrr"])
    close(t.answer_mrr, v["answer_mrr"])
    close(t.strength.scores, v["strength"])
    assert t.bridge_layer == v["bridge_layer"]
    cf = VALUES["cf_r1"]
    pairs = make_pairs(composition_run.task, "r1", n_examples=40, seed=3)
    assert pairs.index.tolist() == cf["index"]
    assert pairs.corrupt.tolist() == cf["corrupt"]
    assert pairs.corrupt_answers.tolist() == cf["corrupt_answers"]


def test_compare_stages_matches(composition_run):
    v = VALUES["compare_stages"]
    st = compare_stages(composition_run, memorizing=v["mem"], generalizing=v["gen"], n_examples=60)
    close(st.difference, v["difference"])
    close(st.mrr_difference, v["mrr_difference"])


def test_find_circuit_both_methods_match():
    run = load_run(DATA / "comparison")
    v = VALUES["find_circuit"]
    model = run.model(v["step"])
    c = find_circuit(model, run.task, n_examples=60, top_k=5)
    assert {str(k): s for k, s in c.scores.items()} == pytest.approx(v["scores"], abs=1e-6)
    assert [str(x) for x in c.components] == v["components"]
    close(c.state_scores, v["state_scores"])
    assert (c.n_examples, list(c.n_traced)) == (v["n_examples"], v["n_traced"])
    assert c.clean_accuracy == pytest.approx(v["clean_accuracy"])
    a = VALUES["ablation_circuit"]
    c = find_circuit(model, run.task, n_examples=60, top_k=5, method="ablation")
    assert {str(k): s for k, s in c.scores.items()} == pytest.approx(a["scores"], abs=1e-9)
    assert [str(x) for x in c.components] == a["components"]
    assert c.clean_accuracy == pytest.approx(a["clean_accuracy"])
    r = VALUES["trace_reasoning_comparison"]
    t = trace_reasoning(model, run.task, n_examples=60)
    close(t.lens.mrr, r["mrr"])
    close(t.strength.scores, r["strength"])


def test_circuit_reuse_matches():
    run = load_run(DATA / "mixed")
    v = VALUES["circuit_reuse"]
    rep = circuit_reuse(
        run.model(v["step"]),
        run.task,
        top_k=6,
        n_examples=60,
        n_random=50,
        n_random_ablations=3,
        n_eval=200,
    )
    assert {k: [str(x) for x in c.components] for k, c in rep.circuits.items()} == v["circuits"]
    assert (rep.iou, rep.head_share) == pytest.approx((v["iou"], v["head_share"]))
    assert rep.accuracy == v["accuracy"]
    close(rep.random_iou, v["random_iou"])
    for k, per in v["random_accuracy"].items():
        for u, values in per.items():
            close(rep.random_accuracy[k][u], values)
