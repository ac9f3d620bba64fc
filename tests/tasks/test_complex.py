"""The complex-reasoning generator against the paper's counts and a brute-force graph search."""

import itertools
from collections import deque

import numpy as np
import pytest

from grok_circuits.tasks import complex_baselines, make_task
from grok_circuits.tasks.complex import win_rate_labels

# Small enough to search every derivation by hand, with a hard pool of every label.
SMALL = dict(
    n_entities=40,
    n_attributes=3,
    n_values=6,
    ood_fraction=0.25,
    test_id_fraction=0.1,
    id_id_fraction=0.05,
    id_ood_fraction=0.08,
    hard_per_label=2,
    seed=1,
)


@pytest.fixture(scope="module")
def task():
    return make_task("complex", preset=None, **SMALL)


def test_paper_counts():
    s = make_task("complex", preset="paper").stats()
    # 1000 entities, 20 attributes, 10% OOD: 900 ID entities per attribute.
    pairs = 20 * 900 * 899 // 2  # 8,091,000 unordered ID pairs
    assert s["atomic_id"] == 18_000
    assert s["train_id_id"] == round(0.03 * 2 * (pairs - round(0.1 * pairs))) == 436_914
    assert s["train_id_ood"] == round(0.03 * 2 * 20 * 900 * 100) == 108_000
    assert s["test_hard"] == 150
    assert s["train"] == 18_000 + 436_914 + 108_000


def facts_of(task):
    """(value table, ID set, training comparisons) read back from the token tensors."""
    v = task.vocab
    value, is_id = {}, {}
    for name, ident in (("id_atomic", True), ("ood_atomic", False)):
        s = task.splits[name]
        for (e, a), ans in zip(s.tokens.tolist(), s.answers.tolist()):
            value[(e, a)] = ans - v.value_offset
            is_id[(e, a)] = ident
    comps = []
    for row, ans in zip(task.train.tokens.tolist(), task.train.answers.tolist()):
        if ans >= v.label_offset:
            a, _, e1, _, e2 = row
            comps.append((a, e1, e2, (ans - v.label_offset) % 3))
    return value, is_id, comps


def test_training_set_by_hand(task):
    value, is_id, comps = facts_of(task)
    v, s = task.vocab, task.stats()
    # 40 entities, 10 OOD per attribute; 3 attributes.
    n_id, n_ood, k = 30, 10, 3
    pairs = k * n_id * (n_id - 1) // 2
    assert s["atomic_id"] == k * n_id and s["atomic_ood"] == k * n_ood
    assert s["train_id_id"] == round(0.05 * 2 * (pairs - round(0.1 * pairs)))
    assert s["train_id_ood"] == round(0.08 * 2 * k * n_id * n_ood)
    assert s["test_id"] == 2 * round(0.1 * pairs)
    # Only ID atomic facts are trained on: OOD values are never stated.
    atomic = task.train.tokens[task.train.answers < v.label_offset, :2].tolist()
    assert sorted(map(tuple, atomic)) == sorted(key for key, ident in is_id.items() if ident)
    kinds = [(is_id[(e1, a)], is_id[(e2, a)]) for a, e1, e2, _ in comps]
    assert kinds.count((True, True)) == s["train_id_id"]
    assert kinds.count((True, False)) + kinds.count((False, True)) == s["train_id_ood"]
    assert (False, False) not in kinds
    for a, e1, e2, label in comps:
        assert label == np.sign(value[(e1, a)] - value[(e2, a)]) + 1
    test = {(r[0], frozenset((r[2], r[4]))) for r in task.splits["test_id"].tokens.tolist()}
    assert not test & {(a, frozenset((e1, e2))) for a, e1, e2, _ in comps}


def derivable(edges, start, goal):
    """A path start -> goal (``x -> y`` meaning ``x >= y``), by breadth-first search."""
    seen, todo = {start}, deque([start])
    while todo:
        x = todo.popleft()
        for y in edges.get(x, ()):
            if y == goal:
                return True
            if y not in seen:
                seen.add(y)
                todo.append(y)
    return False


