"""Edge attribution and faithfulness, each against an independent reference:

- EAP's edge scores against the first-order Taylor estimate computed by hand: the derivative of
  the metric along the edge's corrupt-minus-clean direction, added at the destination's input
  through TransformerLens' own ``hook_result`` values;
- EAP-IG's node sums against exact activation patching by ``transformer_lens.patching`` on a
  shipped trained run;
- faithfulness against the plain clean and corrupt runs (full and empty graphs) and against a
  slow loop that ablates edge by edge;
- a planted path (tests/analysis/circuits/test_planted_circuit.py's model) that EAP must rank first.
"""

import contextlib
import functools
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from transformer_lens import patching

from grok_circuits import (
    PromptPairs,
    compare_edges,
    edge_attribution,
    faithfulness,
    load_run,
    make_pairs,
    over_checkpoints,
)
from grok_circuits.analysis.edges.graph import EdgeGraph, head_outputs
from grok_circuits.backend import split_qkv_hooks, supports
from grok_circuits.model import build_model, load_weights, logits_at, model_weights
from tests.analysis.circuits.test_planted_circuit import build_planted, build_planted_pairs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[3] / "data" / "runs" / "composition"


@pytest.fixture(scope="module")
def planted():
    return build_planted(), build_planted_pairs()


#: Where the references read each head's output: TransformerLens' own ``hook_result`` where the
#: model has it (3.x); the 4.3 bridge offers it only for joint-QKV attention, so there ``hook_z``
#: times ``W_O``.
RESULT = supports("attn_result")
HEADS = "attn.hook_result" if RESULT else "attn.hook_z"


def _heads(model, cache, layer):
    """``[batch, pos, head, d_model]``: each head's output, from a cache of :data:`HEADS`."""
    act = cache[f"blocks.{layer}.{HEADS}"]
    return act if RESULT else head_outputs(model, layer, act)


@contextlib.contextmanager
def _reference_settings(model):
    """TransformerLens' own per-head outputs (``hook_result``), q/k/v inputs and MLP input for
    the references below. The 4.x bridge has no per-head q/k/v input or result of its own:
    there the references reach the inputs through ``backend.split_qkv_hooks`` (which
    ``_logit_diff`` applies) and the outputs through :func:`_heads`, and
    ``tests/backend/test_backend.py`` holds the bridge's scores to those recorded under 3.x."""
    native = supports("attn_result") and supports("split_qkv_input")
    if native:
        model.set_use_attn_result(True)
        model.set_use_split_qkv_input(True)
    model.set_use_hook_mlp_in(True)
    try:
        yield
    finally:
        if native:
            model.set_use_attn_result(False)
            model.set_use_split_qkv_input(False)
        model.set_use_hook_mlp_in(False)


def _logit_diff(model, pairs, tokens, hooks=()):
    with model.hooks(fwd_hooks=split_qkv_hooks(model, list(hooks))):
        a = logits_at(model(tokens), pairs.answer_pos)
    rows = torch.arange(len(pairs))
    return (a[rows, pairs.answers] - a[rows, pairs.corrupt_answers]).mean()


def _hand_taylor(model, pairs, graph, s, d, p, alpha=1.0):
    """-(d/d eps) of the mean logit difference when eps * (a_corrupt - a_clean) of source ``s``
    at position ``p`` is added to destination ``d``'s input, at the input ``corrupt + alpha
    (clean - corrupt)``: the first-order estimate of the drop from corrupting that one edge."""
    with _reference_settings(model):

        def outputs(tokens):
            hook_names = ["blocks.0.hook_resid_pre"] + [
                f"blocks.{layer}.{x}"
                for layer in range(graph.n_layers)
                for x in (HEADS, "hook_mlp_out")
            ]
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hook_names)
            return cache

        clean, corrupt = outputs(pairs.clean), outputs(pairs.corrupt)
        comp = graph.source_component(s)
        if comp is None:
            name, pick = "blocks.0.hook_resid_pre", (lambda c: c[name][:, p])
        elif comp.head is None:
            name, pick = f"blocks.{comp.layer}.hook_mlp_out", (lambda c: c[name][:, p])
        else:
            pick = lambda c: _heads(model, c, comp.layer)[:, p, comp.head]  # noqa: E731
        direction = (pick(corrupt) - pick(clean)).detach()
        slot = graph.destination_slot(d)
        target = graph.destination_component(d)
        if slot == "logits":
            dname = f"blocks.{graph.n_layers - 1}.hook_resid_post"
        elif slot == "mlp":
            dname = f"blocks.{target.layer}.hook_mlp_in"
        else:
            dname = f"blocks.{target.layer}.hook_{slot}_input"
        eps = torch.zeros((), requires_grad=True)

        def add(act, hook):
            act = act.clone()
            if act.dim() == 4:
                act[:, p, target.head] = act[:, p, target.head] + eps * direction
            else:
                act[:, p] = act[:, p] + eps * direction
            return act

        def interpolate(act, hook):
            return corrupt["blocks.0.hook_resid_pre"] + alpha * (
                clean["blocks.0.hook_resid_pre"] - corrupt["blocks.0.hook_resid_pre"]
            )

        hooks = [("blocks.0.hook_resid_pre", interpolate), (dname, add)]
        with torch.enable_grad():
            value = _logit_diff(model, pairs, pairs.clean, hooks)
            (grad,) = torch.autograd.grad(value, eps)
        return -float(grad)


