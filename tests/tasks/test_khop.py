"""k-hop composition against a slow, obviously-right enumeration of every chain of facts."""

import itertools

import numpy as np
import pytest
import torch

from grok_circuits.tasks import make_task
from grok_circuits.tasks import paths as paths_mod
from grok_circuits.tasks.composition import CompositionParams
from grok_circuits.tasks.pairs import make_pairs

SMALL = dict(
    n_entities=12,
    n_relations=5,
    out_degree=3,
    phi=1.5,
    ood_fraction=0.2,
    test_id_fraction=0.2,
    seed=3,
    train_hops=3,
    test_hops=4,
    max_test=10**6,  # every path: the splits above train_hops are whole populations
    mixed_probes="all",
)


@pytest.fixture(scope="module")
def task():
    return make_task("composition", preset=None, **SMALL)


def graph(task):
    """(h, r) -> (t, is_ood), as token ids, from the atomic probes."""
    facts = {}
    for name, ood in (("id_atomic", False), ("ood_atomic", True)):
        s = task.splits[name]
        for (h, r), t in zip(s.tokens.tolist(), s.answers.tolist()):
            facts[(h, r)] = (t, ood)
    return facts


def chains(facts, m):
    """Every m-hop chain, by brute force: {(h, r1..rm, e1..e_{m-1}, t): (ood of each hop)}."""
    out = {}
    for first in facts:
        for rels in itertools.product(sorted({r for _, r in facts}), repeat=m - 1):
            e, ood, inner, ok = facts[first][0], [facts[first][1]], [], True
            for r in rels:
                if (e, r) not in facts:
                    ok = False
                    break
                inner.append(e)
                e, o = facts[(e, r)]
                ood.append(o)
            if ok:
                out[(first[0], first[1], *rels, *inner, e)] = tuple(ood)
    return out


def rows(split):
    return [
        (*tok[: p + 1], *path, a)
        for tok, p, path, a in zip(
            split.tokens.tolist(),
            split.answer_pos.tolist(),
            split.meta["path"].tolist(),
            split.answers.tolist(),
        )
    ]


def name_of(m, ood):
    if all(ood):
        return f"test_ood_{m}hop"
    if not any(ood):
        return f"test_id_{m}hop"
    return "test_ood_hop" + "+".join(str(j + 1) for j, o in enumerate(ood) if o) + f"_{m}hop"


@pytest.mark.parametrize("m", [3, 4])
def test_splits_match_brute_force_enumeration(task, m):
    """Every population's size in counts, and each split of more than train_hops hops (or an
    OOD one, capped by max_test above the population) is exactly its population, with the
    intermediate entities in order in meta["path"]."""
    facts = graph(task)
    by_pattern = {}
    for chain, ood in chains(facts, m).items():
        by_pattern.setdefault(ood, set()).add(chain)
    stats = task.stats()
    assert stats[f"id_pool_{m}hop"] == len(by_pattern[(False,) * m])
    assert len(task.vocab.entity_ids) * 3**m == sum(map(len, by_pattern.values()))
    for ood, expected in by_pattern.items():
        name = name_of(m, ood)
        if any(ood):
            assert stats[f"{name}_pool"] == len(expected), name
        if any(ood) or m > SMALL["train_hops"]:
            got = rows(task.splits[name])
            assert len(got) == len(set(got)) and set(got) == expected, name
            assert (task.splits[name].answer_pos == m).all()
    # ID (training and test where trained), all-OOD, and every mix of ID and OOD hops
    assert len([k for k in task.splits if k.endswith(f"_{m}hop")]) == 2**m + (m <= 3)


def test_trained_hop_counts_are_drawn_from_the_id_pool(task):
    facts = graph(task)
    id3 = {c for c, ood in chains(facts, 3).items() if not any(ood)}
    train, test = rows(task.splits["train_inferred_3hop"]), rows(task.splits["test_id_3hop"])
    n_atomic_id = task.stats()["atomic_id"]
    assert len(train) == len(set(train)) == round(1.5 * n_atomic_id)
    assert len(test) == round(0.2 * len(id3))
    assert set(train) <= id3 and set(test) <= id3 and not set(train) & set(test)
    # the training set: every atomic fact, the two-hop and the three-hop training facts
    assert task.stats()["train"] == 36 + 2 * round(1.5 * n_atomic_id)


def test_no_ood_fact_in_any_trained_inferred_fact(task):
    """Walk each training prompt through the facts, hop by hop."""
    facts = graph(task)
    train = task.train
    widths = set()
    for tok, p, a in zip(train.tokens.tolist(), train.answer_pos.tolist(), train.answers.tolist()):
        widths.add(p)
        if p == 1:
            continue
        e = tok[0]
        for r in tok[1 : p + 1]:
            e, ood = facts[(e, r)]
            assert not ood
        assert e == a
        assert all(t == task.vocab.pad_id for t in tok[p + 1 :])
    assert widths == {1, 2, 3}


