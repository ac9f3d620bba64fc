"""trace_hops: the logit lens of each hop's entity after each iteration, on planted models whose
grid is known by hand, on a real recurrent model, and its drift (overthinking)."""

import pytest
import torch
from torch.testing import assert_close

from grok_circuits import backend
from grok_circuits.analysis import HopTrace, PromptPairs, logit_lens, trace_hops
from grok_circuits.model import build_model, load_weights, model_config, model_weights
from grok_circuits.recurrence import Recurrence, iterations_of

V = 16  # the planted models' vocabulary, residual width and MLP width


def chain_step(y: torch.Tensor) -> torch.Tensor:
    """The planted "relation": the entity after ``y`` is ``y + 1`` (mod V)."""
    return (y + 1) % V


def planted_model(n_layers: int, recurrence: Recurrence | None = None):
    """A model whose every block moves the residual stream one entity along the chain.

    The residual stream is the one-hot vocabulary (W_E = W_U = I, no positions, no LayerNorm,
    attention off). The MLP reads ``relu(r - 0.5)``, so only the entity at 1 fires (with 0.5),
    and writes ``2 * 0.5 = 1`` on its successor and ``-0.5`` on itself: after block ``i`` the
    ``i``-th successor of the last token is at 1, every earlier entity at 0.5, all else at 0.
    Blocks share their weights, so the same model is a plain one of ``n_layers`` blocks or a
    recurrent one (core of one block) run ``n_layers`` times."""
    cfg = backend.make_config(
        n_layers=n_layers,
        d_model=V,
        n_heads=1,
        d_head=V,
        d_mlp=V,
        d_vocab=V,
        n_ctx=8,
        act_fn="relu",
        normalization_type=None,
    )
    model = build_model(cfg, seed=0, recurrence=recurrence).eval()
    weights = {k: torch.zeros_like(v) for k, v in model_weights(model).items()}
    step = torch.zeros(V, V)
    step[torch.arange(V), chain_step(torch.arange(V))] = 2.0
    for name in weights:
        if name.endswith(("W_E", "W_U")):
            weights[name] = torch.eye(V)
        elif name.endswith("mlp.W_in"):
            weights[name] = torch.eye(V)
        elif name.endswith("mlp.b_in"):
            weights[name] = torch.full((V,), -0.5)
        elif name.endswith("mlp.W_out"):
            weights[name] = step - torch.eye(V)
        elif name.endswith(("attn.mask", "attn.IGNORE")):
            weights[name] = model_weights(model)[name]
    return load_weights(model, weights)


def chain_pairs(hops: int, n: int = 8) -> PromptPairs:
    """Queries of ``hops`` hops whose last token starts the chain: entity after hop ``j`` is the
    ``j``-th successor of the last token."""
    start = torch.arange(n)
    tokens = torch.stack([(start + 7) % V] * hops + [start], dim=1)  # the earlier tokens: noise
    path = torch.stack([(start + j) % V for j in range(1, hops + 1)], dim=1)
    return PromptPairs(
        clean=tokens, corrupt=tokens, answers=path[:, -1], meta={"path": path[:, :-1]}
    )


def expected_grid(rows: int, hops: int) -> torch.Tensor:
    """By hand: after row i (0-based), hop j's entity (0-based) is at 1 if j == i (rank 0), at
    0.5 if j < i (rank 1: only the current one is above), at 0 if j > i (rank i + 2: the current
    entity, the i earlier ones and the start token are above)."""
    grid = torch.empty(rows, hops)
    for i in range(rows):
        for j in range(hops):
            rank = 0 if j == i else 1 if j < i else i + 2
            grid[i, j] = 1.0 / (rank + 1)
    return grid


@pytest.mark.parametrize("recurrent", [False, True])
def test_a_model_resolving_hop_k_at_iteration_k_gives_a_diagonal_grid(recurrent):
    hops = 4
    spec = Recurrence(core=1, iterations=hops) if recurrent else None
    model = planted_model(hops, spec)
    trace = trace_hops(model, chain_pairs(hops))
    assert isinstance(trace, HopTrace)
    assert trace.recurrent is recurrent
    assert trace.row_labels == (
        ("iter 1", "iter 2", "iter 3", "iter 4")
        if recurrent
        else tuple(f"layer {i}" for i in range(4))
    )
    assert trace.hop_labels == ("e1", "e2", "e3", "answer")
    assert_close(trace.mrr, expected_grid(hops, hops))
    assert torch.equal(trace.mrr.diagonal(), torch.ones(hops))
    assert [trace.resolved_at(h) for h in trace.hop_labels] == [0, 1, 2, 3]
    summary = trace.summary()
    assert summary["resolved answer at"] == trace.row_labels[-1]
    assert summary["answer on top at last row"] == 1.0


