"""The composition generator against a slow, obviously-right enumeration of the graph."""

import numpy as np
import pytest
import torch

from grok_circuits.tasks import make_task

PARAMS = dict(
    n_entities=12,
    n_relations=5,
    out_degree=3,
    phi=1.5,
    ood_fraction=0.2,
    test_id_fraction=0.2,
    seed=3,
)


@pytest.fixture(scope="module")
def task():
    return make_task("composition", preset=None, **PARAMS)


def graph(task):
    """(h, r) -> (t, is_ood) from the atomic probes, as plain token ids."""
    facts = {}
    for name, ood in (("id_atomic", False), ("ood_atomic", True)):
        s = task.splits[name]
        for (h, r), t in zip(s.tokens.tolist(), s.answers.tolist()):
            assert (h, r) not in facts
            facts[(h, r)] = (t, ood)
    return facts


def queries(split):
    return {tuple(row[:3]) for row in split.tokens.tolist()}


def test_graph_shape(task):
    facts = graph(task)
    v = task.vocab
    assert len(facts) == 12 * 3
    for h in v.entity_ids:
        rels = [r for (hh, r) in facts if hh == h]
        assert len(rels) == 3 and len(set(rels)) == 3  # distinct relations per head
    assert sum(ood for _, ood in facts.values()) == round(0.2 * 36)


def test_counts_match_brute_force_enumeration(task):
    facts = graph(task)
    id_paths, ood_paths = set(), set()
    for (h, r1), (b, ood1) in facts.items():
        for (bb, r2), (t, ood2) in facts.items():
            if bb != b:
                continue
            if not ood1 and not ood2:
                id_paths.add((h, r1, r2, b, t))
            elif ood1 and ood2:
                ood_paths.add((h, r1, r2, b, t))
    stats = task.stats()
    n_test = round(0.2 * len(id_paths))
    assert stats["id_pool"] == len(id_paths)
    assert stats["test_id"] == n_test
    assert stats["train_inferred"] == round(1.5 * stats["atomic_id"])
    assert stats["test_ood"] == len(ood_paths)
    assert stats["train"] == 36 + stats["train_inferred"]

    def rows(split):
        s = task.splits[split]
        return {
            (*row[:3], b, t)
            for row, b, t in zip(s.tokens.tolist(), s.meta["bridge"].tolist(), s.answers.tolist())
        }

    # every inferred example is a real path with the right bridge and answer
    assert rows("train_inferred") <= id_paths
    assert rows("test_id") <= id_paths
    assert rows("test_ood") == ood_paths


def test_no_leakage_between_splits(task):
    train_q = queries(task.splits["train_inferred"])
    assert not train_q & queries(task.splits["test_id"])
    assert not train_q & queries(task.splits["test_ood"])
    assert not queries(task.splits["test_id"]) & queries(task.splits["test_ood"])


def test_ood_edges_never_a_hop_of_training_inferred_facts(task):
    facts = graph(task)
    s = task.splits["train_inferred"]
    for (h, r1, r2), b in zip(s.tokens.tolist(), s.meta["bridge"].tolist()):
        assert not facts[(h, r1)][1]
        assert not facts[(b, r2)][1]


def test_training_set_is_all_atomic_plus_train_inferred(task):
    train = task.train
    pad = task.vocab.pad_id
    atomic_rows = {
        (r[0], r[1], a)
        for r, a, p in zip(train.tokens.tolist(), train.answers.tolist(), train.answer_pos.tolist())
        if p == 1
    }
    expected = {(h, r, t) for (h, r), (t, _) in graph(task).items()}
    assert atomic_rows == expected
    assert (train.tokens[train.answer_pos == 1][:, 2] == pad).all()
    inferred = train.select(train.answer_pos == 2)
    torch.testing.assert_close(inferred.tokens, task.splits["train_inferred"].tokens)


def test_paper_scale_counts():
    stats = make_task("composition", preset="paper").stats()
    assert (stats["atomic"], stats["atomic_id"], stats["atomic_ood"]) == (40_000, 38_000, 2_000)
    assert stats["train_inferred"] == 273_600
    assert stats["train"] == 313_600


def test_same_seed_same_bytes_other_seed_differs():
    a = make_task("composition", preset="tutorial")
    b = make_task("composition", preset="tutorial")
    c = make_task("composition", preset="tutorial", seed=1)
    for name in a.splits:
        for key, t in a.splits[name].tensors().items():
            assert torch.equal(t, b.splits[name].tensors()[key]), (name, key)
    assert not torch.equal(a.train.tokens[:100], c.train.tokens[:100])


def test_preset_is_overridden_by_explicit_params():
    t = make_task("composition", preset="tutorial", phi=3.0)
    assert t.params.phi == 3.0 and t.params.n_entities == 100


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(phi=50.0), ["phi", "phi <="]),
        (dict(out_degree=30, n_relations=20), ["out_degree", "n_relations"]),
        (dict(ood_fraction=0.0), ["ood_fraction", "between 0 and 1"]),
        (dict(ood_fraction=1.5), ["ood_fraction"]),
        (dict(test_id_fraction=1.0), ["test_id_fraction"]),
        (dict(n_entities=2, out_degree=1, n_relations=1, ood_fraction=0.1), ["ood_fraction"]),
        (dict(colour="red"), ["colour", "parameters are"]),
    ],
)
def test_bad_parameters_name_the_problem(params, words):
    with pytest.raises(ValueError) as err:
        make_task("composition", preset="tutorial", **params)
    for w in words:
        assert w in str(err.value)


def test_max_phi_in_the_message_is_achievable():
    with pytest.raises(ValueError) as err:
        make_task("composition", preset="tutorial", phi=50.0)
    max_phi = float(str(err.value).split("phi <= ")[1].split()[0])
    assert make_task("composition", preset="tutorial", phi=max_phi).stats()["train_inferred"] > 0
    with pytest.raises(ValueError):
        make_task("composition", preset="tutorial", phi=max_phi + 0.05)


def test_unknown_task_and_preset():
    with pytest.raises(ValueError, match="composition"):
        make_task("compositon")
    with pytest.raises(ValueError, match="tutorial"):
        make_task("composition", preset="huge")


def test_relations_distinct_at_paper_scale():
    t = make_task("composition", preset="paper")
    s = t.splits["id_atomic"]
    pairs = s.tokens.numpy()
    assert len({tuple(p) for p in pairs}) == len(pairs)  # (h, r) unique -> distinct relations
    assert np.all(np.isin(s.answers.numpy(), np.array(t.vocab.entity_ids)))
