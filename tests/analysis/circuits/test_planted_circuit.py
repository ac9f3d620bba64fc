"""A hand-built transformer whose circuit is known: one attention head moves the input, one MLP
looks the answer up, and nothing else carries anything. Both circuit methods must find exactly
those two components, from pairs built out of plain tensors (no task registered).

The model reads ``x =`` and answers ``perm[x]``:

- the embedding writes ``x`` as a one-hot in the *input* block of the residual stream, and the
  ``=`` token a flag outside it; positions add nothing;
- head L0H0 has zero queries and keys, so at the ``=`` position it attends half to ``x`` and half to
  ``=``; its values read only the input block, so it writes ``0.5 * onehot(x)`` into the *moved*
  block;
- MLP1 has one ReLU neuron per value of ``x``, reading the moved block (weight 2, so the neuron of
  ``x`` fires at exactly 1 and the others at 0) and writing ``onehot(perm[x])`` into the *answer*
  block, which is the only block the unembedding reads;
- every other head and MLP0 write nothing.
"""

import pytest
import torch

from grok_circuits import Component, PromptPairs, find_circuit
from grok_circuits.backend import Model, build_model, load_weights, make_config, model_weights

N = 8  # values of x
EQ = N  # the "=" token
PERM = torch.tensor([3, 0, 6, 1, 7, 2, 5, 4])


def build_planted() -> Model:
    """The planted model (see the module docstring)."""
    d_model = 3 * N + 1  # input block, moved block, answer block, the "=" flag
    inp, moved, ans, flag = 0, N, 2 * N, 3 * N
    cfg = make_config(
        n_layers=2,
        d_model=d_model,
        n_ctx=2,
        d_head=N,
        n_heads=2,
        d_mlp=N,
        d_vocab=N + 1,
        d_vocab_out=N,
        act_fn="relu",
        normalization_type=None,
        positional_embedding_type="standard",
        default_prepend_bos=False,
    )
    model = build_model(cfg)
    # written in HookedTransformer's weight format, which loads into either backend
    w = {k: torch.zeros_like(v) for k, v in model_weights(model).items()}
    eye = torch.eye(N)
    w["embed.W_E"][:N, inp : inp + N] = eye
    w["embed.W_E"][EQ, flag] = 1.0
    w["blocks.0.attn.W_V"][0, inp : inp + N, :] = eye
    w["blocks.0.attn.W_O"][0, :, moved : moved + N] = eye
    w["blocks.1.mlp.W_in"][moved : moved + N, :] = 2.0 * eye
    w["blocks.1.mlp.W_out"][:, ans : ans + N] = eye[PERM]  # neuron x -> onehot(perm[x])
    w["unembed.W_U"][ans : ans + N, :] = 10.0 * eye
    return load_weights(model, w).eval()


def build_planted_pairs() -> PromptPairs:
    """Every ``x =`` prompt against every other value of ``x``."""
    x = torch.arange(N).repeat_interleave(N - 1)
    other = torch.tensor([y for i in range(N) for y in range(N) if y != i])
    eq = torch.full_like(x, EQ)
    return PromptPairs(
        clean=torch.stack([x, eq], 1),
        corrupt=torch.stack([other, eq], 1),
        answers=PERM[x],
        corrupt_answers=PERM[other],
        pos_labels=("x", "="),
        swap="x",
    )


@pytest.fixture(scope="module")
def planted() -> Model:
    return build_planted()


@pytest.fixture(scope="module")
def pairs() -> PromptPairs:
    return build_planted_pairs()


def test_the_planted_model_computes_the_task(planted, pairs):
    logits = planted(pairs.clean)[:, -1]
    assert torch.equal(logits.argmax(-1), pairs.answers)


@pytest.mark.parametrize("method", ["patching", "ablation"])
def test_both_methods_find_exactly_the_planted_components(planted, pairs, method):
    c = find_circuit(planted, pairs, method=method, threshold=0.5)
    assert c.components == (Component(0, 0), Component(1))
    assert c.clean_accuracy == 1.0 and c.n_examples == N  # distinct clean prompts
    silent = [x for x in c.scores if x not in c.components]
    assert all(c.scores[x] == 0.0 for x in silent)  # nothing else carries anything
    if method == "patching":
        # noising either planted component sends every prediction to the corrupt answer
        assert c.score("L0H0") == 1.0 and c.score("MLP1") == 1.0
        assert c.swaps == ("x",) and c.task is None and c.split is None
        # the residual state at x matters before L0H0 moves it, the one at "=" only after
        assert c.state_scores[0, :, 0].tolist() == [1.0, 0.0]
        assert c.state_scores[0, :, 1].tolist() == [0.0, 1.0]
    else:
        # mean-ablating either leaves every logit tied, and ties go to token 0: the examples
        # whose answer is 0 stay right, 1 in N
        assert c.score("L0H0") == pytest.approx(1 - 1 / N)
        assert c.score("MLP1") == pytest.approx(1 - 1 / N)


def test_top_k_picks_the_same_two(planted, pairs):
    c = find_circuit(planted, pairs, top_k=2, metric="logit_difference")
    assert c.components == (Component(0, 0), Component(1))
    assert c.score("L0H0") == pytest.approx(1.0) and c.score("MLP1") == pytest.approx(1.0)