def test_rows_are_the_outputs_the_logit_lens_reads_on_a_plain_model(composition_model):
    """On a plain model (no injection) the state after block l is the input of block l + 1:
    trace_hops' ranks are logit_lens' rows 1..n_layers."""
    task_pairs = chain_pairs(2)  # only the token ids matter here
    pairs = PromptPairs(
        clean=task_pairs.clean % 30,
        corrupt=task_pairs.clean % 30,
        answers=task_pairs.answers,
        meta={"bridge": task_pairs.meta["path"][:, 0]},
    )
    trace = trace_hops(composition_model, pairs)
    lens = logit_lens(
        composition_model,
        pairs.clean,
        trace.entities,
        pairs.answer_pos[:, None].expand(-1, 2),
    )
    assert torch.equal(trace.ranks, lens.ranks[1:])


def test_more_iterations_than_the_chain_drift_past_the_answer():
    """Overthinking, planted: run 6 iterations on 3-hop queries; the residual decodes to e1, e2,
    the answer, then to entities beyond it ("other")."""
    model = planted_model(3, Recurrence(core=1, iterations=3))
    trace = trace_hops(model, chain_pairs(3), iterations=6)
    assert iterations_of(model) == 3  # restored
    assert trace.drift_labels == ("answer", "e1", "e2", "other")
    expected = torch.tensor(
        [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]],
        dtype=torch.float,
    )
    assert_close(trace.drift, expected)
    assert trace.best_row == 2
    assert trace.summary()["answer on top at last row"] == 0.0
    frame = trace.to_frame()
    assert list(frame.index) == [f"iter {j}" for j in range(1, 7)]
    assert frame["top is other"].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def test_a_path_through_the_answer_counts_as_the_answer_first():
    model = planted_model(2, Recurrence(core=1, iterations=2))
    pairs = chain_pairs(2)
    looped = PromptPairs(
        clean=pairs.clean,
        corrupt=pairs.clean,
        answers=pairs.meta["path"][:, 0],
        meta={"path": pairs.meta["path"]},
    )  # the "answer" is also e1: iteration 1's top token counts as the answer
    trace = trace_hops(model, looped)
    assert_close(trace.drift[0], torch.tensor([1.0, 0.0, 0.0]))


def test_the_rows_follow_a_real_recurrent_models_iterations(tiny_khop):
    task = tiny_khop
    spec = Recurrence(prelude=1, core=2, coda=1, iterations=2, inject=True)
    model = build_model(model_config(task, "tiny", n_layers=spec.depth()), recurrence=spec).eval()
    for n in (1, 2, 5):
        trace = trace_hops(model, task, split="test_id_3hop", iterations=n, n_examples=20)
        assert trace.row_labels == tuple(f"iter {j}" for j in range(1, n + 1))
        assert trace.blocks == tuple(1 + 2 * j + 1 for j in range(n))
        assert trace.mrr.shape == (n, 3)
        assert trace.entities.shape == (len(trace.top[0]), 3)
    hop = trace_hops(model, task, split="test_id_3hop", position="hop", n_examples=20)
    assert hop.positions[0].tolist() == [1, 2, 3]
    assert iterations_of(model) == 2
    fig = hop.plot()
    assert fig is not None
    assert trace.plot(drift=True) is not None


def test_bad_input_says_what_to_do(composition_model, tiny_composition):
    plain = PromptPairs(clean=[[0, 1, 2]], corrupt=[[0, 1, 2]], answers=[3])
    with pytest.raises(ValueError, match="meta\\['path'\\]"):
        trace_hops(composition_model, plain)
    with pytest.raises(ValueError, match="needs a recurrent-depth model"):
        trace_hops(composition_model, tiny_composition, iterations=3)
    with pytest.raises(ValueError, match="position="):
        trace_hops(composition_model, tiny_composition, position="middle")
    with pytest.raises(ValueError, match="no \\['r1', 'r2'\\]"):
        trace_hops(
            composition_model,
            PromptPairs(clean=[[0, 1, 2]], corrupt=[[0, 1, 2]], answers=[3], meta={"bridge": [4]}),
            position="hop",
        )
