"""Complex reasoning: comparisons that can only be answered by chaining other comparisons.

From "Grokked Transformers are Implicit Reasoners" (Wang et al., 2024), section 5 and
appendix F. The knowledge base is the comparison task's (:mod:`grok_circuits.tasks.comparison`):
every entity has a value per attribute, and per attribute a share ``ood_fraction`` of the
entities is OOD. What changes is what the model is told:

- the **ID atomic facts** ``<e> <attr> -> <v>`` only: the values of OOD entities are never
  stated;
- a share ``id_id_fraction`` (paper: 3%) of the ordered ID x ID comparisons, after a share
  ``test_id_fraction`` (paper: 10%) of the unordered ID pairs is held out as ``test_id``;
- a share ``id_ood_fraction`` (paper: 3%) of the ordered ID x OOD comparisons (both orders:
  ``(ID, OOD)`` and ``(OOD, ID)``).

An OOD entity is thus known only through how it compares with some ID entities. The **hard test
set** ``test_hard`` holds OOD x OOD queries whose answer *can* be derived, but only by chaining
through the ID atomic facts: ``o1 >= a`` (a training comparison), ``v(a) >= v(b)`` (ID atomic
facts), ``b >= o2`` (a training comparison) gives ``o1 >= o2``, and no chain of training
comparisons alone links ``o1`` and ``o2``. It is balanced per label: ``hard_per_label`` queries
each of ``<``, ``=``, ``>`` (paper: 50 each, 150 in all). The **atomic OOD probe**
``ood_atomic`` asks for the OOD values themselves, which the model can only have inferred.

Reference points on the paper's 150 hard queries: chance 33.3%; GPT-4-Turbo with retrieval
augmentation 33.3%; Gemini-1.5-Pro with retrieval 37.3% (both given the facts in context); the
grokked transformer near-perfect. :func:`complex_baselines` computes two rules on the task itself:
chance, and the best rule we know that does not chain (it ranks the two OOD entities by how
often each won its own training comparisons), and, for the atomic OOD probe, the middle of the
interval that chaining pins the value to.

Counts (``stats()``), with ``n_id = n_entities - round(ood_fraction * n_entities)``,
``n_ood = n_entities - n_id``, ``k = n_attributes`` and ``P = k * n_id * (n_id - 1) / 2`` unordered
ID pairs::

    atomic_id    = k * n_id
    test_id      = 2 * round(test_id_fraction * P)
    train_id_id  = round(id_id_fraction * 2 * (P - round(test_id_fraction * P)))
    train_id_ood = round(id_ood_fraction * 2 * k * n_id * n_ood)
    test_hard    = 3 * hard_per_label

At paper scale (1000 entities, 20 attributes, 20 values): ``atomic_id`` = 18,000,
``train_id_id`` = round(0.03 * 2 * (8,091,000 - 809,100)) = 436,914 and ``train_id_ood`` =
round(0.03 * 3,600,000) = 108,000, the paper's 18K, 437K and 108K. How many hard queries exist
before balancing is ``hard_pool`` (``hard_pool_lt``, ``_eq``, ``_gt`` per label).
"""

import functools
from dataclasses import dataclass

import numpy as np
import torch

from grok_circuits.checks import check_fraction, check_positive
from grok_circuits.config import TUTORIAL_RECIPE, TrainConfig
from grok_circuits.tasks.comparison import (
    POSITIONS,
    IdPairs,
    atomic_split,
    comparison_lens,
    comparison_split,
    knowledge_base,
    ood_pairs_split,
    swap_comparison,
)
from grok_circuits.tasks.data import Split, TaskData
from grok_circuits.tasks.params import TaskParams
from grok_circuits.tasks.registry import register_task
from grok_circuits.tasks.vocab import LABELS, Vocab

#: The paper's figures on its 150 hard queries (appendix F): accuracy of chance and of two LLMs
#: given the facts by retrieval.
PAPER_REFERENCE = {
    "chance": 1 / 3,
    "GPT-4-Turbo + retrieval": 0.333,
    "Gemini-1.5-Pro + retrieval": 0.373,
}


