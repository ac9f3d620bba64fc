"""Interchange interventions and DAS against a planted variable, TransformerLens' own patcher, a
plain hook, and facts looked up by hand."""

import itertools

import matplotlib
import pytest
import torch
from torch.testing import assert_close
from transformer_lens import patching

from grok_circuits import backend
from grok_circuits.analysis.patching.interchange import (
    DASResult,
    das,
    fit_subspace,
    interchange_accuracy,
    interchange_logits,
    random_basis,
)
from grok_circuits.tasks import PromptPairs
from grok_circuits.tasks.composition import bridge_pairs

matplotlib.use("Agg")

D, N_NUISANCE, QUERY = 8, 8, 16  # variable tokens 0..15 (v = t % 2), the query token 16


# ----------------------------------------------------------------------------- a planted model
@pytest.fixture(scope="module")
def planted():
    """Two positions, ``<x> <q>``. Token ``x`` stores a bit ``v = x % 2`` along ``e_0`` only
    (``±4``) and a nuisance value along the 7 other axes; layer 0's one head attends uniformly
    (zero queries and keys) and copies the whole residual (``W_V = W_O = I``), so ``q`` reads
    ``x``; layer 1 writes nothing (``W_O = 0``); the unembedding reads ``e_0`` only: answer
    token 0 when ``v = 1``, token 1 when ``v = 0``. So the variable lives in the known 1-d
    subspace ``e_0`` of ``resid_pre`` of layer 0 at ``x``, and nowhere at layer 1's ``x``."""
    cfg = backend.make_config(
        n_layers=2,
        d_model=D,
        n_heads=1,
        d_head=D,
        n_ctx=2,
        d_vocab=QUERY + 1,
        attn_only=True,
        normalization_type=None,
        act_fn="relu",
    )
    model = backend.build_model(cfg, seed=0)
    g = torch.Generator().manual_seed(0)
    w = {name: torch.zeros_like(t) for name, t in backend.model_weights(model).items()}
    tok = torch.arange(QUERY)
    w["embed.W_E"][:QUERY, 0] = 4.0 * (2 * (tok % 2) - 1)
    w["embed.W_E"][:QUERY, 1:] = 3.0 * torch.randn(
        N_NUISANCE, D - 1, generator=g
    ).repeat_interleave(2, 0)
    w["embed.W_E"][QUERY, 1:] = torch.randn(D - 1, generator=g)
    w["blocks.0.attn.W_V"][0] = torch.eye(D)
    w["blocks.0.attn.W_O"][0] = torch.eye(D)
    w["unembed.W_U"][0, 0], w["unembed.W_U"][0, 1] = 1.0, -1.0
    model = backend.load_weights(model, w).eval()
    # every (base, source) whose bits differ: the answer must follow the source's bit
    rows = [(b, s) for b, s in itertools.product(range(QUERY), repeat=2) if b % 2 != s % 2]
    base = torch.tensor([[b, QUERY] for b, _ in rows])
    source = torch.tensor([[s, QUERY] for _, s in rows])
    answer = lambda t: 1 - t[:, 0] % 2  # noqa: E731
    pairs = PromptPairs(
        clean=base,
        corrupt=source,
        answers=answer(base),
        corrupt_answers=answer(source),
        pos_labels=("x", "q"),
    )
    return model, pairs


def test_the_planted_model_answers_by_the_bit(planted):
    model, pairs = planted
    logits = model(pairs.clean)[:, -1]
    assert torch.equal(logits.argmax(-1), pairs.answers)


def test_the_known_subspace_moves_the_answer_and_a_random_one_does_not(planted):
    model, pairs = planted
    e0 = torch.eye(D)[:, :1]
    assert interchange_accuracy(model, pairs, e0, layer=0, position="x") == 1.0
    assert interchange_accuracy(model, pairs, e0, layer=1, position="x") == 0.0  # read already
    for seed in range(5):
        assert (
            interchange_accuracy(model, pairs, random_basis(D, 1, seed), layer=0, position="x")
            < 0.5
        )