def test_two_hop_splits_are_those_of_the_two_hop_task(task):
    two = make_task("composition", preset=None, **{**SMALL, "train_hops": 2, "test_hops": 2})
    default = make_task(
        "composition",
        preset=None,
        **{k: v for k, v in SMALL.items() if k not in ("train_hops", "test_hops", "max_test")},
    )
    assert list(two.splits) == list(default.splits)  # the same probes, in the same order
    for name in default.splits:
        for key, t in default.splits[name].tensors().items():
            assert torch.equal(t, two.splits[name].tensors()[key]), (name, key)
            if name != "train":
                assert torch.equal(t, task.splits[name].tensors()[key]), (name, key)
    assert (
        make_task("composition", preset="khop")
        .splits["test_id"]
        .tokens.equal(make_task("composition", preset="tutorial").splits["test_id"].tokens)
    )


def test_splits_of_m_hops_do_not_depend_on_test_hops():
    a = make_task("composition", preset="khop", test_hops=3)
    b = make_task("composition", preset="khop")
    for name in a.splits:
        if name != "train":
            assert torch.equal(a.splits[name].tokens, b.splits[name].tokens), name


def test_params_store_only_what_differs_from_two_hops():
    d = make_task("composition", preset="khop").params.to_dict()
    assert d["test_hops"] == 4 and "train_hops" not in d and "max_test" not in d
    assert CompositionParams.from_dict(d).test_hops == 4


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(train_hops=3, test_hops=2), ["test_hops", "train_hops"]),
        (dict(train_hops=1), ["train_hops"]),
        pytest.param(
            dict(mixed_probes="some"), ["mixed_probes", "single"], marks=pytest.mark.wrong_types
        ),
        (dict(test_hops=30), ["test_hops", "int64"]),
        # few ID facts per entity (0.9 of 3): fewer ID paths of three hops than of two
        (
            dict(
                n_entities=40,
                n_relations=3,
                out_degree=3,
                ood_fraction=0.7,
                train_hops=3,
                test_hops=3,
                phi=0.6,
            ),
            ["phi", "3 hops", "phi <="],
        ),
    ],
)
def test_bad_khop_parameters_name_the_problem(params, words):
    with pytest.raises(ValueError) as err:
        make_task("composition", preset="tutorial", **params)
    for w in words:
        assert w in str(err.value)


def test_sampling_draws_distinct_uniform_paths(task, monkeypatch):
    """Above ENUMERATE_LIMIT paths are sampled: distinct, all of the pattern, and (asked for
    all of them) the whole population."""
    rng = np.random.default_rng(0)
    n, d = 12, 3
    tails = rng.integers(0, n, n * d)
    is_ood = rng.random(n * d) < 0.3
    pattern = (False, True, False)
    every = paths_mod.enumerate_paths(tails, is_ood, d, pattern)
    assert len(every) == paths_mod.count_paths(tails, is_ood, d, pattern)
    monkeypatch.setattr(paths_mod, "ENUMERATE_LIMIT", 0)
    whole = paths_mod.draw_paths(tails, is_ood, d, pattern, 10**6, rng)
    assert sorted(map(tuple, whole.tolist())) == sorted(map(tuple, every.tolist()))
    some = paths_mod.draw_paths(tails, is_ood, d, pattern, 5, rng)
    assert len({tuple(p) for p in some.tolist()}) == 5
    hits = np.zeros(len(every))
    ids = paths_mod.path_ids(tails, d, every)
    assert (np.diff(ids) > 0).all()  # enumeration lists paths by ascending id
    for seed in range(400):
        one = paths_mod.draw_paths(tails, is_ood, d, pattern, 1, np.random.default_rng(seed))
        hits[np.searchsorted(ids, paths_mod.path_ids(tails, d, one))] += 1
    assert hits.min() > 0  # uniform enough to reach every path (each expected ~400/len)


@pytest.mark.parametrize("swap", ["h", "r1", "r2", "r3"])
def test_khop_swaps_follow_the_facts(task, swap):
    facts = graph(task)
    pairs = make_pairs(task, swap, "test_id_3hop", facts="all")
    assert pairs.pos_labels == ("h", "r1", "r2", "r3")
    k = {"h": 0, "r1": 1, "r2": 2, "r3": 3}[swap]
    for clean, corrupt, a, ca in zip(
        pairs.clean.tolist(),
        pairs.corrupt.tolist(),
        pairs.answers.tolist(),
        pairs.corrupt_answers.tolist(),
    ):
        assert [c for i, c in enumerate(clean) if i != k] == [
            c for i, c in enumerate(corrupt) if i != k
        ]
        e = corrupt[0]
        for r in corrupt[1:]:
            e = facts[(e, r)][0]
        assert e == ca != a


def test_r3_swap_has_no_two_hop_query(task):
    with pytest.raises(ValueError, match="no example"):
        make_pairs(task, "r3", "test_id")
    with pytest.raises(ValueError, match="position 2 or 3 or 4"):
        make_pairs(task, "h", "id_atomic")
