"""The comparison generator against a slow reference over the value table."""

import pytest
import torch

from grok_circuits.tasks import make_task

PARAMS = dict(
    n_entities=20,
    n_attributes=3,
    n_values=4,
    phi=2.0,
    ood_fraction=0.2,
    test_id_fraction=0.1,
    seed=5,
)


@pytest.fixture(scope="module")
def task():
    return make_task("comparison", preset=None, **PARAMS)


def value_table(task):
    """(entity token, attribute token) -> (value, is_ood) from the atomic probes."""
    table = {}
    for name, ood in (("id_atomic", False), ("ood_atomic", True)):
        s = task.splits[name]
        for (e, a), v in zip(s.tokens.tolist(), s.answers.tolist()):
            table[(e, a)] = (v - task.vocab.value_offset, ood)
    return table


def test_counts_by_hand(task):
    s = task.stats()
    # 20 entities x 3 attributes; 20% of entities OOD per attribute -> 4 OOD, 16 ID.
    assert (s["atomic"], s["atomic_id"], s["atomic_ood"]) == (60, 48, 12)
    assert s["train_inferred"] == round(2.0 * 48)
    assert s["test_ood"] == 3 * 4 * 3  # ordered pairs of distinct OOD entities per attribute
    pairs = 3 * (16 * 15 // 2)
    assert s["test_id"] == 2 * round(0.1 * pairs)  # held-out pairs, both orders
    assert s["train"] == 60 + s["train_inferred"]


def test_labels_follow_the_values(task):
    table = value_table(task)
    v = task.vocab
    for name in ("train_inferred", "test_id", "test_ood"):
        s = task.splits[name]
        for row, ans, v1, v2 in zip(
            s.tokens.tolist(),
            s.answers.tolist(),
            s.meta["value1"].tolist(),
            s.meta["value2"].tolist(),
        ):
            attr_tok, q, e1, mask, e2 = row
            assert (q, mask) == (v.query_id, v.mask_id)
            assert table[(e1, attr_tok)][0] == v1 and table[(e2, attr_tok)][0] == v2
            label = 0 if v1 < v2 else 1 if v1 == v2 else 2
            assert ans == v.label_id(attr_tok - v.attribute_offset, label)
            assert e1 != e2


def test_splits_use_the_right_entities(task):
    table = value_table(task)
    for name, want_ood in (("train_inferred", False), ("test_id", False), ("test_ood", True)):
        for attr, _, e1, _, e2 in task.splits[name].tokens.tolist():
            assert table[(e1, attr)][1] == want_ood and table[(e2, attr)][1] == want_ood


def test_no_test_pair_is_trained_in_either_order(task):
    def unordered(split):
        return {(r[0], frozenset((r[2], r[4]))) for r in task.splits[split].tokens.tolist()}

    assert not unordered("train_inferred") & unordered("test_id")


def test_every_entity_has_every_attribute(task):
    assert len(value_table(task)) == 20 * 3


def test_paper_scale_counts():
    s = make_task("comparison", preset="paper").stats()
    assert (s["atomic"], s["atomic_id"], s["atomic_ood"]) == (20_000, 18_000, 2_000)
    assert s["train_inferred"] == 129_600


def test_deterministic():
    a, b = make_task("comparison"), make_task("comparison")
    for name in a.splits:
        for key, t in a.splits[name].tensors().items():
            assert torch.equal(t, b.splits[name].tensors()[key])


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(phi=1e6), ["phi <="]),
        (dict(n_entities=5, ood_fraction=0.1), ["at least 2", "n_entities"]),
        (dict(ood_fraction=0.0), ["ood_fraction"]),
        (dict(n_values=1), ["n_values"]),
        (dict(test_id_fraction=-0.1), ["test_id_fraction"]),
    ],
)
def test_bad_parameters(params, words):
    with pytest.raises(ValueError) as err:
        make_task("comparison", preset="tutorial", **params)
    for w in words:
        assert w in str(err.value)