def test_eap_equals_the_first_order_taylor_estimate_by_hand(small):
    model, pairs = small
    scores = edge_attribution(model, pairs, method="eap")
    g = scores.graph
    valid = torch.nonzero(scores.valid())
    rng = np.random.default_rng(0)
    chosen = valid[rng.choice(len(valid), 25, replace=False)].tolist()
    chosen.append([g.mlp_source(1), g.logits_destination, 2])  # an MLP into the logits
    chosen.append([0, g.qkv_destination(2, 1) + 1, 0])  # the embeddings into L2H1's key
    for s, d, p in chosen:
        expected = _hand_taylor(model, pairs, g, s, d, p)
        torch.testing.assert_close(float(scores.raw[s, d, p]), expected, rtol=1e-4, atol=1e-5)
    # invalid pairs (a destination reading a later source) score nothing
    assert (scores.raw[~scores.valid()] == 0).all()


def test_eap_ig_averages_the_gradients_along_the_path(small):
    model, pairs = small
    scores = edge_attribution(model, pairs, method="eap-ig", ig_steps=3)
    g = scores.graph
    s, d, p = g.head_source(0, 1), g.qkv_destination(1, 2), 1  # L0H1 -> L1H0.v at r1
    expected = np.mean([_hand_taylor(model, pairs, g, s, d, p, alpha=k / 3) for k in (1, 2, 3)])
    torch.testing.assert_close(float(scores.raw[s, d, p]), float(expected), rtol=1e-4, atol=1e-5)
    one = edge_attribution(model, pairs, method="eap-ig", ig_steps=1)
    torch.testing.assert_close(one.raw, edge_attribution(model, pairs, method="eap").raw)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    rank = lambda x: pd.Series(x.numpy()).rank().to_numpy()  # noqa: E731
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def test_eap_ig_node_scores_follow_exact_patching_on_a_trained_run():
    """Node score = the sum over the destinations a node feeds (chain rule); exact patching of
    each head's output (all positions) and each MLP's output (per position) by
    transformer_lens.patching, noising: the clean run with one corrupt activation."""
    run = load_run(SHIPPED)
    model = run.model(run.steps[-1])
    pairs = make_pairs(run.task, None, "train_inferred", n_examples=150, seed=0)

    def metric(logits):
        a = logits_at(logits, pairs.answer_pos)
        rows = torch.arange(len(a))
        return (a[rows, pairs.answers] - a[rows, pairs.corrupt_answers]).mean()

    with torch.no_grad():
        _, corrupt_cache = model.run_with_cache(pairs.corrupt)
        clean = metric(model(pairs.clean))
        heads = clean - patching.get_act_patch_attn_head_out_all_pos(
            model, pairs.clean, corrupt_cache, metric
        )
        mlps = clean - patching.get_act_patch_mlp_out(model, pairs.clean, corrupt_cache, metric)
    scores = edge_attribution(model, pairs, method="eap-ig", ig_steps=5)
    node, g = scores.raw.sum(1), scores.graph
    est_heads = torch.tensor(
        [
            [float(node[g.head_source(i, h)].sum()) for h in range(g.n_heads)]
            for i in range(g.n_layers)
        ]
    )
    est_mlps = torch.stack([node[g.mlp_source(i)] for i in range(g.n_layers)])
    exact = torch.cat([heads.flatten(), mlps.flatten()])
    estimate = torch.cat([est_heads.flatten(), est_mlps.flatten()])
    assert _spearman(exact, estimate) >= 0.9
    # the node view is the same sum, normalised by the swap's whole effect
    torch.testing.assert_close(scores.node_scores(), node / scores.effect)