def test_hard_pool_by_brute_force(task):
    """The paper's definition, searched edge by edge: a query is hard if a chain of training
    comparisons and ID atomic facts links the two OOD entities, and no chain of training
    comparisons alone does."""
    value, is_id, comps = facts_of(task)
    pool, hard = {0: 0, 1: 0, 2: 0}, set()
    for a in sorted({a for _, a in value}):
        ents = [e for (e, b) in value if b == a]
        inferred, full = {}, {}
        for b, e1, e2, label in comps:
            if b != a:
                continue
            for x, y in (
                [(e1, e2)] if label == 2 else [(e2, e1)] if label == 0 else [(e1, e2), (e2, e1)]
            ):
                inferred.setdefault(x, set()).add(y)
                full.setdefault(x, set()).add(y)
        ids = [e for e in ents if is_id[(e, a)]]
        for x, y in itertools.permutations(ids, 2):
            if value[(x, a)] >= value[(y, a)]:
                full.setdefault(x, set()).add(y)
        oods = [e for e in ents if not is_id[(e, a)]]
        for o1, o2 in itertools.permutations(oods, 2):
            solvable = derivable(full, o1, o2) or derivable(full, o2, o1)
            easy = derivable(inferred, o1, o2) or derivable(inferred, o2, o1)
            if solvable and not easy:
                label = int(np.sign(value[(o1, a)] - value[(o2, a)]) + 1)
                pool[label] += 1
                hard.add((a, o1, o2, label))
    s = task.stats()
    assert (s["hard_pool_lt"], s["hard_pool_eq"], s["hard_pool_gt"]) == (pool[0], pool[1], pool[2])
    assert min(pool.values()) >= SMALL["hard_per_label"]  # the test exercises every label
    v = task.vocab
    chosen = task.splits["test_hard"]
    got = {
        (r[0], r[2], r[4], (ans - v.label_offset) % 3)
        for r, ans in zip(chosen.tokens.tolist(), chosen.answers.tolist())
    }
    assert len(got) == 3 * SMALL["hard_per_label"] and got <= hard
    assert sorted(g[3] for g in got) == [0, 0, 1, 1, 2, 2]


def test_baselines(task):
    b = complex_baselines(task)
    assert b["hard_chained"] == 1.0  # every hard query is derivable by chaining, by definition
    assert b["hard_chance"] == pytest.approx(1 / 3)
    assert b["ood_atomic_chance"] == pytest.approx(1 / 6)
    # The win-rate rule, by hand from the training comparisons of e1 and of e2.
    _, _, comps = facts_of(task)
    v = task.vocab
    want = []
    for a, _, e1, _, e2 in task.splits["test_hard"].tokens.tolist():

        def score(e, a=a):
            rel = [
                lab - 1 if x == e else 1 - lab for b, x, y, lab in comps if b == a and e in (x, y)
            ]
            return sum(rel) / max(len(rel), 1)

        want.append(int(np.sign(score(e1) - score(e2)) + 1))
    assert win_rate_labels(task).tolist() == want
    truth = (task.splits["test_hard"].answers - v.label_offset) % 3
    assert b["hard_win_rate"] == pytest.approx(float((truth.numpy() == np.array(want)).mean()))


def test_same_seed_same_data_and_bad_input():
    a = make_task("complex", preset=None, **SMALL)
    assert a.fingerprint() == make_task("complex", preset=None, **SMALL).fingerprint()
    with pytest.raises(ValueError, match="hard_per_label=1000 but the hard pool holds only"):
        make_task("complex", preset=None, **{**SMALL, "hard_per_label": 1000})
    with pytest.raises(ValueError, match="id_ood_fraction"):
        make_task("complex", preset=None, **{**SMALL, "id_ood_fraction": 1.5})
