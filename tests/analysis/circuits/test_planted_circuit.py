"""A hand-built transformer whose circuit is known: one attention head moves the input, one MLP
looks the answer up, and nothing else carries anything. Both circuit methods must find exactly
those two components, from pairs built out of plain tensors (no task registered); and so must a
circuit method added as one function registered by name.

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
from grok_circuits.analysis.circuits import find
from grok_circuits.analysis.circuits.find import register_circuit_method
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


# ----------------------------------------------------------------------------- adding a method
def output_norm_scores(model, pairs, components, *, seed=0):
    """A circuit method in one function: a component's score is the norm of the weights through
    which it writes to the residual stream (a head's ``W_O``, an MLP's ``W_out``). It never runs
    the model, so it is independent of both built-in methods; on the planted model only L0H0
    and MLP1 write anything."""
    w = model_weights(model)
    return {
        c: float(
            w[f"blocks.{c.layer}.attn.W_O"][c.head].norm()
            if c.is_head
            else w[f"blocks.{c.layer}.mlp.W_out"].norm()
        )
        for c in components
    }


@pytest.fixture
def registry(monkeypatch):
    """The circuit-method registry, restored after the test (a name registers only once)."""
    monkeypatch.setattr(find, "METHODS", dict(find.METHODS))
    monkeypatch.setattr(find, "_CLEAN_ONLY", set(find._CLEAN_ONLY))
    return find.METHODS


def test_a_method_added_by_name_finds_the_planted_circuit(planted, pairs, registry):
    register_circuit_method("output-norm", output_norm_scores)
    c = find_circuit(planted, pairs, method="output-norm", threshold=1e-6)
    assert c.components == (Component(0, 0), Component(1))
    assert c.method == "output-norm" and c.metric == "output-norm"
    # written by hand: W_O of L0H0 is the 8 x 8 identity, W_out of MLP1 a permutation of it
    assert c.score("L0H0") == pytest.approx(N**0.5) and c.score("MLP1") == pytest.approx(N**0.5)
    assert c.swaps == ("x",) and c.n_traced == (len(pairs),) and c.clean_accuracy == 1.0
    assert c.state_scores is None  # it traces no state: the result draws the scores alone
    with pytest.raises(ValueError, match="already registered"):
        register_circuit_method("output-norm", output_norm_scores)


def test_a_method_must_score_every_component(planted, pairs, registry):
    register_circuit_method("heads-only", lambda m, p, cs, *, seed=0: {c: 1.0 for c in cs[:2]})
    with pytest.raises(ValueError, match="returned no score for .*MLP1"):
        find_circuit(planted, pairs, method="heads-only")


def test_a_clean_only_method_gets_examples_of_the_split(tiny_composition, tiny_run, registry):
    given = []

    def record(model, pairs, components, *, seed=0):
        given.append(pairs)
        return dict.fromkeys(components, 0.0)

    register_circuit_method("clean-record", record, clean_only=True)
    model = tiny_run.model(device="cpu")
    c = find_circuit(model, tiny_composition, method="clean-record", n_examples=25, seed=3)
    (only,) = given[0]
    expected = tiny_composition.splits["train_inferred"].sample(25, 3)
    assert torch.equal(only.clean, expected.tokens) and torch.equal(only.corrupt, only.clean)
    assert c.n_examples == 25 and c.swaps == () and c.components == ()
    register_circuit_method("swap-record", record)  # the default: one set of pairs per swap
    find_circuit(model, tiny_composition, method="swap-record", n_examples=25)
    assert [p.swap for p in given[1]] == ["h", "r1", "r2"]
