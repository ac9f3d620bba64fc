"""The composition task: two-hop reasoning over a random knowledge graph.

From "Grokked Transformers are Implicit Reasoners" (Wang et al., 2024), section 3. Every entity
``h`` is the head of ``out_degree`` atomic facts ``(h, r) -> t`` with distinct relations and
uniformly random tails. A two-hop query ``(h, r1, r2)`` is answered by following ``r1`` from ``h``
to the *bridge* entity ``b`` and then ``r2`` from ``b`` to ``t``.

A share ``ood_fraction`` of the atomic edges is out-of-distribution (OOD). Two-hop paths whose
both hops are in-distribution (ID) form the ID pool: a share ``test_id_fraction`` of it is held out
as ``test_id``, and ``round(phi * n_atomic_id)`` of the rest are the training inferred facts.
Paths whose both hops are OOD are ``test_ood``. Mixed paths never enter training, so an OOD
fact never serves as a hop of a training inferred fact; they are kept as two probes that test
the paper's explanation of why OOD composition fails (section 5.3: OOD facts never serve as a
*second* hop, so the upper layers never store them): ``test_ood_hop1`` (first hop OOD, second
hop ID) and ``test_ood_hop2`` (first hop ID, second hop OOD). They are drawn with no randomness
after every other split, so the other splits are exactly those of a generator without them,
and they are left out of :meth:`TaskData.fingerprint` (``TaskData.derived_probes``): runs saved
before they existed still match the task regenerated from their parameters. The model trains on
*all* atomic facts plus the training inferred facts.

**k hops.** ``train_hops`` and ``test_hops`` (both 2 by default, the paper's task) extend the
queries to chains ``<e_h> <r_1> ... <r_m>`` -> ``<e_t>`` of ``m`` relations, answered at
position ``m``. The two-hop splits above are always exactly those of the two-hop task; each
``m`` from 3 to ``test_hops`` adds splits named by its hop count, drawn from their own
generator (seeded by ``(seed, m)``, so they do not depend on ``test_hops``). With ``P_o(m)`` the
number of ``m``-hop paths whose hops are OOD where ``o`` says so, exactly
``P_o(m) = 1ᵀ A_{o_1} ... A_{o_m} 1`` (``A_ID[u, v]``, ``A_OOD[u, v]``: the ID and OOD facts
from ``u`` to ``v``; the patterns sum to ``n_entities * out_degree ** m``):

- ``m <= train_hops``: ``train_inferred_{m}hop``, ``round(phi * n_atomic_id)`` ID paths, and
  ``test_id_{m}hop``, ``round(test_id_fraction * P_ID(m))`` others (both in the ID pool, counted
  as ``counts["id_pool_{m}hop"]``); the training set is every atomic fact and every
  ``train_inferred*`` split, ``n_atomic + (train_hops - 1) * round(phi * n_atomic_id)``.
- ``m > train_hops``: ``test_id_{m}hop``, ``min(max_test, P_ID(m))`` ID paths.
- ``test_ood_{m}hop``: ``min(max_test, P_OOD(m))`` all-OOD paths, and one probe per mix of ID
  and OOD hops, ``min(max_test, P_o(m))`` paths, named by the OOD hops: ``test_ood_hop2_3hop``
  (the second of three), and with ``mixed_probes="all"`` (every mix rather than one OOD hop)
  ``test_ood_hop1+3_3hop``. ``counts["<probe>_pool"]`` is each ``P_o(m)``.

A split capped by ``max_test`` is a uniformly random subset. No trained chain holds an OOD fact.
The ``m``-hop splits carry ``meta["path"]`` (``[batch, m - 1]``: the intermediate entities in
order), ``meta["bridge"]`` (the first of them) and the atomic-fact row of each hop
(``hop1`` .. ``hop{m}``); the two-hop splits keep their ``bridge``, ``hop1`` and ``hop2``. Prompts
of different hop counts are right-padded to one width in ``train`` (the loss is at each
example's ``answer_pos``), and a model's context is sized to the widest probe, so a test of more
hops than trained runs (its last positions' embeddings were never trained). Presets: ``"khop"``
is the tutorial graph trained on two hops and tested on up to four (the two-hop splits and
``train`` identical to ``"tutorial"``'s), ``"khop_paper"`` the same at paper scale (3- and
4-hop populations of 13.7M and 261M ID paths, sampled rather than listed; about a second).

Generation is vectorised: because every entity has exactly ``out_degree`` edges, stored
contiguously by head, the edges out of bridge ``b`` are rows ``b * d .. b * d + d - 1``, and the
whole path pool is two integer arrays (no Python objects), which takes well under a second at
paper scale (800K paths).
"""