def test_das_finds_the_planted_subspace(planted):
    model, pairs = planted
    r = das(
        model, pairs, layers=[0, 1], position="x", k=1, epochs=60, lr=0.05, seed=0, arbitrary=True
    )
    assert isinstance(r, DASResult)
    assert r.iia_test[0] == 1.0 and r.iia_train[0] == 1.0
    assert abs(float(r.bases[0, 0, 0])) > 0.99  # the learned direction is e_0
    assert r.iia_random[0] < 0.5
    assert r.iia_test[1] == 0.0 and r.iia_full[1] == 0.0
    assert r.iia_full[0] == 1.0
    assert r.iia_random_init[0] < 1.0
    assert r.iia_arbitrary[0] < 0.5  # relabelled answers the model cannot be made to give
    assert r.losses.shape == (2, 60) and r.losses[0, -1] < r.losses[0, 0]
    assert r.summary()["best_layer"] == 0 and r.summary()["iia"] == 1.0
    assert list(r.to_frame()["layer"]) == [0, 1]
    assert r.plot() is not None


def test_das_is_deterministic(planted):
    model, pairs = planted
    kw = dict(layer=0, position="x", k=2, epochs=5, seed=3)
    a, la = fit_subspace(model, pairs, **kw)
    b, lb = fit_subspace(model, pairs, **kw)
    assert torch.equal(a, b) and la == lb
    assert_close(a.T @ a, torch.eye(2), atol=1e-5, rtol=0)
    c, _ = fit_subspace(model, pairs, **{**kw, "seed": 4})
    assert not torch.equal(a, c)
    x = interchange_logits(model, pairs, a, layer=0, position="x")
    y = interchange_logits(model, pairs, a, layer=0, position="x")
    assert torch.equal(x, y)


# ----------------------------------------------------------------------------- the whole vector
def test_the_identity_subspace_is_activation_patching(composition_model, tiny_composition):
    model = composition_model
    pairs = bridge_pairs(tiny_composition, n_examples=30, seed=0)
    idx = torch.arange(len(pairs))
    expected = pairs.corrupt_answers

    def metric(logits):
        return logits[idx, pairs.answer_pos, expected].mean()

    # TransformerLens patches the clean run's state into the corrupt run: base = corrupt
    _, cache = model.run_with_cache(pairs.corrupt)
    tl = patching.get_act_patch_resid_pre(model, pairs.clean, cache, metric)
    eye = torch.eye(model.cfg.d_model)
    for layer, pos in itertools.product(range(model.cfg.n_layers), range(pairs.width)):
        ours = interchange_logits(model, pairs, eye, layer=layer, position=pos)
        assert_close(ours[idx, expected].mean(), tl[layer, pos], atol=1e-5, rtol=1e-5)

    # and a plain hook that writes the source's whole vector
    layer, pos = 1, pairs.positions["r1"]
    name = f"blocks.{layer}.hook_resid_pre"

    def write(act, hook):
        act = act.clone()
        act[:, pos] = cache[name][:, pos]
        return act

    with model.hooks(fwd_hooks=[(name, write)]):
        plain = model(pairs.clean)[idx, pairs.answer_pos]
    assert_close(interchange_logits(model, pairs, eye, layer=layer, position="r1"), plain)


