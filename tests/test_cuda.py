"""The analyses on a CUDA model give what they give on the CPU (skipped without a GPU).

``Run.model()`` puts the model on CUDA whenever one is present, so every analysis must accept a
model on the GPU with pairs and splits built on the CPU. The reference is the same call with the
same weights on the CPU: the tables must agree to float32 rounding, and whatever is counted
(accuracies, circuits) exactly.
"""

import os
from pathlib import Path

import pytest
import torch

from grok_circuits.analysis import (
    accuracy,
    accuracy_under_ablation,
    causal_trace,
    edge_attribution,
    faithfulness,
    find_circuit,
    logit_difference,
    logit_lens,
    make_pairs,
    trace_reasoning,
)
from grok_circuits.backend import supports
from grok_circuits.runs.load import load_run

RUNS = Path(__file__).parents[1] / "data" / "runs"
# GROK_TEST_DEVICE=cpu runs the same comparisons CPU against CPU, to check the test itself
DEVICE = os.environ.get("GROK_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"
)

TOL = dict(atol=2e-4, rtol=2e-4)


@pytest.fixture(scope="module")
def models():
    run = load_run(RUNS / "composition")
    return run, run.model(device="cpu"), run.model(device=DEVICE)


@pytest.mark.skipif(DEVICE != "cuda", reason="checks the default device on a GPU")
def test_run_model_lands_on_cuda_by_default(models):
    run, _, _ = models
    assert run.model().W_U.device.type == "cuda"


def test_accuracy_and_ablation(models):
    run, cpu, gpu = models
    split = run.task.splits["test_id"]
    assert accuracy(gpu, split) == accuracy(cpu, split)
    for comps in ([], ["MLP2", "L1H0"]):
        assert accuracy_under_ablation(gpu, split, comps) == accuracy_under_ablation(
            cpu, split, comps
        )


def test_causal_trace_and_logit_lens(models):
    run, cpu, gpu = models
    pairs = make_pairs(run.task, "r1", n_examples=100)
    metric = logit_difference(pairs.answer_pos, pairs.clean_answers, pairs.corrupt_answers)
    a = causal_trace(cpu, pairs.clean, pairs.corrupt, metric)
    gpu_pairs = pairs.to(DEVICE)
    metric_gpu = logit_difference(
        gpu_pairs.answer_pos, gpu_pairs.clean_answers, gpu_pairs.corrupt_answers
    )
    b = causal_trace(gpu, gpu_pairs.clean, gpu_pairs.corrupt, metric_gpu)
    torch.testing.assert_close(b.scores.cpu(), a.scores, **TOL)
    lens_a = logit_lens(cpu, pairs.clean, pairs.answers, pairs.answer_pos)
    lens_b = logit_lens(gpu, pairs.clean, pairs.answers, pairs.answer_pos)
    assert torch.equal(lens_b.ranks.cpu(), lens_a.ranks)


def test_trace_reasoning_and_find_circuit(models):
    run, cpu, gpu = models
    a, b = trace_reasoning(cpu, run.task), trace_reasoning(gpu, run.task)
    torch.testing.assert_close(b.strength.scores.cpu(), a.strength.scores, **TOL)
    assert torch.equal(b.lens.ranks.cpu(), a.lens.ranks)
    ca = find_circuit(cpu, run.task, top_k=6, n_examples=100)
    cb = find_circuit(gpu, run.task, top_k=6, n_examples=100)
    assert ca.components == cb.components
    assert ca.clean_accuracy == cb.clean_accuracy


def test_edges_and_faithfulness(models):
    run, cpu, gpu = models
    if not supports("edge_graph", gpu):
        pytest.skip("this backend has no edge graph")
    pairs = make_pairs(run.task, "r1", n_examples=64)
    a = edge_attribution(cpu, pairs, method="eap", batch_size=32)
    b = edge_attribution(gpu, pairs, method="eap", batch_size=32)
    torch.testing.assert_close(b.raw.cpu(), a.raw, atol=1e-3, rtol=1e-3)
    fa = faithfulness(cpu, pairs, a, sizes=[8], n_random=3)
    fb = faithfulness(gpu, pairs, a, sizes=[8], n_random=3)
    torch.testing.assert_close(fb.faithfulness.cpu(), fa.faithfulness, **TOL)
    torch.testing.assert_close(fb.random_faithfulness.cpu(), fa.random_faithfulness, **TOL)