def test_the_planted_path_ranks_first(planted):
    planted, pairs = planted
    for method in ("eap", "eap-ig"):
        scores = edge_attribution(planted, pairs, method=method)
        top = scores.top(3)
        assert top[0][0] == ("MLP1", "logits", 1)
        assert {e for e, _ in top} == {
            ("MLP1", "logits", 1),  # the MLP writes the answer at "="
            ("L0H0", "MLP1", 1),  # the head's moved copy of x feeds it at "="
            ("embed", "L0H0.v", 0),  # the head reads x's embedding as its value at x
        }
        assert top[0][1] == pytest.approx(1.0)  # the answer's whole logit difference
        rest = scores.normalized.abs()[scores.valid()].sort(descending=True).values[3:]
        assert float(rest.max()) < 1e-6  # nothing else carries anything
    circuit = scores.circuit(top_k=3)
    assert len(circuit) == 3 and [str(c) for c in circuit.components] == ["L0H0", "MLP1"]
    # two of the three edges are no path: pruning leaves nothing dangling
    assert len(scores.circuit(top_k=2, prune=False)) == 2
    assert len(scores.circuit(top_k=2)) == 0
    # summed over positions, the same three edges
    summed = scores.circuit(top_k=3, positions=False)
    assert {e for e in summed.edges} == {
        ("MLP1", "logits", None),
        ("L0H0", "MLP1", None),
        ("embed", "L0H0.v", None),
    }


def test_planted_faithfulness_needs_the_whole_path(planted):
    planted, pairs = planted
    scores = edge_attribution(planted, pairs, method="eap")
    f = faithfulness(planted, pairs, scores, sizes=[0, 1, 2, 3, 4], n_random=20)
    assert f.faithfulness.tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0, 1.0], abs=1e-6)
    assert f.completeness[1:].tolist() == pytest.approx([1.0] * 4, abs=1e-6)
    assert f.auc["faithfulness"] > f.auc["random faithfulness"]


def test_faithfulness_of_the_full_and_empty_graph_are_the_clean_and_corrupt_runs(small):
    model, pairs = small
    scores = edge_attribution(model, pairs, method="eap")
    f = faithfulness(model, pairs, scores, sizes=[0, scores.graph.n_edges * 3], n_random=2)
    with torch.no_grad():
        clean = float(_logit_diff(model, pairs, pairs.clean))
        corrupt = float(_logit_diff(model, pairs, pairs.corrupt))
    assert f.full_metric == pytest.approx(clean, abs=1e-5)
    assert f.empty_metric == pytest.approx(corrupt, abs=1e-5)  # every edge corrupt = corrupt run
    assert f.faithfulness.tolist() == [0.0, 1.0]
    assert f.completeness.tolist() == [0.0, 1.0]


def test_faithfulness_refuses_the_scores_of_another_model(small):
    """Another model of the same shape (another seed, or another checkpoint of a run) passed
    every check: its faithfulness was computed with the first model's edge ranking."""
    model, pairs = small
    scores = edge_attribution(model, pairs, method="eap")
    other = build_model(model.cfg, seed=7).eval()
    with pytest.raises(ValueError, match="the scores were computed on another model than this"):
        faithfulness(other, pairs, scores, sizes=[1], n_random=1)
    same = build_model(model.cfg, seed=7).eval()
    load_weights(same, model_weights(model))  # the same weights, in another object
    assert faithfulness(same, pairs, scores, sizes=[1], n_random=1).sizes.tolist() == [1]