import dataclasses
import functools
import itertools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from grok_circuits.checks import check_fraction, check_positive
from grok_circuits.config import TUTORIAL_RECIPE, TrainConfig
from grok_circuits.tasks.data import Split, TaskData, make_split
from grok_circuits.tasks.pairs import PromptPairs, position_labels
from grok_circuits.tasks.params import TaskParams
from grok_circuits.tasks.paths import count_paths, draw_paths, path_ids
from grok_circuits.tasks.registry import Facts, SwapFn, pick_uniform, register_task
from grok_circuits.tasks.vocab import Vocab

#: Prompt positions of an inferred query ``<e_h> <r_1> <r_2>``.
POSITIONS = {"h": 0, "r1": 1, "r2": 2}

#: The mixed-path probes: first hop OOD and second hop ID, then first hop ID and second OOD.
HOP_PROBES = ("test_ood_hop1", "test_ood_hop2")


@dataclass(frozen=True)
class CompositionParams(TaskParams):
    """Parameters of :func:`make_composition`; validated on construction."""

    n_entities: int = 2000
    n_relations: int = 200
    out_degree: int = 20
    phi: float = 7.2
    ood_fraction: float = 0.05
    test_id_fraction: float = 0.005
    seed: int = 0
    train_hops: int = 2
    test_hops: int = 2
    max_test: int = 3000
    mixed_probes: Literal["single", "all"] = "single"

    def __post_init__(self) -> None:
        check_positive("n_entities", self.n_entities, 2)
        check_positive("n_relations", self.n_relations, 1)
        check_positive("out_degree", self.out_degree, 1)
        if self.out_degree > self.n_relations:
            raise ValueError(
                f"out_degree ({self.out_degree}) must be <= n_relations ({self.n_relations}): "
                "every entity's facts use distinct relations; raise n_relations or lower out_degree"
            )
        if self.phi <= 0:
            raise ValueError(f"phi must be > 0, got {self.phi}")
        check_fraction("ood_fraction", self.ood_fraction)
        check_fraction("test_id_fraction", self.test_id_fraction)
        n_atomic = self.n_entities * self.out_degree
        if round(self.ood_fraction * n_atomic) < 1:
            raise ValueError(
                f"ood_fraction={self.ood_fraction} of {n_atomic} atomic facts rounds to no OOD "
                f"fact; use at least {1 / n_atomic:.2g} or more entities"
            )
        if round(self.ood_fraction * n_atomic) >= n_atomic:
            raise ValueError(f"ood_fraction={self.ood_fraction} leaves no ID atomic fact")
        check_positive("train_hops", self.train_hops, 2)
        if self.test_hops < self.train_hops:
            raise ValueError(
                f"test_hops ({self.test_hops}) must be >= train_hops ({self.train_hops}): every "
                f"hop count trained on is also tested; pass test_hops={self.train_hops} or more"
            )
        if self.n_entities * self.out_degree**self.test_hops >= 2**62:
            raise ValueError(
                f"test_hops={self.test_hops} over {self.n_entities} entities of out-degree "
                f"{self.out_degree} makes more paths than int64 ids can number; lower test_hops"
            )
        check_positive("max_test", self.max_test, 1)
        if self.mixed_probes not in ("single", "all"):
            raise ValueError(
                f"mixed_probes={self.mixed_probes!r}; choose 'single' (one OOD hop) or 'all' "
                "(every mix of ID and OOD hops)"
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, without the k-hop fields left at their defaults, so that a
        two-hop task stores (and fingerprints) exactly as before they existed."""
        d = super().to_dict()
        for f in _KHOP_FIELDS:
            if d[f.name] == f.default:
                del d[f.name]
        return d


_KHOP_FIELDS = [
    f
    for f in dataclasses.fields(CompositionParams)
    if f.name in ("train_hops", "test_hops", "max_test", "mixed_probes")
]

PRESETS: dict[str, CompositionParams] = {
    "paper": CompositionParams(),
    # phi 7.2, the paper's: at phi 8 ID accuracy was already 0.22-0.26 when training accuracy
    # passed 0.95 (3 seeds); at 7.2 it is 0.14-0.18 there, and ID passes 0.95 5.7-6.3x as many
    # steps later (benchmarks/grokking_delay.py).
    "tutorial": CompositionParams(
        n_entities=100, n_relations=20, out_degree=10, phi=7.2, test_id_fraction=0.05
    ),
}
# the tutorial graph at phi 8, trained with the "fast" recipe (as benchmarks/accelerators.py
# measured it)
PRESETS["fast"] = dataclasses.replace(PRESETS["tutorial"], phi=8.0)
# Depth extrapolation: trained on two hops, tested on up to four (see the module docstring).
PRESETS["khop"] = dataclasses.replace(PRESETS["tutorial"], test_hops=4)
PRESETS["khop_paper"] = dataclasses.replace(PRESETS["paper"], test_hops=4)


def make_composition(params: CompositionParams) -> TaskData:
    """Generate the composition task (see the module docstring)."""
    p = params
    rng = np.random.default_rng(p.seed)
    n, d = p.n_entities, p.out_degree
    n_atomic = n * d

    # Atomic facts, row h * d + j is the j-th fact of head h (relations sorted per head).
    relations = np.sort(rng.random((n, p.n_relations)).argsort(axis=1)[:, :d], axis=1)
    tails = rng.integers(0, n, size=(n, d))
    heads = np.repeat(np.arange(n), d)
    relations, tails = relations.reshape(-1), tails.reshape(-1)

    is_ood = np.zeros(n_atomic, dtype=bool)
    is_ood[rng.choice(n_atomic, round(p.ood_fraction * n_atomic), replace=False)] = True

    # Two-hop paths: first hop row i, second hop row tails[i] * d + j; path id i * d + j.
    hop1 = np.repeat(np.arange(n_atomic), d)
    hop2 = (tails[:, None] * d + np.arange(d)).reshape(-1)
    id_pool = np.flatnonzero(~is_ood[hop1] & ~is_ood[hop2])
    ood_paths = np.flatnonzero(is_ood[hop1] & is_ood[hop2])
    # The mixed paths, probes only (no RNG draw: the splits above are unchanged by them).
    hop1_ood_paths = np.flatnonzero(is_ood[hop1] & ~is_ood[hop2])
    hop2_ood_paths = np.flatnonzero(~is_ood[hop1] & is_ood[hop2])

    n_atomic_id = int((~is_ood).sum())
    n_test = round(p.test_id_fraction * len(id_pool))
    n_train = round(p.phi * n_atomic_id)
    if n_train > len(id_pool) - n_test:
        max_phi = (len(id_pool) - n_test) / n_atomic_id
        raise ValueError(
            f"phi={p.phi} asks for {n_train} training inferred facts but the ID pool holds "
            f"{len(id_pool) - n_test} after test_id; use phi <= {np.floor(max_phi * 100) / 100:.2f}"
            " or a larger graph"
        )
    shuffled = rng.permutation(id_pool)
    test_paths = np.sort(shuffled[:n_test])
    train_paths = np.sort(shuffled[n_test : n_test + n_train])

    vocab = Vocab(n_entities=n, n_relations=p.n_relations)
    ent, rel = vocab.entity_offset, vocab.relation_offset

    def atomic(rows: np.ndarray) -> Split:
        prompts = np.stack([ent + heads[rows], rel + relations[rows]], axis=1)
        return make_split(prompts, ent + tails[rows], answer_pos=1)

    def inferred(paths: np.ndarray) -> Split:
        first, second = hop1[paths], hop2[paths]
        prompts = np.stack(
            [ent + heads[first], rel + relations[first], rel + relations[second]], axis=1
        )
        return make_split(
            prompts,
            ent + tails[second],
            answer_pos=2,
            bridge=ent + tails[first],
            hop1=first,
            hop2=second,
        )

    id_rows, ood_rows = np.flatnonzero(~is_ood), np.flatnonzero(is_ood)
    splits = {
        "train_inferred": inferred(train_paths),
        "test_id": inferred(test_paths),
        "test_ood": inferred(ood_paths),
        "id_atomic": atomic(id_rows),
        "ood_atomic": atomic(ood_rows),
        HOP_PROBES[0]: inferred(hop1_ood_paths),
        HOP_PROBES[1]: inferred(hop2_ood_paths),
    }
    khop, khop_counts = _longer_paths(p, relations, tails, is_ood, n_atomic_id, vocab)
    splits.update(khop)
    trained = [splits[f"train_inferred_{m}hop"] for m in range(3, p.train_hops + 1)]
    everything = Split.concat(
        [atomic(np.arange(n_atomic)), splits["train_inferred"], *trained], pad_id=vocab.pad_id
    )
    counts = {
        "atomic": n_atomic,
        "atomic_id": n_atomic_id,
        "atomic_ood": int(is_ood.sum()),
        "train_inferred": len(train_paths),
        "test_id": len(test_paths),
        "test_ood": len(ood_paths),
        HOP_PROBES[0]: len(hop1_ood_paths),
        HOP_PROBES[1]: len(hop2_ood_paths),
        "id_pool": len(id_pool),
        **khop_counts,
        "train": len(everything),
    }
    return TaskData(
        name="composition",
        params=p,
        vocab=vocab,
        splits={"train": everything, **splits},
        positions={"h": 0, **{f"r{j}": j for j in range(1, p.test_hops + 1)}},
        counts=counts,
        derived_probes=HOP_PROBES,
    )


def mixed_patterns(m: int, which: str = "single") -> list[tuple[bool, ...]]:
    """The mixes of ID and OOD hops of an ``m``-hop query that become probes, ``True`` marking
    an OOD hop: one OOD hop (``"single"``), or every mix (``"all"``); fewer OOD hops first, then
    by which (``hop1`` before ``hop2``)."""
    every = itertools.product((False, True), repeat=m)
    mixed = [o for o in every if any(o) and not all(o) and (which == "all" or sum(o) == 1)]
    return sorted(mixed, key=lambda o: (sum(o), [j for j in range(m) if o[j]]))


def probe_name(pattern: tuple[bool, ...]) -> str:
    """The probe of queries whose OOD hops are those of ``pattern``: ``test_ood_hop1`` and
    ``test_ood_hop2`` for two hops, ``test_ood_hop2_3hop`` or ``test_ood_hop1+3_3hop`` for more."""
    hops = "+".join(str(j + 1) for j, o in enumerate(pattern) if o)
    return f"test_ood_hop{hops}" + ("" if len(pattern) == 2 else f"_{len(pattern)}hop")


def _longer_paths(
    p: CompositionParams,
    relations: np.ndarray,
    tails: np.ndarray,
    is_ood: np.ndarray,
    n_atomic_id: int,
    vocab: Vocab,
) -> tuple[dict[str, Split], dict[str, int]]:
    """The splits of 3 to ``test_hops`` hops and the sizes of the populations they come from.

    Each hop count ``m`` draws from its own generator, seeded by ``(seed, m)``, so the splits of
    ``m`` hops are the same whatever ``train_hops`` above ``m`` or ``test_hops`` is asked for."""
    d = p.out_degree
    ent, rel = vocab.entity_offset, vocab.relation_offset
    splits: dict[str, Split] = {}
    counts: dict[str, int] = {}

    def query(paths: np.ndarray) -> Split:
        paths = paths[np.argsort(path_ids(tails, d, paths))]  # a canonical order
        m = paths.shape[1]
        prompts = np.concatenate([ent + paths[:, :1] // d, rel + relations[paths]], axis=1)
        inner = ent + tails[paths[:, :-1]]
        hops = {f"hop{j + 1}": paths[:, j] for j in range(m)}
        return make_split(
            prompts, ent + tails[paths[:, -1]], answer_pos=m, bridge=inner[:, 0], path=inner, **hops
        )

    for m in range(3, p.test_hops + 1):
        rng = np.random.default_rng([p.seed, m])
        all_id, all_ood = (False,) * m, (True,) * m
        pool = count_paths(tails, is_ood, d, all_id)
        counts[f"id_pool_{m}hop"] = pool
        if m <= p.train_hops:
            n_test = round(p.test_id_fraction * pool)
            n_train = round(p.phi * n_atomic_id)
            if n_train > pool - n_test:
                max_phi = (pool - n_test) / n_atomic_id
                raise ValueError(
                    f"phi={p.phi} asks for {n_train} training inferred facts of {m} hops but their "
                    f"ID pool holds {pool - n_test} after test_id; use phi <= "
                    f"{np.floor(max_phi * 100) / 100:.2f}, a lower train_hops or a larger graph"
                )
            drawn = draw_paths(tails, is_ood, d, all_id, n_test + n_train, rng)
            splits[f"train_inferred_{m}hop"] = query(drawn[n_test:])
            splits[f"test_id_{m}hop"] = query(drawn[:n_test])
        else:
            splits[f"test_id_{m}hop"] = query(draw_paths(tails, is_ood, d, all_id, p.max_test, rng))
        for pattern in [all_ood, *mixed_patterns(m, p.mixed_probes)]:
            name = f"test_ood_{m}hop" if pattern == all_ood else probe_name(pattern)
            counts[f"{name}_pool"] = count_paths(tails, is_ood, d, pattern)
            splits[name] = query(draw_paths(tails, is_ood, d, pattern, p.max_test, rng))
    return splits, counts


# ----------------------------------------------------------------------------- swaps
# Causal tracing compares a clean query with a corrupt one that swaps one token for another of the
# same type so that the answer changes and the query stays a real one (Wang et al. 2024, section
# 5): swap ``h`` (another head entity that has relation ``r1``, whose bridge has ``r2``), ``r1``
# (another relation of ``h`` whose bridge has ``r2``) or ``r2`` (another relation of the bridge).
# The corrupt query is answered by following the knowledge graph; candidates are drawn uniformly.


def fact_splits(task: TaskData, facts: Facts) -> list[Split]:
    """The atomic facts a swap may build on: the ID ones (and the OOD ones for
    ``facts="all"``), from :attr:`TaskData.facts` where the task has them (a released dataset),
    else its ``id_atomic`` and ``ood_atomic`` probes."""
    if facts not in ("id", "all"):
        raise ValueError(f"facts={facts!r}; choose 'id' (ID atomic facts only) or 'all'")
    if task.facts:
        return [task.facts[k] for k in ("id", "ood")[: 1 + (facts == "all")] if k in task.facts]
    names = ["id_atomic"] + (["ood_atomic"] if facts == "all" else [])
    missing = [n for n in names if n not in task.splits]
    if missing:
        raise ValueError(
            f"task {task.name!r} has no {missing} split: it is needed to know the facts"
        )
    return [task.splits[n] for n in names]


def _fact_table(task: TaskData, facts: Facts) -> Tensor:
    """``table[h, r]`` = tail entity index of fact ``(h, r)``, -1 where there is none."""
    v = task.vocab
    table = torch.full((v.n_entities, v.n_relations), -1, dtype=torch.long)
    for s in fact_splits(task, facts):
        h = s.tokens[:, 0] - v.entity_offset
        r = s.tokens[:, 1] - v.relation_offset
        table[h, r] = s.answers - v.entity_offset
    return table


def _gather(table: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``table[rows, cols]`` with -1 wherever a row index is -1."""
    out = table[rows.clamp(min=0), cols]
    return torch.where(rows < 0, torch.full_like(out, -1), out)


def swap_composition(
    token: str, task: TaskData, s: Split, g: torch.Generator, *, facts: Facts = "id"
) -> tuple[Tensor, Tensor, Tensor]:
    """Swap ``token`` (``"h"``, or the relation ``"r1"`` .. ``"rK"``) of composition queries of
    any hop count (a registered swap; see :data:`grok_circuits.tasks.registry.SwapFn`): the
    corrupt query's answer follows the facts from the swapped token to the end of the chain. A
    query with fewer hops than the swapped relation's index has no valid swap."""
    table = _fact_table(task, facts)
    v = task.vocab
    k, width = task.positions[token], s.tokens.shape[1]
    hops = s.answer_pos  # a query of m hops answers at position m
    t = s.answers - v.entity_offset
    n = len(s)
    if k >= width:
        return s.tokens.clone(), s.answers.clone(), torch.zeros(n, dtype=torch.bool)
    rel = lambda j: s.tokens[:, j] - v.relation_offset  # noqa: E731  # r_j, for j <= hops
    if token == "h":
        cand = torch.arange(v.n_entities)[None].expand(n, -1)  # h'
        cur = table[:, rel(1)].T  # [n, n_entities]: T[h', r1]
        offset = v.entity_offset
        k = 1  # the chain goes on from the first hop's tail
    else:
        cand = torch.arange(v.n_relations)[None].expand(n, -1)
        cur = _gather(table, _entity_before(task, s, table, k)[:, None].expand_as(cand), cand)
        offset = v.relation_offset
    for j in range(k + 1, width):
        step = _gather(table, cur, rel(j)[:, None].expand_as(cur))
        cur = torch.where((j <= hops)[:, None], step, cur)
    valid = (cur >= 0) & (cur != t[:, None]) & (k <= hops)[:, None]
    choice, ok = pick_uniform(valid, g)
    corrupt = s.tokens.clone()
    corrupt[:, task.positions[token]] = cand.gather(1, choice[:, None])[:, 0] + offset
    return corrupt, cur.gather(1, choice[:, None])[:, 0] + v.entity_offset, ok


def _entity_before(task: TaskData, s: Split, table: Tensor, k: int) -> Tensor:
    """The entity hop ``k`` of each query starts from (index, not token): ``h`` for the first
    hop, else the clean path's entity (kept in the metadata), else looked up in ``table``."""
    v = task.vocab
    if k == 1:
        return s.tokens[:, 0] - v.entity_offset
    if "path" in s.meta:
        return s.meta["path"][:, k - 2] - v.entity_offset
    if k == 2 and "bridge" in s.meta:
        return s.meta["bridge"] - v.entity_offset
    e = s.tokens[:, 0] - v.entity_offset
    for j in range(1, k):
        e = _gather(table, e, s.tokens[:, j] - v.relation_offset)
    return e


def composition_swaps(task: TaskData) -> dict[str, SwapFn]:
    """The swaps of one composition task: ``h`` and each relation position ``r1`` .. ``rK``."""
    return {k: functools.partial(swap_composition, k) for k in task.positions}


def query_positions(task: TaskData) -> list[int]:
    """The answer positions of a composition task's queries: 2 .. ``test_hops``."""
    return [p for name, p in task.positions.items() if name != "h" and p >= 2]


def composition_lens(task: TaskData, s: Split) -> dict[str, tuple[Tensor, Tensor]]:
    """The bridge at ``r1`` (the first hop, stored mid-network), ``r2`` at ``r2`` (carried for
    the second hop) and the answer at ``r2``. For queries of ``m > 2`` hops (one hop count per
    split): each intermediate entity ``e{j}`` at ``r{j}`` (the bridge as ``e1``), ``r{m}`` at
    ``r{m}`` and the answer at ``r{m}``."""
    pos = task.positions
    at = lambda name: torch.full((len(s),), pos[name], dtype=torch.long)  # noqa: E731
    m = int(s.answer_pos[0]) if len(s) else 2
    if m > 2 and "path" in s.meta:
        last = f"r{m}"
        return {
            **{f"e{j}@r{j}": (s.meta["path"][:, j - 1], at(f"r{j}")) for j in range(1, m)},
            f"{last}@{last}": (s.tokens[:, pos[last]], at(last)),
            f"answer@{last}": (s.answers, at(last)),
        }
    targets = {"r2@r2": (s.tokens[:, pos["r2"]], at("r2")), "answer@r2": (s.answers, at("r2"))}
    if "bridge" in s.meta:
        targets = {"bridge@r1": (s.meta["bridge"], at("r1")), **targets}
    return targets


#: The tutorial training preset: see ``grok_circuits.config.TUTORIAL_RECIPE``. ``"fast"`` doubles
#: its learning rate (4e-3): the fastest recipe ``benchmarks/accelerators.py`` measured on this
#: task (0.71x the steps to grok, 3 seeds; no plug-in beat it), but ID accuracy then passes 95%
#: before training accuracy reaches 99%, so the tutorials, which show the memorizing and the
#: generalizing stage apart, keep ``"tutorial"``.
#: The tutorial run stops once ID accuracy has held 0.95 for 2 evaluations (the recipe's 5 spent
#: 300 more steps, about a seventh of the run, on a model that had grokked).
#: It trains under bf16 autocast where the device has bf16 matrix products in hardware
#: (``precision="auto"``): faster, and grokking at the same steps on 3 seeds.
#: It schedules its weight decay and learning rate: the recipe's decay, 0.5, while the training set
#: is memorized (to step 300), then 3x (1.5), which speeds the cleanup to the generalizing circuit;
#: and the learning rate annealed from step 700 to a fifth at step 1,100, so that the model fits
#: its facts exactly (under the higher decay alone, atomic accuracy stays near 0.97 and ID accuracy
#: creeps towards 0.95 for hundreds of steps). The first 300 steps are the constant recipe's, so ID
#: accuracy at memorization is too; ID reaches 0.95 at step 1,000 to 1,100 instead of 1,800 to
#: 2,000 (5 seeds; ``benchmarks/README.md``, "The main job's time"). ``"fast"`` and ``"khop"``, and
#: :data:`TUTORIAL_AS_RECORDED`, keep the constant float32 recipe their benchmarks were measured
#: with.
#: Its training forward pass computes LayerNorm with torch's fused kernel (``fused_layer_norm``):
#: the same function, rounded differently, and on the CPU 1.28x faster steps on top of bf16
#: (``benchmarks/cpu_step.py``).
TRAIN_PRESETS = {
    "tutorial": TrainConfig(
        max_steps=6000,
        **{
            **TUTORIAL_RECIPE,
            "stop_patience": 2,
            "precision": "auto",
            "weight_decay_after": (300, 3.0),
            "lr_decay": (700, 1100, 0.2),
            "fused_layer_norm": True,
        },
    )
}
#: The tutorial recipe before bf16, the schedule and the fused LayerNorm: float32, TransformerLens'
#: own LayerNorm, constant learning rate after warm-up and constant weight decay. The benchmarks
#: whose shipped results were measured with it (``accelerators.py``, ``phi_law.py``,
#: ``recurrent_depth.py``, ``parameter_sharing.py``, ``threads.py``, ``backends.py``, and the
#: baseline of ``paper_scale.py``'s part 2) train this, so that they still reproduce those results.
TUTORIAL_AS_RECORDED = dataclasses.replace(
    TRAIN_PRESETS["tutorial"],
    precision="float32",
    weight_decay_after=None,
    lr_decay=None,
    fused_layer_norm=False,
)
TRAIN_PRESETS["fast"] = dataclasses.replace(TUTORIAL_AS_RECORDED, lr=4e-3, stop_patience=5)
TRAIN_PRESETS["khop"] = TUTORIAL_AS_RECORDED


# ----------------------------------------------------------------------------- the bridge
def bridge_pairs(
    task: TaskData,
    split: str = "train_inferred",
    *,
    n_examples: int | None = 300,
    facts: Facts = "id",
    seed: int = 0,
    tries: int = 16,
) -> PromptPairs:
    """Interchange pairs for the composition task's bridge entity.

    Each base query ``(h, r1, r2)`` of ``split`` (bridge ``b``) is paired with a source query of
    the same split, drawn by ``seed``, whose bridge ``b'`` has a fact ``(b', r2)`` (among the
    ``facts``: ``"id"`` or ``"all"``) whose tail differs from the base's answer; that tail is the
    expected answer. The source's ``r2`` is in general another relation, so a model that copied
    the source's answer would fail. Bases with no such source in ``tries`` draws are skipped.

    Returns:
        :class:`~grok_circuits.PromptPairs`: ``clean`` the bases, ``corrupt`` the sources,
        ``answers`` the bases' answers, ``corrupt_answers`` the expected answers, ``swap``
        ``"bridge"``, ``meta`` the base's ``bridge``, the ``source_bridge`` and the
        ``source_answer``; ``index`` the base's row in ``split``.
    """
    if task.name != "composition":
        raise ValueError(f"bridge_pairs needs the composition task, got {task.name!r}")
    if split not in task.splits:
        raise ValueError(f"task {task.name!r} has no split {split!r}; it has {list(task.splits)}")
    s = task.splits[split]
    if "bridge" not in s.meta:
        raise ValueError(
            f"split {split!r} holds no inferred queries (no 'bridge' metadata); use "
            "'train_inferred', 'test_id' or 'test_ood'"
        )
    v, pos = task.vocab, task.positions
    table = torch.full((v.n_entities, v.n_relations), -1, dtype=torch.long)
    for f in fact_splits(task, facts):
        table[f.tokens[:, 0] - v.entity_offset, f.tokens[:, 1] - v.relation_offset] = (
            f.answers - v.entity_offset
        )
    n = len(s)
    bridge = s.meta["bridge"] - v.entity_offset
    r2 = s.tokens[:, pos["r2"]] - v.relation_offset
    answer = s.answers - v.entity_offset
    g = torch.Generator().manual_seed(seed)
    source = torch.full((n,), -1, dtype=torch.long)
    expected = torch.full((n,), -1, dtype=torch.long)
    for _ in range(tries):
        todo = torch.nonzero(source < 0)[:, 0]
        if len(todo) == 0:
            break
        cand = torch.randint(0, n, (len(todo),), generator=g)
        want = table[bridge[cand], r2[todo]]
        ok = (want >= 0) & (want != answer[todo])
        source[todo[ok]], expected[todo[ok]] = cand[ok], want[ok]
    rows = torch.nonzero(source >= 0)[:, 0]
    if len(rows) == 0:
        raise ValueError(f"no query of {split!r} has a source whose bridge changes its answer")
    if n_examples is not None and n_examples < len(rows):
        pick = torch.randperm(len(rows), generator=g)[:n_examples]
        rows = rows[pick.sort().values]
    src = source[rows]
    return PromptPairs(
        clean=s.tokens[rows],
        corrupt=s.tokens[src],
        answers=s.answers[rows],
        corrupt_answers=expected[rows] + v.entity_offset,
        answer_pos=s.answer_pos[rows],
        pos_labels=position_labels(task, s.tokens.shape[1]),
        meta={
            "bridge": s.meta["bridge"][rows],
            "source_bridge": s.meta["bridge"][src],
            "source_answer": s.answers[src],
        },
        swap="bridge",
        index=rows,
    )


register_task(
    "composition",
    CompositionParams,
    PRESETS,
    make_composition,
    train_presets=TRAIN_PRESETS,
    swaps={k: functools.partial(swap_composition, k) for k in ("h", "r1", "r2")},
    task_swaps=composition_swaps,
    query_positions=query_positions,
    default_swap="h",
    lens_targets=composition_lens,
    variables={"bridge": bridge_pairs},
)