# ----------------------------------------------------------------------------- the bridge pairs
def test_bridge_pairs_expect_the_source_bridge_and_the_base_relation(tiny_composition):
    task = tiny_composition
    pairs = bridge_pairs(task, n_examples=50, seed=1)
    assert 0 < len(pairs) <= 50 and pairs.swap == "bridge"
    facts = {
        (int(h), int(r)): int(t)
        for (h, r), t in zip(
            task.splits["id_atomic"].tokens.tolist(), task.splits["id_atomic"].answers, strict=True
        )
    }
    r2 = pairs.positions["r2"]
    for i in range(len(pairs)):
        b_src = int(pairs.meta["source_bridge"][i])
        assert int(pairs.corrupt_answers[i]) == facts[(b_src, int(pairs.clean[i, r2]))]
        assert int(pairs.corrupt_answers[i]) != int(pairs.answers[i])
        assert b_src != int(pairs.meta["bridge"][i])
    again = bridge_pairs(task, n_examples=50, seed=1)
    assert torch.equal(again.corrupt, pairs.corrupt)


def test_das_on_a_task_uses_the_bridge_pairs(composition_model, tiny_composition):
    r = das(
        composition_model,
        tiny_composition,
        layers=1,
        k=2,
        epochs=2,
        n_random=2,
        random_init=False,
        n_examples=40,
    )
    assert r.position == "r1" and r.n_train + r.n_test == 40
    assert torch.isnan(r.iia_random_init).all() and torch.isnan(r.iia_arbitrary).all()


def test_bad_input_is_one_clear_error(planted):
    model, pairs = planted
    with pytest.raises(ValueError, match="orthonormal"):
        interchange_accuracy(model, pairs, torch.ones(D, 1), layer=0, position="x")
    with pytest.raises(ValueError, match=r"\[d_model, k\]"):
        interchange_accuracy(model, pairs, torch.eye(D + 1), layer=0, position="x")
    with pytest.raises(ValueError, match="positions"):
        interchange_accuracy(model, pairs, torch.eye(D), layer=0, position="r1")
    no_label = PromptPairs(clean=pairs.clean, corrupt=pairs.corrupt, answers=pairs.answers)
    with pytest.raises(ValueError, match="corrupt_answers"):
        interchange_accuracy(model, no_label, torch.eye(D), layer=0, position=0)
    with pytest.raises(ValueError, match="layers"):
        das(model, pairs, layers=[5], position="x")


# ----------------------------------------------------------------------------- TransformerLens 4.x
def test_same_numbers_as_transformer_lens_interchange(composition_model, tiny_composition):
    """TransformerLens 4.3's ``tools.analysis.interchange`` on the same subspace and pairs:
    the same intervened logits, and ``fit_das`` learns the same basis."""
    tl = pytest.importorskip("transformer_lens.tools.analysis.interchange")
    model = composition_model
    pairs = bridge_pairs(tiny_composition, n_examples=40, seed=0)
    r1 = pairs.positions["r1"]
    at = torch.full((len(pairs),), r1)
    name = "blocks.1.hook_resid_pre"

    def task_logits(tokens):  # the answer is at the last position of every composition query
        return model(tokens)[:, -1]

    basis = random_basis(model.cfg.d_model, 4, seed=0)
    source = tl.collect_activations(model, name, pairs.corrupt, task_logits, positions=at)
    theirs = tl.intervened_logits(
        model, name, tl.SubspaceInterchange(basis), pairs.clean, source, task_logits, positions=at
    )
    ours = interchange_logits(model, pairs, basis, layer=1, position="r1")
    assert_close(ours, theirs, atol=1e-5, rtol=1e-5)

    fitted = tl.fit_das(
        model,
        name,
        pairs.clean,
        pairs.corrupt,
        pairs.corrupt_answers,
        task_logits,
        rank=3,
        base_positions=at,
        source_positions=at,
        epochs=4,
        batch_size=16,
        lr=1e-2,
        seed=2,
    )
    basis, losses = fit_subspace(
        model, pairs, layer=1, position="r1", k=3, epochs=4, batch_size=16, lr=1e-2, seed=2
    )
    assert_close(basis, fitted.basis, atol=1e-5, rtol=1e-5)
    assert_close(torch.tensor(losses), torch.tensor(fitted.losses), atol=1e-5, rtol=1e-5)