def _slow_metric(model, pairs, graph, keep, ablation):
    """Edge ablation by hand: at every destination, for every position, head and source one at
    a time, an ablated edge swaps the source's current output for its ablated one; per-head
    outputs from TransformerLens' ``hook_result``."""
    with _reference_settings(model):
        names = ["blocks.0.hook_resid_pre"]
        for layer in range(graph.n_layers):
            names += [f"blocks.{layer}.{HEADS}", f"blocks.{layer}.hook_mlp_out"]
        with torch.no_grad():
            _, abl_cache = model.run_with_cache(
                pairs.corrupt if ablation == "corrupt" else pairs.clean,
                names_filter=lambda n: n in names,
            )

        def source(cache, s):
            c = graph.source_component(s)
            if c is None:
                return cache["blocks.0.hook_resid_pre"]
            if c.head is None:
                return cache[f"blocks.{c.layer}.hook_mlp_out"]
            return _heads(model, cache, c.layer)[:, :, c.head]

        abl = [source(abl_cache, s) for s in range(graph.n_sources)]
        if ablation == "mean-positional":
            abl = [a.mean(0, keepdim=True).expand_as(a) for a in abl]
        elif ablation == "mean":  # every answer at the last position: all positions pooled
            assert bool((pairs.answer_pos == pairs.width - 1).all())
            abl = [a.mean((0, 1), keepdim=True).expand_as(a) for a in abl]
        elif ablation == "zero":
            abl = [torch.zeros_like(a) for a in abl]
        current: dict = {}

        def record(act, hook, name):
            current[name] = act
            return act

        def patch(dests):
            def hook(act, hook):
                act = act.clone()
                for d in dests:
                    head = graph.destination_component(d)
                    for p in range(act.shape[1]):
                        for s in range(graph.n_sources):
                            if graph.valid[s, d] and not keep[s, d, p]:
                                now = source(current, s)[:, p] - abl[s][:, p]
                                if act.dim() == 4:
                                    act[:, p, head.head] -= now
                                else:
                                    act[:, p] -= now
                return act

            return hook

        hooks = [(n, functools.partial(record, name=n)) for n in names]
        for layer in range(graph.n_layers):
            for w, x in enumerate("qkv"):
                first = graph.qkv_destination(layer, w)
                hooks.append(
                    (f"blocks.{layer}.hook_{x}_input", patch(range(first, first + graph.n_heads)))
                )
            hooks.append((f"blocks.{layer}.hook_mlp_in", patch([graph.mlp_destination(layer)])))
        hooks.append(
            (f"blocks.{graph.n_layers - 1}.hook_resid_post", patch([graph.logits_destination]))
        )
        with torch.no_grad():
            return float(_logit_diff(model, pairs, pairs.clean, hooks))


@pytest.mark.parametrize("ablation", ["corrupt", "zero", "mean", "mean-positional"])
def test_faithfulness_equals_a_slow_loop_over_edges(small, ablation):
    model, pairs = small
    pairs = PromptPairs.concat([pairs])  # one prompt format: the mean is over all pairs
    scores = edge_attribution(model, pairs, method="eap-ig", ig_steps=2)
    k = 40
    f = faithfulness(model, pairs, scores, sizes=[k], ablation=ablation, n_random=1)
    g = scores.graph
    keep = torch.zeros_like(scores.valid())
    keep.view(-1)[scores.ranking()[:k]] = True
    full = _slow_metric(model, pairs, g, scores.valid(), ablation)
    empty = _slow_metric(model, pairs, g, torch.zeros_like(keep), ablation)
    mine = _slow_metric(model, pairs, g, keep, ablation)
    rest = _slow_metric(model, pairs, g, scores.valid() & ~keep, ablation)
    assert f.full_metric == pytest.approx(full, abs=1e-4)
    assert f.empty_metric == pytest.approx(empty, abs=1e-4)
    # back to metric units: a random model's swap moves the metric little, so normalised
    # values magnify float rounding
    span = f.full_metric - f.empty_metric
    assert float(f.faithfulness[0]) * span + f.empty_metric == pytest.approx(mine, abs=1e-4)
    assert f.full_metric - float(f.completeness[0]) * span == pytest.approx(rest, abs=1e-4)