@dataclass(frozen=True)
class ComplexParams(TaskParams):
    """Parameters of :func:`make_complex`; validated on construction (see the module
    docstring for what each share means)."""

    n_entities: int = 1000
    n_attributes: int = 20
    n_values: int = 20
    ood_fraction: float = 0.1
    test_id_fraction: float = 0.1
    id_id_fraction: float = 0.03
    id_ood_fraction: float = 0.03
    hard_per_label: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive("n_entities", self.n_entities, 3)
        check_positive("n_attributes", self.n_attributes, 1)
        check_positive("n_values", self.n_values, 2)
        check_positive("hard_per_label", self.hard_per_label, 1)
        for name in ("ood_fraction", "test_id_fraction", "id_id_fraction", "id_ood_fraction"):
            check_fraction(name, getattr(self, name))
        n_ood = self.n_ood_entities
        if n_ood < 2 or self.n_entities - n_ood < 1:
            raise ValueError(
                f"ood_fraction={self.ood_fraction} of {self.n_entities} entities gives {n_ood} "
                "OOD entities per attribute; a hard query needs at least 2 OOD and 1 ID entity: "
                "change n_entities or ood_fraction"
            )

    @property
    def n_ood_entities(self) -> int:
        return round(self.ood_fraction * self.n_entities)


PRESETS: dict[str, ComplexParams] = {
    "paper": ComplexParams(),
    # The paper's shares on 200 entities and 10 attributes with 10 values: each OOD entity is
    # compared with about 11 ID entities per attribute, and the hard pool holds more than 100
    # queries of each label (fewer values or more comparisons leave too few "<" and ">").
    "tutorial": ComplexParams(n_entities=200, n_attributes=10, n_values=10),
}


def value_bounds(
    known: np.ndarray,
    attr: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    label: np.ndarray,
    n_values: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The interval each value is pinned to by one step of chaining: the known values, and
    comparisons with an entity whose value is known.

    Args:
        known: ``[n_entities, n_attributes]`` the stated values, -1 where not stated.
        attr, e1, e2, label: comparisons ``e1 ? e2`` on ``attr`` (label 0 ``<``, 1 ``=``, 2 ``>``).
        n_values: values are ``0 .. n_values - 1``.

    Returns:
        ``lo, hi`` ``[n_entities, n_attributes]``: the largest known value an entity is ``>=``
        to (-1 if none) and the smallest it is ``<=`` to (``n_values`` if none); a stated value
        gives ``lo = hi = value``.
    """
    lo = np.where(known >= 0, known, -1)
    hi = np.where(known >= 0, known, n_values)
    for this, other, sign in ((e1, e2, 1), (e2, e1, -1)):
        v = known[other, attr]
        rel = sign * (label - 1)  # +1: this > other, 0: equal, -1: this < other
        ok = v >= 0
        ge, le = ok & (rel >= 0), ok & (rel <= 0)
        np.maximum.at(lo, (this[ge], attr[ge]), v[ge])
        np.minimum.at(hi, (this[le], attr[le]), v[le])
    return lo, hi


def _reach_from(adj: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """``reach[a, s, y]``: a path of one or more edges leads from node ``sources[s]`` to ``y``
    in the graph ``adj[a]`` ``[attributes, nodes, nodes]`` (breadth-first, all at once)."""
    weights = adj.float()
    reach = weights[:, sources, :]
    while True:
        grown = (reach + torch.bmm(reach, weights) > 0).float()
        if torch.equal(grown, reach):
            return reach > 0
        reach = grown


def make_complex(params: ComplexParams) -> TaskData:
    """Generate the complex-reasoning task (see the module docstring)."""
    p = params
    rng = np.random.default_rng(p.seed)
    n, k = p.n_entities, p.n_attributes
    kb = knowledge_base(rng, n, k, p.n_values, p.n_ood_entities)
    n_id, n_ood = kb.id_ents.shape[1], kb.ood_ents.shape[1]
    vocab = Vocab(n_entities=n, n_attributes=k, n_values=p.n_values)
    values = kb.values

    # ID x ID: hold out test pairs, then train on a share of the other pairs' two orders.
    pairs = IdPairs(kb)
    test_pair_ids, train_pair_ids = pairs.hold_out(rng, p.test_id_fraction)
    pool = 2 * len(train_pair_ids)
    id_id = np.sort(rng.choice(pool, round(p.id_id_fraction * pool), replace=False))
    train_id_id = pairs.ordered(train_pair_ids, id_id)

    # ID x OOD: comparison c is (attribute a, ID entity i, OOD entity j), flipped if c is odd.
    n_cross = 2 * k * n_id * n_ood
    cross = np.sort(rng.choice(n_cross, round(p.id_ood_fraction * n_cross), replace=False))
    flip = cross % 2 == 1
    ca, rest = np.divmod(cross // 2, n_id * n_ood)
    ci, cj = np.divmod(rest, n_ood)
    id_e, ood_e = kb.id_ents[ca, ci], kb.ood_ents[ca, cj]
    train_id_ood = (ca, np.where(flip, ood_e, id_e), np.where(flip, id_e, ood_e))

    hard, pool_by_label = _hard_queries(p, kb, train_id_id, train_id_ood, ci, cj, rng)

    splits_inferred = {
        name: comparison_split(vocab, values, *abc)
        for name, abc in (("train_id_id", train_id_id), ("train_id_ood", train_id_ood))
    }
    train_inferred = Split.concat(list(splits_inferred.values()), pad_id=vocab.pad_id)
    id_atomic = atomic_split(vocab, values, kb.id_ents)
    splits = {
        "train": Split.concat([id_atomic, train_inferred], pad_id=vocab.pad_id),
        "train_inferred": train_inferred,
        "train_id_ood": splits_inferred["train_id_ood"],
        "test_id": comparison_split(vocab, values, *pairs.both_orders(test_pair_ids)),
        "test_ood": ood_pairs_split(vocab, kb),
        "test_hard": comparison_split(vocab, values, *hard),
        "id_atomic": id_atomic,
        "ood_atomic": atomic_split(vocab, values, kb.ood_ents),
    }
    counts = {
        "atomic": n * k,
        "atomic_id": kb.id_ents.size,
        "atomic_ood": kb.ood_ents.size,
        "train_id_id": len(splits_inferred["train_id_id"]),
        "train_id_ood": len(splits_inferred["train_id_ood"]),
        "train_inferred": len(train_inferred),
        "test_id": len(splits["test_id"]),
        "test_ood": len(splits["test_ood"]),
        "test_hard": len(splits["test_hard"]),
        "hard_pool": int(sum(pool_by_label)),
        **{f"hard_pool_{name}": int(c) for name, c in zip(LABELS, pool_by_label)},
        "train": len(splits["train"]),
    }
    return TaskData(
        name="complex",
        params=p,
        vocab=vocab,
        splits=splits,
        positions=dict(POSITIONS),
        key_probes={"train": "train_inferred", "id": "test_id", "ood": "test_hard"},
        counts=counts,
    )


def _hard_queries(p, kb, train_id_id, train_id_ood, ci, cj, rng):
    """The balanced hard test queries ``(attribute, e1, e2)`` and the size of the hard pool per
    label (see the module docstring)."""
    k, n_id = kb.id_ents.shape
    n_ood = kb.ood_ents.shape[1]
    values = kb.values
    # Solvable by chaining through the ID facts: o1 >= a, v(a) >= v(b), b >= o2 exists iff
    # lo(o1) >= hi(o2), lo and hi being the bounds the ID x OOD comparisons give (an OOD
    # entity in the middle of a chain adds nothing: its two neighbours compare directly).
    known = np.full(values.shape, -1)
    known[kb.id_ents, np.arange(k)[:, None]] = values[kb.id_ents, np.arange(k)[:, None]]
    a, e1, e2 = train_id_ood
    lo, hi = value_bounds(known, a, e1, e2, np.sign(values[e1, a] - values[e2, a]) + 1, p.n_values)
    attr_col = np.arange(k)[:, None]
    lo_o, hi_o = lo[kb.ood_ents, attr_col], hi[kb.ood_ents, attr_col]  # [k, n_ood]
    ge = lo_o[:, :, None] >= hi_o[:, None, :]  # ge[a, j1, j2]: o1 >= o2 derivable
    solvable = ge | ge.transpose(0, 2, 1)

    # Solvable from the training comparisons alone: a path in the graph x -> y (x >= y) over
    # the nodes ID 0..n_id-1, OOD n_id..n_id+n_ood-1 of each attribute.
    local = np.zeros((k, values.shape[0]), dtype=np.int64)
    local[attr_col, kb.id_ents] = np.arange(n_id)
    local[attr_col, kb.ood_ents] = n_id + np.arange(n_ood)
    adj = torch.zeros((k, n_id + n_ood, n_id + n_ood), dtype=torch.bool)
    for a, x, y in (train_id_id, train_id_ood):
        sign = np.sign(values[x, a] - values[y, a])
        lx, ly = local[a, x], local[a, y]
        down, up = sign >= 0, sign <= 0
        adj[a[down], lx[down], ly[down]] = True
        adj[a[up], ly[up], lx[up]] = True
    reach = _reach_from(adj, torch.arange(n_id, n_id + n_ood))[:, :, n_id:].numpy()
    easy = reach | reach.transpose(0, 2, 1)

    hard = solvable & ~easy
    hard[:, np.arange(n_ood), np.arange(n_ood)] = False
    ha, h1, h2 = np.nonzero(hard)
    o1, o2 = kb.ood_ents[ha, h1], kb.ood_ents[ha, h2]
    label = np.sign(values[o1, ha] - values[o2, ha]) + 1
    pool_by_label = np.bincount(label, minlength=3)
    if pool_by_label.min() < p.hard_per_label:
        raise ValueError(
            f"hard_per_label={p.hard_per_label} but the hard pool holds only "
            f"{dict(zip(LABELS, pool_by_label.tolist()))} queries per label; lower "
            "hard_per_label, or change id_id_fraction / id_ood_fraction / n_entities"
        )
    chosen = np.concatenate(
        [
            np.sort(rng.choice(np.flatnonzero(label == lab), p.hard_per_label, replace=False))
            for lab in range(3)
        ]
    )
    return (ha[chosen], o1[chosen], o2[chosen]), pool_by_label


# ----------------------------------------------------------------------------- baselines


def _facts(task: TaskData) -> tuple[np.ndarray, ...]:
    """The training set as arrays: stated values ``[n_entities, n_attributes]`` (-1 where not
    stated) and the training comparisons (attribute, e1, e2, label)."""
    v = task.vocab
    train = task.train
    tokens, answers = train.tokens.numpy(), train.answers.numpy()
    is_atomic = answers < v.label_offset
    known = np.full((v.n_entities, v.n_attributes), -1)
    at = tokens[is_atomic]
    known[at[:, 0] - v.entity_offset, at[:, 1] - v.attribute_offset] = (
        answers[is_atomic] - v.value_offset
    )
    comp = tokens[~is_atomic]
    attr = comp[:, POSITIONS["attr"]] - v.attribute_offset
    e1 = comp[:, POSITIONS["e1"]] - v.entity_offset
    e2 = comp[:, POSITIONS["e2"]] - v.entity_offset
    label = (answers[~is_atomic] - v.label_offset) % 3
    return known, attr, e1, e2, label


def _queries(task: TaskData, split: str) -> tuple[np.ndarray, ...]:
    s, v = task.splits[split], task.vocab
    tok = s.tokens.numpy()
    return (
        tok[:, POSITIONS["attr"]] - v.attribute_offset,
        tok[:, POSITIONS["e1"]] - v.entity_offset,
        tok[:, POSITIONS["e2"]] - v.entity_offset,
    )


def win_rate_labels(task: TaskData, split: str = "test_hard") -> np.ndarray:
    """The non-chaining rule's labels (0 ``<``, 1 ``=``, 2 ``>``) for the queries of ``split``.

    Each entity's score on an attribute is the mean, over the training comparisons it takes
    part in, of +1 (it was the greater), 0 (equal) or -1 (the smaller); the rule answers by
    comparing the two scores (``=`` on a tie). It uses every training comparison of ``e1`` and
    of ``e2`` but never combines a comparison with the value of the entity on its other side,
    which is what chaining does.
    """
    known, attr, e1, e2, label = _facts(task)
    total = np.zeros(known.shape)
    count = np.zeros(known.shape)
    rel = label - 1
    for this, sign in ((e1, 1), (e2, -1)):
        np.add.at(total, (this, attr), sign * rel)
        np.add.at(count, (this, attr), 1)
    score = total / np.maximum(count, 1)
    a, q1, q2 = _queries(task, split)
    return (np.sign(score[q1, a] - score[q2, a]) + 1).astype(np.int64)


def chained_bounds(task: TaskData) -> tuple[np.ndarray, np.ndarray]:
    """``lo, hi`` ``[n_entities, n_attributes]``: the interval each value is pinned to by the
    training set (stated values, and comparisons with an entity whose value is stated); see
    :func:`value_bounds`."""
    known, attr, e1, e2, label = _facts(task)
    return value_bounds(known, attr, e1, e2, label, task.vocab.n_values)


def complex_baselines(task: TaskData) -> dict[str, float]:
    """Accuracy of reference rules on the complex-reasoning task, for the model to be read
    against.

    Returns:
        ``hard_chance`` (1/3: ``test_hard`` is balanced per label), ``hard_win_rate`` (the
        rule of :func:`win_rate_labels`, which does not chain), ``hard_chained`` (chaining as in
        the generator's definition: 1.0 by construction), ``ood_atomic_chance``
        (1 / n_values) and ``ood_atomic_bracket`` (answering each OOD value with the middle of
        the interval :func:`chained_bounds` pins it to, the lower middle on a tie).
    """
    v = task.vocab
    truth = (task.splits["test_hard"].answers.numpy() - v.label_offset) % 3
    lo, hi = chained_bounds(task)
    a, q1, q2 = _queries(task, "test_hard")
    ge12, ge21 = lo[q1, a] >= hi[q2, a], lo[q2, a] >= hi[q1, a]
    chained = np.where(ge12 & ge21, 1, np.where(ge12, 2, np.where(ge21, 0, -1)))
    s = task.splits["ood_atomic"]
    e = s.tokens[:, 0].numpy() - v.entity_offset
    attr = s.tokens[:, 1].numpy() - v.attribute_offset
    low = np.maximum(lo[e, attr], 0)
    high = np.minimum(hi[e, attr], v.n_values - 1)
    bracket = (low + high) // 2
    return {
        "hard_chance": 1 / 3,
        "hard_win_rate": float((win_rate_labels(task) == truth).mean()),
        "hard_chained": float((chained == truth).mean()),
        "ood_atomic_chance": 1 / v.n_values,
        "ood_atomic_bracket": float((bracket == s.answers.numpy() - v.value_offset).mean()),
    }


#: The comparison tutorial recipe; the run stops once ID has held 0.95 for 5 evaluations and the
#: hard set averages 0.9 over them.
TRAIN_PRESETS = {
    "tutorial": TrainConfig(
        max_steps=6000,
        **{**TUTORIAL_RECIPE, "lr": 1e-3, "weight_decay": 2.0, "stop_ood_acc": 0.9},
    )
}

register_task(
    "complex",
    ComplexParams,
    PRESETS,
    make_complex,
    train_presets=TRAIN_PRESETS,
    swaps={k: functools.partial(swap_comparison, k) for k in ("e1", "e2", "attr")},
    default_swap="e1",
    lens_targets=comparison_lens,
)

__all__ = [
    "PAPER_REFERENCE",
    "ComplexParams",
    "chained_bounds",
    "complex_baselines",
    "make_complex",
    "value_bounds",
    "win_rate_labels",
]