def test_settings_and_gradients_are_restored_even_on_error(small, no_hooks_left):
    model, pairs = small
    no_hooks_left(model)
    before = (model.cfg.use_split_qkv_input, model.cfg.use_attn_result, model.cfg.use_hook_mlp_in)
    flags = [p.requires_grad for p in model.parameters()]

    def broken(answer_logits, pairs):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        edge_attribution(model, pairs, metric=broken)
    edge_attribution(model, pairs, method="eap")
    after = (model.cfg.use_split_qkv_input, model.cfg.use_attn_result, model.cfg.use_hook_mlp_in)
    assert after == before
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.wrong_types
def test_bad_input_is_one_clear_error(small, tiny_composition):
    model, pairs = small
    with pytest.raises(ValueError, match="method="):
        edge_attribution(model, pairs, method="acdc")
    with pytest.raises(ValueError, match="differentiable"):
        edge_attribution(model, pairs, metric="strength")
    with pytest.raises(ValueError, match="ig_steps"):
        edge_attribution(model, pairs, ig_steps=0)
    no_corrupt = PromptPairs(clean=pairs.clean, corrupt=pairs.corrupt, answers=pairs.answers)
    with pytest.raises(ValueError, match="corrupt_answers"):
        edge_attribution(model, no_corrupt)
    scores = edge_attribution(model, pairs, method="eap")
    with pytest.raises(ValueError, match="outside"):
        faithfulness(model, pairs, scores, sizes=[10**6])
    with pytest.raises(ValueError, match="ablation="):
        faithfulness(model, pairs, scores, sizes=[1], ablation="optimal")
    with pytest.raises(ValueError, match="EdgeScores"):
        faithfulness(model, pairs, "L0H0")
    with pytest.raises(ValueError, match="top_k or threshold"):
        scores.circuit(top_k=3, threshold=0.1)


def test_over_checkpoints_stacks_edge_scores_and_the_change_plots(tiny_run, tiny_composition):
    pairs = make_pairs(tiny_composition, "r1", n_examples=16, seed=0)
    over = over_checkpoints(
        tiny_run, lambda m: edge_attribution(m, pairs, ig_steps=2), progress=False
    )
    stacked = over.stack(lambda e: e.raw)
    g = over.results[0].graph
    assert stacked.shape == (len(over.steps), g.n_sources, g.n_destinations, pairs.width)
    frame = over.to_frame()
    assert list(frame.index) == list(over.steps) and "top edge" in frame.columns
    first, last = over.results[0], over.results[-1]
    change = compare_edges(first, last, top_k=4)
    expect = set(first.ranking()[:4].tolist()) | set(last.ranking()[:4].tolist())
    assert len(change.edges) == len(expect)
    i = change.edges.index(last.top(1)[0][0])
    assert float(change.after[i]) == pytest.approx(last.top(1)[0][1])
    for fig in (
        change.plot(),
        last.circuit(top_k=30).plot(),
        faithfulness(
            over.results and tiny_run.model(over.steps[-1]),
            pairs,
            last,
            sizes=[0, 5, 20],
            n_random=2,
        ).plot(),
    ):
        assert fig.axes
        plt.close(fig)
    assert EdgeGraph.of(tiny_run.model(over.steps[-1])) == g


def _expected_random_iou(n: int, k1: int, k2: int) -> float:
    """E[IoU] of two uniform random sets of sizes k1, k2 out of n (hypergeometric overlap)."""
    from math import comb

    total = 0.0
    for i in range(0, min(k1, k2) + 1):
        p = comb(k1, i) * comb(n - k1, k2 - i) / comb(n, k2)
        total += p * i / (k1 + k2 - i)
    return total


def test_edge_level_reuse_against_counts_by_hand(small, tiny_composition):
    from grok_circuits.analysis.edges.reuse import edge_reuse

    model, pairs_h = small
    pairs_r2 = make_pairs(tiny_composition, "r2", n_examples=24, seed=0)
    g = EdgeGraph.of(model)
    report = edge_reuse(
        model, [pairs_h, pairs_r2], ("a", "b"), top_k=12, n_random=3000, n_random_ablations=3
    )
    assert report.tasks == ("a", "b") and len(report.circuits["a"]) == 12
    expected = _expected_random_iou(g.n_edges, 12, 12)
    assert float(report.random_iou.mean()) == pytest.approx(expected, abs=0.01)
    # each task's own knock-out is one minus its circuit's completeness drop
    f = faithfulness(model, pairs_h, report.circuits["a"], n_random=1)
    assert report.kept["a"]["a"] == pytest.approx(1 - float(f.completeness[0]), abs=1e-5)
    assert report.faithfulness["a"] == pytest.approx(float(f.faithfulness[0]), abs=1e-5)
    # the whole graph as the circuit: knocking it out leaves nothing, and both circuits agree
    every = edge_reuse(
        model,
        [pairs_h, pairs_r2],
        ("a", "b"),
        top_k=g.n_edges,
        n_random=2,
        n_random_ablations=2,
    )
    assert every.iou == 1.0
    assert all(every.kept[s][t] == pytest.approx(0.0, abs=1e-6) for s in "ab" for t in "ab")
    fig = report.plot()
    assert fig.axes
    plt.close(fig)
